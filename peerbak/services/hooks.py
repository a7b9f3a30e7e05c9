"""The programs a backup job runs: its hooks, and the command whose output it backs up.

Each runs without a shell, in a process group of its own, with ``PEERBAK_*`` variables
added to the environment. A hook past its timeout, or one still running when the job
is cancelled (the daemon stopping), is killed with its whole group: a hook's children
never outlive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from typing import IO, Final, cast

from peerbak.core.errors import HookFailed

log = logging.getLogger(__name__)

#: Bytes of a failed program's output quoted in the error.
TAIL: Final = 400
#: Seconds a program's group gets after SIGTERM before SIGKILL.
KILL_GRACE: Final = 2.0


def _shown(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


def _tail(output: bytes) -> str:
    text = output.decode(errors="replace").strip()
    if len(text) > TAIL:
        text = "…" + text[-TAIL:]
    return f": {text}" if text else ""


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def run_hook(which: str, argv: list[str], env: Mapping[str, str], timeout: float) -> None:
    """Run one hook command to its end; :class:`HookFailed` if it cannot start, exits
    non-zero or runs past ``timeout`` seconds (then it is killed, its group too)."""
    shown = _shown(argv)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    except OSError as exc:
        raise HookFailed(f"{which} hook `{shown}` could not start: {exc.strerror}") from None
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        await _end(proc)
        raise HookFailed(
            f"{which} hook `{shown}` ran past its {timeout:g} s timeout and was killed"
        ) from None
    except BaseException:  # cancelled: the daemon stops
        await _end(proc)
        raise
    for line in output.decode(errors="replace").splitlines()[-20:]:
        log.info("%s hook: %s", which, line)
    if proc.returncode:
        raise HookFailed(f"{which} hook `{shown}` exited {_status(proc.returncode)}{_tail(output)}")


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Stop ``proc``'s whole group: SIGTERM, then SIGKILL after a grace."""
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE)
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
    _kill_group(proc.pid)  # children that ignored SIGTERM while the leader left


def _status(code: int) -> str:
    return f"on signal {-code}" if code < 0 else str(code)


class CommandOutput:
    """A command job's standard output as the stream ``backup --stdin`` reads: at its
    end the command's exit status is checked, and a failure raises there, inside the
    backup, before any snapshot is made (its packs are reclaimed as a killed backup's)."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.shown = _shown(argv)
        self._errors: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - the user's own configured command
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._errors,
                env={**os.environ, **env},
                start_new_session=True,
            )
        except OSError as exc:
            self._errors.close()
            raise HookFailed(f"command `{self.shown}` could not start: {exc.strerror}") from None
        assert self.proc.stdout is not None
        self._out = cast(io.BufferedReader, self.proc.stdout)

    def readinto(self, buffer: memoryview, /) -> int:
        """Read from the command (in the backup's thread); at the end, its status."""
        n = self._out.readinto(buffer)
        if not n:
            code = self.proc.wait()
            if code:
                self._errors.seek(max(0, self._errors.seek(0, os.SEEK_END) - TAIL))
                raise HookFailed(
                    f"command `{self.shown}` exited {_status(code)}{_tail(self._errors.read())}"
                )
        return n or 0

    def close(self) -> None:
        """Kill the command if it still runs (the backup failed or was cancelled)."""
        if self.proc.poll() is None:
            _kill_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(KILL_GRACE)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc.pid)
                self.proc.wait()
        self._out.close()
        self._errors.close()
