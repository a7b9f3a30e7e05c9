"""The ``peerbak`` command: parse, call one service, render, exit with a documented code.

Exit codes (an unknown code MUST be treated as a failure by scripts):

====  ==============================================================
0     success
1     failure not covered below
2     bad command line (unknown option, missing argument)
64    malformed input: a recovery key, a token, an id
65    integrity: bytes failed a check; or a write-once conflict
66    not found: no such shard, snapshot or member
69    not enough shards to rebuild a pack
70    internal error (a bug: please report it with ``--debug`` output)
74    local storage or ledger trouble (disk full, permissions, SQLite)
75    a peer is unavailable: try again later
76    a peer broke the protocol
78    configuration error
130   interrupted
====  ==============================================================

With ``--json``, a failing command writes one last line to stderr:
``{"message_type": "exit_error", "code": <exit code>, "error": <name>, "message": <text>}``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, Final, NoReturn, TypeVar

import click

from peerbak import __version__
from peerbak.errors import ALL_ERRORS, InputError, PeerbakError

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


def _fail(exc: BaseException, as_json: bool, debug: bool) -> NoReturn:
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
        _fail(exc, as_json, debug)


def emit_table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col[:1].isdigit() or "/" in col else "left")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    Console().print(table)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="peerbak")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
def cli(debug: bool) -> None:
    """peerbak: back up to a pool of friends, encrypted and erasure-coded over SSH."""


@cli.group()
def benchmark() -> None:
    """Measure speed and memory of the data path."""


def _pairs(text: str) -> list[tuple[int, int]]:
    pairs = []
    for item in text.split(","):
        k, sep, n = item.strip().partition("/")
        if not (sep and k.isdigit() and n.isdigit()):
            raise InputError(f"not a k/n pair: {item!r} (try 3/5)")
        pairs.append((int(k), int(n)))
    return pairs


@benchmark.command("codec")
@click.option("--pairs", default="2/3,3/5,4/6,6/10,10/16", show_default=True, help="k/n pairs.")
@click.option("--size", default="16MiB", show_default=True, help="Pack size to code.")
@click.option("--seconds", default=1.0, show_default=True, help="Time per measurement.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def benchmark_codec(pairs: str, size: str, seconds: float, as_json: bool) -> None:
    """Erasure code MB/s on one core: encode, decode with data shards missing, rebuild."""
    from peerbak.benchmark import bench_codec

    rows = run(as_json, lambda: bench_codec(_pairs(pairs), parse_size(size), seconds))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    emit_table(
        f"erasure code, {size} pack, one core (MB/s of pack data)",
        ["k/n", "encode", "decode (all data)", "decode (data missing)", "rebuild one shard"],
        (
            (
                f"{r['k']}/{r['n']}",
                r["encode_mb_s"],
                r["decode_all_data_mb_s"],
                f"{r['decode_missing_mb_s']} ({r['data_shards_missing']} missing)",
                r["rebuild_one_mb_s"],
            )
            for r in rows
        ),
    )


@benchmark.command("pipeline")
@click.option(
    "--data",
    "kinds",
    type=click.Choice(["all", "incompressible", "text", "mixed"]),
    default="all",
    show_default=True,
    help="Generated dataset.",
)
@click.option("--size", default="256MiB", show_default=True, help="Bytes per dataset.")
@click.option("--source", type=click.Path(exists=True, file_okay=False), help="Use a real tree.")
@click.option("-k", "k", default=3, show_default=True, help="Shards needed to rebuild a pack.")
@click.option("-n", "n", default=5, show_default=True, help="Shards stored per pack.")
@click.option("--threads", default=2, show_default=True, help="Sealing threads.")
@click.option("--fsync/--no-fsync", default=True, show_default=True, help="Durable shard writes.")
@click.option(
    "--holders-verify",
    is_flag=True,
    help="Also run the holders' Merkle check of every shard put on these cores.",
)
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put temporary data.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def benchmark_pipeline(
    kinds: str,
    size: str,
    source: str | None,
    k: int,
    n: int,
    threads: int,
    fsync: bool,
    holders_verify: bool,
    workdir: str | None,
    as_json: bool,
) -> None:
    """The whole data path: files → chunks → packs → shards in n holder directories → back."""
    from pathlib import Path

    from peerbak.benchmark import KINDS, bench_pipeline

    def go() -> list[dict[str, Any]]:
        selected = list(KINDS) if kinds == "all" else [kinds]
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        return bench_pipeline(
            selected,
            parse_size(size),
            k=k,
            n=n,
            threads=threads,
            durable=fsync,
            holders_verify=holders_verify,
            source=Path(source) if source else None,
            workdir=Path(workdir) if workdir else None,
        )

    rows = run(as_json, go)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    emit_table(
        f"data path, {k}-of-{n}, fsync {'on' if fsync else 'off'}, "
        f"holders' check {'here' if holders_verify else 'elsewhere'}",
        ["data", "MiB in", "backup MB/s", "cores", "RSS MiB", "stored/in", "restore MB/s", "RSS"],
        (
            (
                r["data"],
                round(r["backup"]["bytes_in"] / (1 << 20)),
                r["backup"]["mb_s"],
                r["backup"]["cores_used"],
                r["backup"]["peak_rss_mib"],
                r["backup"]["ratio_stored_to_input"],
                r["restore"]["mb_s"],
                r["restore"]["peak_rss_mib"],
            )
            for r in rows
        ),
    )
    stages = sorted({s for r in rows for s in r["backup"]["stage_seconds"]})
    emit_table(
        "backup seconds per stage (summed over threads)",
        ["data", *stages],
        ((r["data"], *(r["backup"]["stage_seconds"].get(s, 0) for s in stages)) for r in rows),
    )


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Ask glibc for at most ``arenas`` malloc arenas (no-op elsewhere).

    By default glibc gives each thread its own arena (up to 8 per core); chunk-sized
    buffers freed in one stay mapped there, and a backup's RSS then grows by tens of
    MiB per thread. Two arenas keep it flat (measured: 1 GiB backup 236 → 174 MiB).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        return


def main() -> None:
    """Console entry point: click's own usage errors exit 2, ours as documented above."""
    limit_malloc_arenas()
    cli(prog_name="peerbak")
