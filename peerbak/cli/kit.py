"""What every ``peerbak`` command shares: error-to-exit-code mapping, tables, the home.

Kept apart from the commands so that each command module stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import click

from peerbak.core.errors import ALL_ERRORS, InputError, PeerbakError

if TYPE_CHECKING:
    from peerbak.adapters.home import Home

T = TypeVar("T")

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_INTERNAL: Final = 70
EXIT_INTERRUPTED: Final = 130

#: Exit code for each error class, from the classes themselves.
EXIT_CODES: Final[dict[str, int]] = {cls.__name__: cls.exit_code for cls in ALL_ERRORS}

_SIZE_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``512``, ``64MiB``, ``2G``, ``1.5GiB`` → bytes (powers of 1024)."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise InputError(f"not a size: {text!r} (try 256MiB or 2GiB)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * (1 << (10 * " kmgt".index(unit or " "))))


def exit_with(exc: BaseException, as_json: bool, debug: bool) -> NoReturn:
    if isinstance(exc, PeerbakError):
        code, name, message = exc.exit_code, type(exc).__name__, str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        code, name, message = EXIT_INTERRUPTED, "Interrupted", "interrupted"
    else:
        code, name = EXIT_INTERNAL, "InternalError"
        message = f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)"
    if debug:
        import traceback

        traceback.print_exception(exc)
    if as_json:
        line = {"message_type": "exit_error", "code": code, "error": name, "message": message}
        click.echo(json.dumps(line), err=True)
    else:
        click.echo(f"peerbak: {message}", err=True)
    sys.exit(code)


def run(as_json: bool, fn: Callable[[], T]) -> T:
    """Call a service; turn its errors into one clear line and an exit code."""
    ctx = click.get_current_context()
    debug = bool(ctx.find_root().params.get("debug"))
    try:
        return fn()
    except click.exceptions.Exit:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        exit_with(exc, as_json, debug)


def json_rows(as_json: bool, rows: list[dict[str, Any]]) -> bool:
    """Under --json, one object per line (then the caller is done)."""
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
    return as_json


def emit_table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col[:1].isdigit() or "/" in col else "left")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    console = Console()
    if not console.is_terminal:
        # Piped or redirected: whole rows, never wrapped or cut at 80 columns.
        width = console.measure(table, options=console.options.update_width(1000)).maximum
        console = Console(width=max(console.width, width))
    console.print(table)


def home_path() -> Path:
    from peerbak.adapters.home import locate

    return locate(click.get_current_context().find_root().obj)


def open_home() -> Home:
    from peerbak.adapters.home import Home

    return Home.open(home_path())


def emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


def time_ago(when: float | None) -> str:
    import time

    if when is None:
        return "never"
    seconds = max(0.0, time.time() - when)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def repo_call(
    as_json: bool, fn: Callable[[Any], Any], *, lock: str = "", wait: float = 600.0
) -> Any:
    """The one way a command reaches its pool: open the home, take the writer's lock
    if ``lock`` names the writer, open the repository, run ``fn(repo)`` (a coroutine),
    close it."""
    from peerbak.node.compose import open_repository

    async def go() -> Any:
        home = open_home()
        with home.lock(lock, wait=wait) if lock else contextlib.nullcontext():
            async with await open_repository(home) as repo:
                return await fn(repo)

    return run(as_json, lambda: asyncio.run(go()))
