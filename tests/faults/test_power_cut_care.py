"""A power cut (SIGKILL) of the owner during forget, prune, undelete and repair.

One pool of five daemon processes (owner + four friends, 2-of-3, so repair has a member
to move to) serves the module. Each test kills the owner's command at one named crash
point (``peerbak.services.repository.CARE_CRASH_POINTS``), then checks what a restart must find:
no pack below k (``status``), every snapshot the ledger lists restores byte for byte,
and the pool's own view agrees, since a node recovered from a friend with the key alone
sees the same snapshots and restores them too. Then the command is run again, whole.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from peerbak.services.repository import CARE_CRASH_POINTS, CRASH_ENV
from peerbak.tools.localpool import LocalNode, make_pool, set_config
from peerbak.tools.sample import describe

pytestmark = pytest.mark.slow

SHARDS = ("--shards", "2/3", "--pack-size", "256KiB")


@dataclass
class Pool:
    base: Path
    owner: LocalNode
    friends: list[LocalNode]
    key_file: Path
    source: Path
    rnd: random.Random = field(default_factory=lambda: random.Random(5))
    #: What each snapshot made holds (``describe`` of the source at the time).
    made: dict[str, dict[str, tuple[object, ...]]] = field(default_factory=dict)
    #: The newest snapshot a whole backup published.
    latest: str = ""

    def backup(self) -> str:
        """Change some files (new versions and new files), back up, remember the tree."""
        for path in sorted(self.source.iterdir())[:4]:
            path.write_bytes(self.rnd.randbytes(60_000))
        (self.source / f"new-{len(self.made)}.bin").write_bytes(self.rnd.randbytes(70_000))
        snap = str(self.owner.cli("backup", *SHARDS, str(self.source))["snapshot_id"])
        self.made[snap] = describe(self.source)
        self.latest = snap
        return snap

    def killed(self, point: str, *args: str) -> None:
        """Run ``peerbak ARGS`` as the owner and have it SIGKILLed at ``point``."""
        out = self._run(args, {CRASH_ENV: point})
        assert out.returncode == -signal.SIGKILL, (point, out.returncode, out.stderr)

    def _run(self, args: tuple[str, ...], env: dict[str, str]) -> Any:
        return subprocess.run(
            [sys.executable, "-m", "peerbak", "--home", str(self.owner.home), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, **env},
        )


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    base = Path(tempfile.mkdtemp(prefix="pbk-powercut-"))
    nodes = make_pool(base, ["owner", "f1", "f2", "f3", "f4"])
    try:
        owner = nodes[0]
        set_config(owner.home, "maintenance", "enabled", "false")  # repair when told
        owner.stop()
        owner.start()
        key_file = base / "key.txt"
        key_file.write_text(owner.info["recovery_key"])
        source = base / "source"
        source.mkdir()
        rnd = random.Random(4)
        for i in range(12):
            (source / f"f{i:02}.bin").write_bytes(rnd.randbytes(60_000))
        yield Pool(base, owner, nodes[1:], key_file, source)
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(base, ignore_errors=True)


def _restores(pool: Pool, node: LocalNode, snap: str, to: Path) -> None:
    node.cli("restore", snap, "--target", str(to))
    assert describe(to / str(pool.source).lstrip("/")) == pool.made[snap]


def _whole(pool: Pool, tag: str) -> None:
    """What a restart must find: nothing below k, every listed snapshot restores, and a
    node recovered from the pool alone sees the newest published and restores all it
    sees."""
    health = pool.owner.cli("status")["health"]
    assert health["packs_below_k"] == 0, health
    listed = [s["id"] for s in pool.owner.cli("snapshots")]
    assert listed
    assert set(listed) <= set(pool.made)
    for snap in listed:
        _restores(pool, pool.owner, snap, pool.base / f"restored-{tag}-{snap[:8]}")

    fresh = LocalNode(pool.base, f"recovered-{tag}")
    address = f"127.0.0.1:{pool.friends[0].status()['port']}"
    fresh.cli(
        "recover",
        "--from",
        address,
        "--key-file",
        str(pool.key_file),
        "--port",
        "0",
        "--listen",
        "127.0.0.1",
        "--no-lan",
    )
    seen = [s["id"] for s in fresh.cli("snapshots")]
    assert pool.latest in seen, (seen, listed)
    assert set(seen) <= set(pool.made)
    for snap in seen:
        _restores(pool, fresh, snap, pool.base / f"from-pool-{tag}-{snap[:8]}")
    shutil.rmtree(fresh.home)


@pytest.mark.parametrize("point", ["forget-published", "prune-repacked", "prune-doomed"])
def test_forget_and_prune_killed_leave_everything_restorable(pool: Pool, point: str) -> None:
    assert point in CARE_CRASH_POINTS
    for _ in range(3):
        pool.backup()
    pool.killed(point, "forget", "--keep-last", "1", "--prune")
    _whole(pool, f"{point}-killed")
    pool.owner.cli("forget", "--keep-last", "1", "--prune")
    _whole(pool, f"{point}-again")
    assert pool.owner.cli("check", "--read-data", check=False).returncode == 0


def test_prune_killed_before_publishing_then_a_backup_killed_too(pool: Pool) -> None:
    """Killed after prune doomed packs, then the next backup killed before its manifest:
    the doomed packs must still be held, since the members' manifest still lists them."""
    for _ in range(3):
        pool.backup()
    pool.killed("prune-doomed", "forget", "--keep-last", "1", "--prune")
    for path in sorted(pool.source.iterdir())[:2]:
        path.write_bytes(pool.rnd.randbytes(50_000))
    pool.killed("before-manifest", "backup", *SHARDS, str(pool.source))
    # Killed after its snapshot reached the ledger: a whole snapshot, not yet published.
    for row in pool.owner.cli("snapshots"):
        pool.made.setdefault(row["id"], describe(pool.source))
    _whole(pool, "doomed-then-backup-killed")
    pool.backup()
    pool.owner.cli("prune")
    _whole(pool, "doomed-then-backup-again")


