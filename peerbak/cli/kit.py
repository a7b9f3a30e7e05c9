"""What every ``peerbak`` command shares: the one error handler, the one way to reach the
node (home, daemon, repository), sizes, tables.

A command parses its options, makes one call through here, renders the result, and
raises a :class:`~peerbak.core.errors.PeerbakError` for anything that went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, TypeVar

import click

from peerbak.core.errors import ALL_ERRORS, InputError, NoPool, PeerbakError, Reported

if TYPE_CHECKING:
    from peerbak.adapters.home import Home
    from peerbak.services.repository import Repository

T = TypeVar("T")

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_INTERNAL: Final = 70
EXIT_INTERRUPTED: Final = 130

#: Exit code for each error class, from the classes themselves.
EXIT_CODES: Final[dict[str, int]] = {cls.__name__: cls.exit_code for cls in ALL_ERRORS}

#: Seconds a command that writes packs waits for the daemon's repair batch to let go.
LOCK_WAIT: Final = 600.0


# --- errors and exit codes ------------------------------------------------------------------


def exit_with(exc: BaseException, as_json: bool, debug: bool) -> NoReturn:
    """The one place an error becomes a line on stderr and an exit status."""
    if isinstance(exc, Reported):
        sys.exit(exc.exit_code)  # the command's own output already told what went wrong
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


def _debug() -> bool:
    return bool(click.get_current_context().find_root().params.get("debug"))


def run(as_json: bool, fn: Callable[[], T]) -> T:
    """Call a service; turn its errors into one clear line and an exit code."""
    try:
        return fn()
    except click.exceptions.Exit:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        exit_with(exc, as_json, _debug())


def fail(as_json: bool, error: PeerbakError) -> NoReturn:
    """End a command that has printed its output with ``error``'s exit code."""
    exit_with(error, as_json, _debug())


def parse_size(text: str) -> int:
    """``512``, ``64MiB``, ``2G``, ``1.5GiB`` → bytes (powers of 1024), as in the config."""
    from peerbak.core.config import parse_size as size_of

    try:
        return size_of(text)
    except InputError:
        raise InputError(f"not a size: {text!r} (try 256MiB or 2GiB)") from None


def parse_pairs(text: str) -> list[tuple[int, int]]:
    """``3/5,2/3`` → ``[(3, 5), (2, 3)]``: erasure codes, k of n shards."""
    pairs = []
    for item in text.split(","):
        k, sep, n = item.strip().partition("/")
        if not (sep and k.isdigit() and n.isdigit()):
            raise InputError(f"not a k/n pair: {item!r} (try 3/5)")
        pairs.append((int(k), int(n)))
    return pairs


# --- the node: home, daemon, repository -----------------------------------------------------


def home_path() -> Path:
    from peerbak.adapters.home import locate

    return locate(click.get_current_context().find_root().obj)


def open_home(*, unlock: bool = True) -> Home:
    """This node's home, one per command (a sealed secret's passphrase is asked once);
    ``unlock``: its secret read now, so a passphrase is asked before any lock is taken or
    loop started, not half way through."""
    from peerbak.adapters.home import Home

    root = click.get_current_context().find_root()
    home: Home | None = root.meta.get(HOME)
    if home is None:
        home = root.meta[HOME] = Home.open(home_path(), passphrase)
    if unlock:
        home.secret()
    return home


def passphrase(*, confirm: bool = False, prompt: str = "Passphrase for node.secret") -> str:
    """The passphrase from ``PEERBAK_PASSWORD_FILE`` or ``PEERBAK_PASSWORD_COMMAND``, else
    asked on the terminal (twice if ``confirm``), else an error naming the variables."""
    from peerbak.adapters.passphrase import NO_SOURCE, from_environment

    got = from_environment()
    if got is not None:
        return got
    return ask_hidden(prompt, confirm=confirm, otherwise=NO_SOURCE)


