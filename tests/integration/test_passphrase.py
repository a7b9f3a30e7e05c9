"""A node secret sealed with a passphrase, through the real command line: where the
passphrase comes from, what a wrong or missing one says, and that set/remove keep the node."""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peerbak.cli.kit import EXIT_CODES

PASSWORD_VARS = ("PEERBAK_PASSWORD_FILE", "PEERBAK_PASSWORD_COMMAND")


def _cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``peerbak --home HOME ARGS`` with only the password variables given here, and no
    terminal (stdin is /dev/null, as under cron or systemd)."""
    base = {k: v for k, v in os.environ.items() if k not in PASSWORD_VARS}
    return subprocess.run(
        [sys.executable, "-m", "peerbak", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def _ok(out: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _one_line(out: subprocess.CompletedProcess[str], code: int) -> str:
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def _init(home: Path, *args: str, **env: str) -> dict[str, object]:
    return _ok(
        _cli(
            home, "init", "--port", "0", "--listen", "127.0.0.1", "--no-lan", *args, "--json", **env
        )
    )


def _secret_file(home: Path) -> str:
    path = home / "node.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(home.glob(".node.secret.*"))  # no temporary file left behind
    return path.read_text()


def _password_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text + "\n")
    return str(path)


def test_a_sealed_node_needs_its_passphrase(tmp_path: Path) -> None:
    home = tmp_path / "n"
    right = _password_file(tmp_path, "right", "correct horse battery staple")
    info = _init(home, "--passphrase", PEERBAK_PASSWORD_FILE=right)
    assert info["sealed"] is True
    text = _secret_file(home)
    assert text.startswith("peerbak-sealed-secret v1\n")
    assert "memlimit=67108864" in text

    # With it, the secret opens: snapshots gets as far as the pool (there is none yet).
    out = _cli(home, "snapshots", PEERBAK_PASSWORD_FILE=right)
    assert "in no pool yet" in _one_line(out, EXIT_CODES["ConfigError"])

    missing = _one_line(_cli(home, "snapshots"), 77)
    assert "PEERBAK_PASSWORD_FILE" in missing
    assert "PEERBAK_PASSWORD_COMMAND" in missing
    assert EXIT_CODES["PassphraseError"] == 77

    wrong = _password_file(tmp_path, "wrong", "hunter2")
    line = _one_line(_cli(home, "snapshots", PEERBAK_PASSWORD_FILE=wrong), 77)
    assert "wrong passphrase" in line
    assert "hunter2" not in line

    out = _cli(home, "--json", "snapshots", PEERBAK_PASSWORD_FILE=wrong)
    error = json.loads(_one_line(out, 77))
    assert (error["code"], error["error"]) == (77, "PassphraseError")


def test_the_passphrase_from_a_command(tmp_path: Path) -> None:
    home = tmp_path / "n"
    script = tmp_path / "keyring.py"
    script.write_text("print('from the keyring')\n")
    command = f"{sys.executable} {script}"
    _init(home, "--passphrase", PEERBAK_PASSWORD_COMMAND=command)
    out = _cli(home, "snapshots", PEERBAK_PASSWORD_COMMAND=command)
    assert "in no pool yet" in _one_line(out, EXIT_CODES["ConfigError"])

    line = _one_line(_cli(home, "snapshots", PEERBAK_PASSWORD_COMMAND="false"), 77)
    assert "PEERBAK_PASSWORD_COMMAND (false) failed with exit code 1" in line
    # The file wins over the command, as in restic.
    wrong = _password_file(tmp_path, "wrong", "not it")
    out = _cli(home, "snapshots", PEERBAK_PASSWORD_FILE=wrong, PEERBAK_PASSWORD_COMMAND=command)
    assert "wrong passphrase" in _one_line(out, 77)


def test_set_change_and_remove_keep_the_node(tmp_path: Path) -> None:
    home = tmp_path / "n"
    node = _init(home)["node"]
    plain = _secret_file(home)
    one = _password_file(tmp_path, "one", "first passphrase")
    two = _password_file(tmp_path, "two", "second passphrase")

    info = _ok(_cli(home, "passphrase", "set", "--new-password-file", one, "--json"))
    assert (info["node"], info["sealed"], info["changed"]) == (node, True, False)
    assert info["recovery_kit_on_disk"]  # said, so the user moves the kit away
    first = _secret_file(home)
    assert first.startswith("peerbak-sealed-secret v1\n")

    # Changing asks the current passphrase first: a wrong one leaves the file alone.
    out = _cli(home, "passphrase", "set", "--new-password-file", two, PEERBAK_PASSWORD_FILE=two)
    assert "wrong passphrase" in _one_line(out, 77)
    assert _secret_file(home) == first
    out = _cli(
        home, "passphrase", "set", "--new-password-file", two, "--json", PEERBAK_PASSWORD_FILE=one
    )
    assert (_ok(out)["node"], _ok(out)["changed"]) == (node, True)
    assert _secret_file(home) not in (first, plain)
    assert _cli(home, "snapshots", PEERBAK_PASSWORD_FILE=one).returncode == 77

    assert _cli(home, "passphrase", "remove", PEERBAK_PASSWORD_FILE=one).returncode == 77
    info = _ok(_cli(home, "passphrase", "remove", "--json", PEERBAK_PASSWORD_FILE=two))
    assert (info["node"], info["sealed"], info["changed"]) == (node, False, True)
    assert _secret_file(home) == plain  # the same secret, as init wrote it

    out = _cli(home, "passphrase", "remove", "--json")
    assert _ok(out)["changed"] is False
    out = _cli(home, "snapshots")  # plain again: no passphrase asked
    assert "in no pool yet" in _one_line(out, EXIT_CODES["ConfigError"])


def test_without_a_terminal_a_new_passphrase_must_come_from_a_file(tmp_path: Path) -> None:
    home = tmp_path / "n"
    out = _cli(home, "init", "--passphrase")
    assert "PEERBAK_PASSWORD_FILE" in _one_line(out, 77)
    assert not home.exists()  # nothing made before the passphrase was had

    _init(home)
    line = _one_line(_cli(home, "passphrase", "set"), 77)
    assert "--new-password-file" in line
    assert not _secret_file(home).startswith("peerbak-sealed-secret")


def _on_a_terminal(home: Path, args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run peerbak with a pseudo-terminal as its controlling terminal, answering each
    hidden prompt in turn: its exit code and everything it wrote there."""
    env = {k: v for k, v in os.environ.items() if k not in PASSWORD_VARS}
    argv = [sys.executable, "-m", "peerbak", "--home", str(home), *args]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin, stdout and stderr are the terminal
        try:
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    seen, pending = b"", list(answers)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            # click writes "Prompt:", then getpass turns echo off and writes " ": only
            # then is an answer hidden (and not flushed away as typed too early).
            if pending and seen.endswith(b": "):
                os.write(fd, pending.pop(0).encode() + b"\n")
        else:
            os.kill(pid, 9)
            raise AssertionError(f"no end within the deadline: {seen!r}")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_asked_on_a_terminal(tmp_path: Path) -> None:
    home = tmp_path / "n"
    args = ["init", "--passphrase", "--port", "0", "--listen", "127.0.0.1", "--no-lan"]
    code, seen = _on_a_terminal(home, args, ["typed secret", "typed secret"])
    assert code == 0, seen
    assert "New passphrase: " in seen
    assert "Repeat for confirmation: " in seen
    assert "typed secret" not in seen  # hidden input
    assert _secret_file(home).startswith("peerbak-sealed-secret v1\n")

    code, seen = _on_a_terminal(home, ["snapshots"], ["typed secret"])
    assert code == EXIT_CODES["ConfigError"], seen
    assert "in no pool yet" in seen
    code, seen = _on_a_terminal(home, ["snapshots"], ["mistyped"])
    assert code == 77, seen
    assert "wrong passphrase" in seen