def test_prune_killed_after_publishing(pool: Pool) -> None:
    for _ in range(2):
        pool.backup()
    pool.killed("prune-published", "forget", "--keep-last", "1", "--prune")
    _whole(pool, "published-killed")
    pool.owner.cli("prune")  # deletes what the killed one doomed but did not delete
    db = sqlite3.connect(f"file:{pool.owner.home / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        (sealed,) = db.execute("SELECT COUNT(*) FROM packs WHERE state = 'sealed'").fetchone()
    finally:
        db.close()
    assert sealed == 0
    _whole(pool, "published-again")
    assert pool.owner.cli("check", "--read-data", check=False).returncode == 0


def test_undelete_killed_after_moving_the_trash_back(pool: Pool) -> None:
    pool.backup()
    pool.killed("undelete-moved", "undelete")
    _whole(pool, "undelete-killed")
    r = pool.owner.cli("undelete")
    assert r["snapshots"] >= 1
    _whole(pool, "undelete-again")


def test_repair_killed_after_uploading(pool: Pool) -> None:
    pool.backup()
    owner_id = pool.owner.info["node"]
    lost = pool.friends[0].home / "held" / owner_id / "shards"
    gone = [p for p in lost.rglob("*") if p.is_file()]
    assert gone
    for path in gone:  # a friend's disk loses everything it held for us
        path.unlink()
    assert pool.owner.cli("check", check=False).returncode == 65  # found, marked for repair
    pool.killed("repair-uploaded", "repair")
    _whole(pool, "repair-killed")
    pool.owner.cli("repair")
    assert pool.owner.cli("check", "--read-data", check=False).returncode == 0
    _whole(pool, "repair-again")
