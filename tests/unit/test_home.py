"""The node home: modes, refusals, atomic secret, state, recovery kit."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from peerbak.adapters.home import DaemonState, Home, locate
from peerbak.core.config import default_config_text
from peerbak.core.errors import ConfigError, StorageError
from peerbak.core.ids import NodeId

SECRET = bytes(range(32))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_makes_private_files_and_directories(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "n", SECRET, default_config_text("a", 0))
    assert _mode(home.root) == 0o700
    assert _mode(home.root / "node.secret") == 0o600
    assert _mode(home.config_path) == 0o600
    assert _mode(home.run_dir) == _mode(home.held_dir) == 0o700
    assert Home.open(home.root).secret() == SECRET
    assert not list(home.root.glob(".*.tmp"))


def test_create_refuses_an_existing_node_and_keeps_its_secret(tmp_path: Path) -> None:
    Home.create(tmp_path, SECRET, "")
    with pytest.raises(ConfigError, match="already exists"):
        Home.create(tmp_path, bytes(32), "")
    assert Home.open(tmp_path).secret() == SECRET


def test_create_refuses_a_bad_config_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Home.create(tmp_path / "n", SECRET, "[node]\nprot = 1\n")
    assert not (tmp_path / "n").exists()


def test_unwritable_place_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="cannot create a node home"):
        Home.create(tmp_path / "file" / "home", SECRET, "")


def test_open_without_a_node_says_to_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="peerbak init"):
        Home.open(tmp_path)


def test_damaged_secret_is_refused(tmp_path: Path) -> None:
    home = Home.create(tmp_path, SECRET, "")
    (tmp_path / "node.secret").write_text("not hex")
    with pytest.raises(ConfigError, match="damaged"):
        home.secret()


def test_state_round_trip(tmp_path: Path) -> None:
    home = Home.create(tmp_path, SECRET, "")
    assert home.read_state() is None
    state = DaemonState(pid=42, listen="127.0.0.1", port=7000, started=1.5)
    home.write_state(state)
    assert home.read_state() == state
    assert _mode(home.state_path) == 0o600
    home.clear_state()
    assert home.read_state() is None


def test_recovery_kit_is_private_and_a_png(tmp_path: Path) -> None:
    home = Home.create(tmp_path, SECRET, "")
    txt, png = home.write_recovery_kit("abcde-fghij", NodeId(bytes(32)), "alice")
    assert "abcde-fghij" in txt.read_text()
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert _mode(txt) == _mode(png) == 0o600


def test_repr_shows_no_secret(tmp_path: Path) -> None:
    home = Home.create(tmp_path, SECRET, "")
    assert SECRET.hex() not in repr(home)


def test_locate_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERBAK_HOME", str(tmp_path / "env"))
    assert locate(tmp_path / "flag") == tmp_path / "flag"
    assert locate(None) == tmp_path / "env"
    monkeypatch.delenv("PEERBAK_HOME")
    assert locate(None).name == "peerbak"


def test_state_of_a_dead_daemon_is_not_running(tmp_path: Path) -> None:
    home = Home.create(tmp_path, SECRET, "")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    home.write_state(DaemonState(pid=int(gone.stdout), listen="127.0.0.1", port=1, started=0.0))
    assert home.read_state() is not None
    assert home.running_state() is None
    home.write_state(DaemonState(pid=os.getpid(), listen="127.0.0.1", port=1, started=0.0))
    assert home.running_state() is not None


def test_manifest_received_is_when_the_owner_s_last_manifest_arrived(tmp_path: Path) -> None:
    from peerbak.adapters.store import DirectoryShareStore
    from peerbak.core import objects
    from peerbak.core.crypto import NodeKeys

    home = Home.create(tmp_path / "n", SECRET, default_config_text("a", 0))
    keys = NodeKeys.derive(bytes(range(1, 33)))
    body = objects.ManifestBody(bytes(16), bytes(keys.node_id), 0.0, [], [])

    def manifest(sequence: int) -> bytes:
        return objects.seal_manifest(keys, sequence, body, os.urandom)

    assert home.manifest_received(keys.node_id) is None  # never sent one
    store = DirectoryShareStore(home.holder_dir(keys.node_id))
    assert home.manifest_received(keys.node_id) is None
    one = manifest(1)
    store._put_manifest(one, 1)
    first = home.manifest_received(keys.node_id)
    assert first is not None
    os.utime(store.manifest_path, (first - 3600, first - 3600))
    assert home.manifest_received(keys.node_id) == first - 3600
    store._put_manifest(one, 1)  # the same one again: not news
    assert home.manifest_received(keys.node_id) == first - 3600
    store._put_manifest(manifest(2), 2)
    assert home.manifest_received(keys.node_id) == pytest.approx(first, abs=60)  # a new one