@pytest.mark.slow
def test_a_daemon_started_with_a_password_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peerbak.core.errors import PeerUnavailable
    from tests.integration.nodes import Daemon

    for name in PASSWORD_VARS:
        monkeypatch.delenv(name, raising=False)
    right = _password_file(tmp_path, "right", "daemon passphrase")
    node = Daemon(tmp_path, "n")
    monkeypatch.setenv("PEERBAK_PASSWORD_FILE", right)
    node.init("--passphrase")
    monkeypatch.delenv("PEERBAK_PASSWORD_FILE")
    assert _secret_file(node.home).startswith("peerbak-sealed-secret v1\n")

    # Without it the daemon refuses to start, and says why.
    with pytest.raises(PeerUnavailable, match="PEERBAK_PASSWORD_FILE"):
        node.start()

    node.start(extra_env={"PEERBAK_PASSWORD_FILE": right})
    try:
        status = _ok(_cli(node.home, "status", "--json", PEERBAK_PASSWORD_FILE=right))
        assert status["node"] == node.info["node"]
        # The running daemon holds the secret: what only asks it needs no passphrase ...
        assert _ok(_cli(node.home, "invite", "--json"))["token"]
        # ... but what reads the backups itself does.
        assert _cli(node.home, "status").returncode == 77
    finally:
        assert node.stop() == 0
