"""Bad config, unwritable home, port in use: one clear line, a documented code, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from peerbak.cli.kit import EXIT_CODES
from tests.integration.nodes import peerbak


def _daemon(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peerbak", "--home", str(home), "daemon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_clear_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_unknown_config_key_names_file_line_and_key(tmp_path: Path) -> None:
    home = tmp_path / "n"
    peerbak(home, "init", "--port", "0", "--listen", "127.0.0.1")
    config = home / "config.toml"
    text = config.read_text()
    config.write_text(text.replace("[node]\n", "[node]\nprot = 22\n", 1))
    line_no = config.read_text().splitlines().index("prot = 22") + 1
    out = _daemon(home)
    assert out.returncode == EXIT_CODES["ConfigError"] == 78
    line = _one_clear_line(out.stderr)
    assert f"line {line_no}" in line
    assert "prot" in line


def test_bad_config_value_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "n"
    peerbak(home, "init", "--port", "0", "--listen", "127.0.0.1")
    config = home / "config.toml"
    config.write_text(config.read_text().replace('lend = "50GiB"', 'lend = "lots"'))
    line_no = config.read_text().splitlines().index('lend = "lots"') + 1
    out = _daemon(home)
    assert out.returncode == 78
    line = _one_clear_line(out.stderr)
    assert f"line {line_no}: storage.lend: not a size" in line


def test_init_refuses_an_existing_node(tmp_path: Path) -> None:
    home = tmp_path / "n"
    peerbak(home, "init", "--port", "0")
    out = peerbak(home, "init", "--port", "0", check=False)
    assert out.returncode == 78
    assert "already exists" in _one_clear_line(out.stderr)


def test_unwritable_home_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = peerbak(blocker / "home", "init", check=False)
    assert out.returncode == EXIT_CODES["StorageError"] == 74
    assert str(blocker) in _one_clear_line(out.stderr)


def test_commands_without_a_node_say_to_run_init(tmp_path: Path) -> None:
    out = peerbak(tmp_path / "nowhere", "status", check=False)
    assert out.returncode == 78
    assert "peerbak init" in _one_clear_line(out.stderr)


def test_status_without_a_daemon_says_how_to_start_it(tmp_path: Path) -> None:
    home = tmp_path / "n"
    peerbak(home, "init", "--port", "0")
    out = peerbak(home, "status", check=False)
    assert out.returncode == EXIT_CODES["PeerUnavailable"] == 75
    assert "peerbak daemon" in out.stderr


def test_status_with_a_broken_config_says_so_and_exits_78(tmp_path: Path) -> None:
    home = tmp_path / "n"
    peerbak(home, "init", "--port", "0")
    config = home / "config.toml"
    config.write_text(config.read_text() + "\nprobe_minutes = [\n")
    out = peerbak(home, "status", check=False)
    assert out.returncode == EXIT_CODES["ConfigError"] == 78
    assert "config.toml" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        home = tmp_path / "n"
        peerbak(home, "init", "--port", str(port), "--listen", "127.0.0.1")
        out = _daemon(home)
    assert out.returncode == 74
    line = _one_clear_line(out.stderr)
    assert f"127.0.0.1:{port}" in line
