"""``peerbak generate``: shell completions and man pages, made from the commands
themselves so they never fall behind them (restic's ``generate``)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from peerbak import __version__
from peerbak.cli.kit import run
from peerbak.core.errors import InputError, StorageError


def _roff(text: str) -> str:
    """Text safe in a man page: backslashes doubled, hyphens and leading dots escaped."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def _commands(
    group: click.Group, ctx: click.Context, prefix: str
) -> list[tuple[str, click.Command, click.Context]]:
    """Every command below ``group``, with its full name and a context to render it in."""
    found: list[tuple[str, click.Command, click.Context]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        full = f"{prefix} {name}"
        sub = click.Context(command, info_name=name, parent=ctx)
        found.append((full, command, sub))
        if isinstance(command, click.Group):
            found += _commands(command, sub, full)
    return found


def man_page(full: str, command: click.Command, ctx: click.Context) -> str:
    """One command's page in roff (man(7))."""
    title = full.replace(" ", "-")
    pieces = command.collect_usage_pieces(ctx)
    lines = [
        f'.TH {title.upper()} 1 "" "peerbak {__version__}" "peerbak manual"',
        ".SH NAME",
        f"{_roff(title)} \\- {_roff(command.get_short_help_str(limit=200))}",
        ".SH SYNOPSIS",
        f".B {_roff(full)}",
        _roff(" ".join(pieces)),
        ".SH DESCRIPTION",
        _roff(click.unstyle(command.help or "")),
    ]
    options = [
        p.get_help_record(ctx) for p in command.get_params(ctx) if isinstance(p, click.Option)
    ]
    if any(options):
        lines.append(".SH OPTIONS")
        for record in options:
            if record is not None:
                lines += [".TP", f"\\fB{_roff(record[0])}\\fR", _roff(record[1])]
    if isinstance(command, click.Group):
        lines.append(".SH COMMANDS")
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                page = f"{title}-{name}"
                lines += [".TP", f"\\fB{_roff(name)}\\fR", f"{_roff(sub.get_short_help_str())}"]
                lines.append(f"See \\fB{_roff(page)}\\fR(1).")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--bash-completion", "bash", type=click.Path(dir_okay=False), help="Write it here.")
@click.option("--zsh-completion", "zsh", type=click.Path(dir_okay=False), help="Write it here.")
@click.option("--fish-completion", "fish", type=click.Path(dir_okay=False), help="Write it here.")
@click.option("--man", "man", type=click.Path(file_okay=False), help="Write man pages here.")
@click.pass_context
def generate(
    ctx: click.Context, bash: str | None, zsh: str | None, fish: str | None, man: str | None
) -> None:
    """Shell completions and man pages for every command ("-" writes a completion to
    standard output)."""
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    group = root.command
    assert isinstance(group, click.Group)

    def write(path: str, text: str) -> None:
        if path == "-":
            click.echo(text, nl=False)
            return
        try:
            Path(path).write_text(text)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from None

    def go() -> None:
        for shell, path in (("bash", bash), ("zsh", zsh), ("fish", fish)):
            if path:
                complete = get_completion_class(shell)
                assert complete is not None
                write(path, complete(group, {}, "peerbak", "_PEERBAK_COMPLETE").source())
        if man:
            folder = Path(man)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot make {folder}: {exc.strerror}") from None
            pages = [("peerbak", group, root), *_commands(group, root, "peerbak")]
            for full, command, sub in pages:
                write(str(folder / f"{full.replace(' ', '-')}.1"), man_page(full, command, sub))
        if not (bash or zsh or fish or man):
            raise InputError("say what to generate: --bash-completion F, --man DIR, …")

    run(False, go)


COMMANDS = (generate,)
