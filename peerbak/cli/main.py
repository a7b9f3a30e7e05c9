"""The ``peerbak`` command: the group, its global options, and the exit codes.

Each command lives in the module named for what it works on: ``node`` (init, daemon,
recover, passphrase), ``pool`` (invite, join, peers, leave, gossip), ``backup`` (backup,
snapshots, ls, restore, dump, find, diff, stats), ``mount``, ``care`` (status, check,
challenge, repair, undelete, forget, prune), ``bench`` (benchmark, demo, simulate),
``service`` (install-service), ``watch`` (log), ``jobs`` (run, jobs) and ``web`` (the
status page's address); :mod:`peerbak.cli.kit` holds what they share. A command parses,
makes one call, renders, and raises for what failed.

Exit codes (an unknown code MUST be treated as a failure by scripts):

====  ==============================================================
0     success
1     failure not covered below; a backup job's hook or command failed
2     bad command line (unknown option, missing argument)
3     backup saved, but some source files could not be read
64    malformed input: a recovery key, a token, an id
65    integrity: bytes failed a check; or a write-once conflict
66    not found: no such shard, snapshot or member
69    not enough shards to rebuild a pack; or this machine lacks what the command
      needs (libfuse for ``mount``)
70    internal error (a bug: please report it with ``--debug`` output)
74    local storage or ledger trouble (disk full, permissions, SQLite)
75    a peer is unavailable, or another backup of this node runs: try again later
76    a peer broke the protocol
77    the node secret is sealed and was not opened: wrong passphrase, or none given
78    configuration error
130   interrupted
====  ==============================================================

With ``--json``, a failing command writes one last line to stderr:
``{"message_type": "exit_error", "code": <exit code>, "error": <name>, "message": <text>}``,
except where its own output already lists what failed (the
:class:`~peerbak.core.errors.Reported` errors: ``backup``'s 3, ``check`` and
``challenge``'s 65, ``repair``'s 69, ``restore``'s and ``run``'s code): then it adds
nothing. ``run`` exits with the code of the failure that failed the (first failed) job.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from peerbak import __version__
from peerbak.cli import (
    backup,
    bench,
    care,
    docs,
    jobs,
    mount,
    node,
    notify,
    pool,
    reach,
    service,
    watch,
    web,
)
from peerbak.cli.kit import EXIT_INTERRUPTED, LIMITS, QUIET, exit_with


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="peerbak")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False),
    help="Node home (default: $PEERBAK_HOME, else the platform's data directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Every command's output as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary; errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Say more: what happens with each member.")
@click.option("--limit-upload", type=click.IntRange(min=0), default=0, help="KiB/s sent at most.")
@click.option(
    "--limit-download", type=click.IntRange(min=0), default=0, help="KiB/s received at most."
)
@click.pass_context
def cli(
    ctx: click.Context,
    debug: bool,
    home: str | None,
    as_json: bool,
    quiet: bool,
    verbose: bool,
    limit_upload: int,
    limit_download: int,
) -> None:
    """peerbak: back up to a pool of friends, encrypted and erasure-coded over SSH."""
    ctx.obj = home
    ctx.meta[QUIET] = quiet
    ctx.meta[LIMITS] = (limit_upload, limit_download)
    if as_json:  # as if each command had been given its own --json
        ctx.default_map = _json_everywhere(cli)
    if verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        logging.getLogger("asyncssh").setLevel(logging.WARNING)


def _json_everywhere(group: click.Group) -> dict[str, Any]:
    """A default map turning ``--json`` on for every command below ``group``."""
    defaults: dict[str, Any] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            defaults[name] = {"as_json": True, **_json_everywhere(command)}
        elif any(p.name == "as_json" for p in command.params):
            defaults[name] = {"as_json": True}
    return defaults


for command in (
    *node.COMMANDS,
    *pool.COMMANDS,
    *backup.COMMANDS,
    *mount.COMMANDS,
    *care.COMMANDS,
    *bench.COMMANDS,
    *docs.COMMANDS,
    *service.COMMANDS,
    *watch.COMMANDS,
    *jobs.COMMANDS,
    *web.COMMANDS,
    *notify.COMMANDS,
    *reach.COMMANDS,
):
    cli.add_command(command)


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
    # numpy's OpenBLAS starts a spinning thread per core, which peerbak never uses
    # (its codec is table lookups, not BLAS): measured at 4 % of all CPU in a transfer.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        cli.main(prog_name="peerbak", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("peerbak: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:
        exit_with(exc, "--json" in sys.argv, "--debug" in sys.argv)
