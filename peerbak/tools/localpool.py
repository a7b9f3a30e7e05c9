"""A throwaway pool on this machine: nodes as separate daemon processes on 127.0.0.1.

Used by ``peerbak benchmark transport``, the demo and the integration tests. Each
daemon gets a private ``NOTIFY_SOCKET``; the pool waits for its READY=1 datagram
(with a deadline), never for a fixed time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from peerbak.adapters.home import Home
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import PeerbakError, PeerUnavailable

READY_TIMEOUT: Final = 60.0


def peerbak(home: Path, *args: str, check: bool = True, timeout: float = 120) -> Any:
    """Run the CLI against ``home`` with --json: its last line parsed, or the process."""
    out = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "peerbak", "--home", str(home), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if not check:
        return out
    if out.returncode != 0:
        raise PeerbakError(f"peerbak {' '.join(args)} exited {out.returncode}: {out.stderr}")
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None  # the last line: status lines come first


def set_config(home: Path, section: str, key: str, value: str) -> None:
    """Set ``key = value`` (TOML) in ``[section]`` of the node's config.toml: the same
    key may be in other sections too (``enabled`` is in [maintenance] and [web])."""
    path = home / "config.toml"
    text = path.read_text()
    start = text.index(f"[{section}]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end < 0 else end
    block, count = re.subn(rf"(?m)^{re.escape(key)} = .*$", f"{key} = {value}", text[start:end])
    if count != 1:
        raise PeerbakError(f"no {key} in [{section}] of {path}")
    path.write_text(text[:start] + block + text[end:])


class LocalNode:
    """One node: its home, and its daemon process while it runs."""

    def __init__(self, base: Path, name: str) -> None:
        self.name = name
        self.home = base / name
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.log = base / f"{name}.log"

    def init(self, *extra: str) -> dict[str, Any]:
        self.info = peerbak(
            self.home,
            "init",
            "--name",
            self.name,
            "--port",
            "0",
            "--listen",
            "127.0.0.1",
            "--no-lan",  # nodes on one host find each other by the roster alone
            "--web-port",
            "0",  # pools side by side on one host: no two status pages on one port
            *extra,
        )
        return self.info

    @property
    def keys(self) -> NodeKeys:
        return NodeKeys.derive(Home.open(self.home).secret())

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        with (
            tempfile.TemporaryDirectory(prefix="pbk-notify-") as tmp,
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        ):
            path = os.path.join(tmp, "notify")
            sock.bind(path)
            sock.settimeout(0.2)  # to notice a daemon that died instead of getting ready
            env = {**os.environ, "NOTIFY_SOCKET": path, **(extra_env or {})}
            with self.log.open("ab") as log:
                # No terminal: a daemon with a sealed secret must not wait at a prompt.
                self.proc = subprocess.Popen(  # noqa: S603
                    self.command("daemon"),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                )
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                try:
                    message = sock.recv(4096).decode()
                except TimeoutError:
                    message = ""
                if "READY=1" in message.split("\n"):
                    return
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise PeerUnavailable(f"{self.name} did not get ready:\n{self.log.read_text()}")

    def command(self, *args: str) -> list[str]:
        """``peerbak ARGS`` for this node (a subclass may run it behind a prefix)."""
        return [sys.executable, "-m", "peerbak", "--home", str(self.home), *args]

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> Any:
        return peerbak(self.home, *args, check=check, timeout=timeout)

    def status(self) -> dict[str, Any]:
        """``peerbak status --json``: the node (port, name, pool) and the pool's health.
        It is printed whatever the exit code (75 with a member down, 69 when not all can
        be restored now); only a failure before it (no JSON) raises."""
        out = self.cli("status", check=False)
        lines = out.stdout.strip().splitlines()
        if not lines:
            raise PeerbakError(f"peerbak status exited {out.returncode}: {out.stderr}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait: the exit code."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a power cut."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None


@contextmanager
def temporary_pool(names: Sequence[str], prefix: str = "pbk-pool-") -> Iterator[list[LocalNode]]:
    """:func:`make_pool` in a new temporary directory; on leaving, every daemon is killed
    and the directory removed."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    nodes = make_pool(base, names)
    try:
        yield nodes
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(base, ignore_errors=True)


def make_pool(base: Path, names: Sequence[str]) -> list[LocalNode]:
    """Init and start every node; the first invites the others one at a time."""
    nodes = [LocalNode(base, name) for name in names]
    try:
        for node in nodes:
            node.init()
            node.start()
        for joiner in nodes[1:]:
            token = nodes[0].cli("invite")["token"]
            joiner.cli("join", token)
    except BaseException:
        for node in nodes:
            node.kill()
        raise
    return nodes