def ask_hidden(prompt: str, *, confirm: bool, otherwise: str) -> str:
    """A hidden answer typed on the terminal; ``otherwise`` is the error without one."""
    from peerbak.core.errors import PassphraseError

    if not sys.stdin.isatty():
        raise PassphraseError(otherwise)
    try:
        answer: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    except click.exceptions.Abort:  # Ctrl-C or Ctrl-D at the prompt
        raise KeyboardInterrupt from None
    return answer


def home_call(as_json: bool, fn: Callable[[Home], Awaitable[T]]) -> T:
    """Open the node's home and run the service ``fn(home)`` to its end."""
    return run(as_json, lambda: asyncio.run(_awaited(fn(open_home()))))


async def _awaited(aw: Awaitable[T]) -> T:
    return await aw


def ask_daemon(request: dict[str, Any], home: Home | None = None) -> dict[str, Any]:
    """One request to the running daemon over its control socket."""
    from peerbak.adapters.control import DaemonNotRunning, call
    from peerbak.adapters.ledger import check_file

    home = home or open_home(unlock=False)  # the running daemon holds the secret
    try:
        return call(home.control_socket, request)
    except DaemonNotRunning:
        # A daemon that cannot start because its ledger is damaged: say that instead.
        if home.ledger_path.exists():
            check_file(home.ledger_path)
        raise


async def _session(
    home: Home,
    fn: Callable[[Repository], Awaitable[T]],
    *,
    lock: str | None,
    probe: bool,
    no_pool: Callable[[], T] | None = None,
    limits: tuple[int, int] | None = None,
) -> T:
    from peerbak.node.compose import open_repository

    up, down = limits if limits is not None else _global(LIMITS, (0, 0))
    with home.lock(lock, wait=LOCK_WAIT) if lock else contextlib.nullcontext():
        try:
            repo = await open_repository(home, limit_upload=up, limit_download=down)
        except NoPool:
            if no_pool is None:
                raise
            return no_pool()
        async with repo:
            if probe:
                await repo.probe()
            return await fn(repo)


def repo_call(
    as_json: bool,
    fn: Callable[[Repository], Awaitable[T]],
    *,
    lock: str | None = None,
    probe: bool = False,
    home: Home | None = None,
) -> T:
    """The way a command reaches its backups: open the home, take the writers' lock (as
    ``lock``, if given), open the repository, probe the members (if ``probe``), run
    ``fn(repo)``, close everything; errors end the command with their exit code."""

    def go() -> T:
        node = home or open_home()
        return asyncio.run(_session(node, fn, lock=lock, probe=probe))

    return run(as_json, go)


def pool_report(
    home: Home, fn: Callable[[Repository], Awaitable[T]]
) -> tuple[T | None, PeerbakError | None]:
    """:func:`pool_call` for a command that reports what it can before it fails: the
    report (None in no pool yet) or the error that kept it from being made."""
    try:
        return asyncio.run(_session(home, fn, lock=None, probe=False, no_pool=lambda: None)), None
    except PeerbakError as exc:
        return None, exc


def pool_call(
    as_json: bool, fn: Callable[[Repository], Awaitable[T]], *, home: Home | None = None
) -> T | None:
    """:func:`repo_call` for reports: a node in no pool yet has nothing to report on, and
    gets None (a broken configuration is an error, as everywhere)."""

    def go() -> T | None:
        node = home or open_home()
        return asyncio.run(_session(node, fn, lock=None, probe=False, no_pool=lambda: None))

    return run(as_json, go)


