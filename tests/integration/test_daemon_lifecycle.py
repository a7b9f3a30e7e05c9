"""The daemon as systemd sees it: READY, WATCHDOG pings, SIGTERM → STOPPING, exit 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.nodes import peerbak

pytestmark = pytest.mark.slow


def _wait_for(sock: socket.socket, state: str, deadline: float) -> list[str]:
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            continue
        seen += message.split("\n")
        if state in seen:
            return seen
    raise AssertionError(f"no {state} within the deadline; got {seen}")


def test_notify_watchdog_and_a_clean_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "n"
    peerbak(home, "init", "--port", "0", "--listen", "127.0.0.1", "--no-lan")
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(0.2)
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "peerbak", "--home", str(home), "daemon"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            ready = _wait_for(sock, "READY=1", deadline)
            assert any(line.startswith("MAINPID=") for line in ready)
            _wait_for(sock, "WATCHDOG=1", deadline)
            assert (home / "run" / "daemon.sock").exists()
            assert (home / "run" / "daemon.json").exists()
            proc.send_signal(signal.SIGTERM)
            _wait_for(sock, "STOPPING=1", deadline)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
    assert not (home / "run" / "daemon.sock").exists()
    assert not (home / "run" / "daemon.json").exists()


def test_a_second_daemon_for_one_home_is_refused(tmp_path: Path) -> None:
    from tests.integration.nodes import Daemon

    node = Daemon(tmp_path, "n")
    node.init()
    node.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "peerbak", "--home", str(node.home), "daemon"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 78
        assert "already running" in out.stderr
        assert node.status()["port"] > 0  # the first one still serves
    finally:
        node.kill()
