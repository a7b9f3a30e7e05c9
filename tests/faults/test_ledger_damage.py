"""A damaged ledger is refused, kept and rebuilt, never taken for a new node.

On a real pool (owner + three friends, each its own daemon process): the owner's ledger
is truncated to 0 bytes, truncated to 8 KiB, and filled with random bytes. Each time,
every command that needs the ledger and the daemon itself exit 74 naming the file, the
file stays byte for byte as it was, and ``recover --in-place`` through one friend brings
the node back: the restore that follows is identical to the source.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from peerbak.tools.localpool import LocalNode, make_pool
from peerbak.tools.sample import describe

pytestmark = pytest.mark.slow

SIDE_FILES = ("-wal", "-shm")


@pytest.fixture(scope="module")
def pool() -> Iterator[tuple[Path, list[LocalNode]]]:
    base = Path(tempfile.mkdtemp(prefix="pbk-ledger-"))
    nodes = make_pool(base, ["owner", "f1", "f2", "f3"])
    try:
        yield base, nodes
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(base, ignore_errors=True)


def _zero(data: bytes) -> bytes:
    return b""


def _eight_kib(data: bytes) -> bytes:
    assert len(data) > 8192
    return data[:8192]


def _random(data: bytes) -> bytes:
    return random.Random(7).randbytes(len(data))


#: Every command that opens the ledger, with arguments that would otherwise work.
def _commands(src: Path, target: Path) -> list[list[str]]:
    return [
        ["snapshots"],
        ["ls", "latest"],
        ["restore", "latest", "--target", str(target)],
        ["backup", "--shards", "2/3", str(src)],
        ["stats"],
        ["status"],
        ["peers"],
        ["check"],
        ["challenge"],
        ["repair"],
        ["forget", "--keep-last", "1"],
        ["prune"],
        ["undelete"],
        ["invite"],
    ]


@pytest.mark.parametrize("damage", [_zero, _eight_kib, _random], ids=["0B", "8KiB", "random"])
def test_a_damaged_ledger_is_refused_kept_and_rebuilt(
    pool: tuple[Path, list[LocalNode]], damage: Callable[[bytes], bytes]
) -> None:
    base, nodes = pool
    owner, friend = nodes[0], nodes[1]
    src = base / f"src-{damage.__name__}"
    rnd = random.Random(damage.__name__)
    for i in range(30):
        path = src / f"d{i % 4}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rnd.randbytes(rnd.randrange(1, 200_000)))
    snap = owner.cli("backup", "--shards", "2/3", str(src))["snapshot_id"]

    # A clean stop leaves the ledger whole, with nothing beside it.
    ledger = owner.home / "ledger.sqlite"
    assert owner.stop() == 0
    assert [p.name for p in owner.home.glob("ledger.sqlite-*")] == []

    damaged = damage(ledger.read_bytes())
    ledger.write_bytes(damaged)

    for args in _commands(src, base / f"never-{damage.__name__}"):
        out = owner.cli(*args, check=False)
        assert out.returncode == 74, (args, out.returncode, out.stderr)
        assert str(ledger) in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
    daemon = subprocess.run(
        [sys.executable, "-m", "peerbak", "--home", str(owner.home), "daemon"],
        capture_output=True,
        text=True,
        timeout=60,  # it must exit at once; a daemon that serves would hit this
        check=False,
    )
    assert daemon.returncode == 74, daemon.stderr
    assert str(ledger) in daemon.stderr
    assert "recover --in-place" in daemon.stderr
    assert ledger.read_bytes() == damaged
    assert [p.name for p in owner.home.glob("ledger.sqlite-*")] == []
    assert not (base / f"never-{damage.__name__}").exists()

    address = f"127.0.0.1:{friend.status()['port']}"
    info = owner.cli("recover", "--in-place", "--from", address)
    assert info["snapshots"] >= 1
    (aside,) = (Path(p) for p in info["kept_aside"])
    assert aside.read_bytes() == damaged  # moved aside, not changed

    owner.start()
    target = base / f"restored-{damage.__name__}"
    owner.cli("restore", snap, "--target", str(target))
    assert describe(target / src.relative_to("/")) == describe(src)


def test_a_missing_ledger_is_not_made_anew_by_a_command(tmp_path: Path) -> None:
    """Only `init` (and recovery) create a ledger: any other command names the way out."""
    node = LocalNode(tmp_path, "solo")
    node.init()
    (node.home / "ledger.sqlite").unlink()
    out = node.cli("snapshots", check=False)
    assert out.returncode == 74, out.stderr
    assert "recover --in-place" in out.stderr
    assert not (node.home / "ledger.sqlite").exists()