@contextlib.contextmanager
def repo_in_thread(
    *, probe: bool = True, home: Home | None = None
) -> Iterator[tuple[Repository, asyncio.AbstractEventLoop]]:
    """The repository, open in an event loop of its own thread, for code that is not async
    (FUSE's callback threads): it hands that loop coroutines with
    ``asyncio.run_coroutine_threadsafe(coro, loop).result()``. Leaving the block closes
    the repository and ends the thread; an error opening it is raised here.

    The thread blocks SIGINT, SIGTERM and SIGHUP (and so do the threads it starts), so
    they reach the main thread, whatever runs there (libfuse's loop waits for them).
    """
    import concurrent.futures
    import signal
    import threading

    node = home or open_home()
    limits = _global(LIMITS, (0, 0))  # the click context is the main thread's
    ready: concurrent.futures.Future[
        tuple[Repository, asyncio.AbstractEventLoop, asyncio.Event]
    ] = concurrent.futures.Future()
    closing: list[BaseException] = []

    async def hold(repo: Repository) -> None:
        done = asyncio.Event()
        ready.set_result((repo, asyncio.get_running_loop(), done))
        await done.wait()

    def main() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            asyncio.run(_session(node, hold, lock=None, probe=probe, limits=limits))
        except BaseException as exc:
            if ready.done():  # closing it failed
                closing.append(exc)
            else:
                ready.set_exception(exc)

    thread = threading.Thread(target=main, name="peerbak-repository", daemon=True)
    thread.start()
    repo, loop, done = ready.result()
    try:
        yield repo, loop
    finally:
        loop.call_soon_threadsafe(done.set)
        thread.join()
    if closing:
        raise closing[0]


async def health(repo: Repository) -> dict[str, Any]:
    """The pool's health as ``status`` and ``peers`` show it, by this node's policy: the
    members are probed first, so a friend that does not answer now is unreachable now."""
    import time

    from peerbak.services.maintenance import policy_of
    from peerbak.services.status import pool_health

    await repo.probe()
    return await pool_health(repo, policy_of(repo.home.config()), time.time(), probed=True)


class Named(Protocol):
    """A member as :func:`matching` picks it: by name or by node id."""

    @property
    def name(self) -> str: ...
    @property
    def node(self) -> bytes: ...


M = TypeVar("M", bound=Named)


def matching(members: Iterable[M], text: str) -> list[M]:
    """Members called ``text``; failing that, those whose id starts with it. A name wins
    over an id prefix: a member named ``f1`` is meant even if some id begins ``f1``."""
    found = list(members)
    named = [m for m in found if m.name == text]
    return named or [m for m in found if m.node.hex().startswith(text.lower())]


# --- output ---------------------------------------------------------------------------------


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


def emit(as_json: bool, data: Any, text: str) -> None:
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


def when(t: float | str) -> str:
    """A snapshot's time as the tables show it (local time), from epoch seconds or the
    RFC 3339 text of :func:`rfc3339`."""
    import datetime

    if isinstance(t, str):
        t = datetime.datetime.fromisoformat(t).timestamp()
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def rfc3339(t: float) -> str:
    """A time as restic's JSON gives it: RFC 3339 in local time, with its offset."""
    import datetime

    return datetime.datetime.fromtimestamp(t, tz=datetime.UTC).astimezone().isoformat()


def selection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """restic's ``--host``, ``--path`` and ``--tag`` filters (see :func:`selection`)."""
    fn = click.option("--tag", "tags", multiple=True, help="Only snapshots with these tags (a,b).")(
        fn
    )
    fn = click.option(
        "--path", "paths", multiple=True, help="Only snapshots that include this path."
    )(fn)
    return click.option("--host", "hosts", multiple=True, help="Only snapshots of this host.")(fn)


def selection(hosts: tuple[str, ...], paths: tuple[str, ...], tags: tuple[str, ...]) -> Any:
    """The :class:`~peerbak.core.selection.Selection` the filter options describe."""
    import os

    from peerbak.core.selection import Selection

    return Selection(
        hosts=hosts,
        paths=tuple(os.path.abspath(p) for p in paths),
        tags=tuple(frozenset(t for t in spec.split(",") if t) for spec in tags),
    )


#: Where ``-q`` and ``--limit-upload``/``--limit-download`` are kept for the commands
#: (the root context's meta).
QUIET: Final = "peerbak.quiet"
LIMITS: Final = "peerbak.limits"
#: The command's node home, once opened (the root context's meta).
HOME: Final = "peerbak.home"


def quiet() -> bool:
    """``peerbak -q``: no progress, no summary; errors still go to stderr."""
    return bool(_global(QUIET, False))


def _global(key: str, default: Any) -> Any:
    """A global option the root command kept in its context (``default`` outside one)."""
    ctx = click.get_current_context(silent=True)
    return default if ctx is None else ctx.find_root().meta.get(key, default)


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
