"""The promise, end to end, on six real nodes (owner + five friends, separate daemon
processes on 127.0.0.1): back up a tree of ≥ 5,000 files and ≥ 200 MiB 3-of-5, back it
up again after changing 1 % of it, kill two friends with SIGKILL and restore, then lose
the owner's home and recover it from the recovery key and one friend.

The steps share one pool and run in file order, each building on the last (as a user's
week would); each asserts its own outcome.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerbak.adapters.home import Home
from peerbak.tools.sample import differences, make_tree
from tests.integration.nodes import Daemon, peerbak

pytestmark = pytest.mark.slow

NAMES = ["owner", "f1", "f2", "f3", "f4", "f5"]


class World:
    def __init__(self, base: Path, nodes: list[Daemon], source: Path) -> None:
        self.base = base
        self.nodes = nodes
        self.owner = nodes[0]
        self.friends = nodes[1:]
        self.source = source
        self.first: dict[str, Any] = {}
        self.second: dict[str, Any] = {}
        self.changed: list[Path] = []


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("pool")
    nodes = [Daemon(base, name) for name in NAMES]
    try:
        for node in nodes:
            node.init()
            node.start()
        for joiner in nodes[1:]:
            joiner.cli("join", nodes[0].cli("invite")["token"])
        source = base / "source"
        counts = make_tree(source, 200 << 20, files=5_000, big=65 << 20, seed=5)
        assert counts["files"] >= 5_000
        assert counts["bytes"] >= 200 << 20
        assert min(counts["symlinks"], counts["hardlinks"], counts["empty"]) > 0
        yield World(base, nodes, source)
    finally:
        for node in nodes:
            node.kill()


def _restored(world: World, target: Path) -> Path:
    return target / world.source.relative_to("/")


def _ledger(world: World) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{world.owner.home / 'ledger.sqlite'}?mode=ro", uri=True)


def test_first_backup_stores_every_pack_on_at_least_k_members(world: World) -> None:
    s = world.owner.cli("backup", "--shards", "3/5", str(world.source), timeout=900)
    world.first = s
    assert (s["k"], s["n"]) == (3, 5)
    assert s["errors"] == 0
    assert s["files_new"] == s["total_files_processed"] >= 5_000
    assert s["manifest_copies"] == 5
    with _ledger(world) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM packs GROUP BY state").fetchall())
        assert set(states) == {"stored"}
        per_pack = db.execute(
            "SELECT p.pack_id, COUNT(s.idx), COUNT(DISTINCT s.holder) FROM packs p "
            "JOIN shards s ON s.pack_id = p.pack_id AND s.stored = 1 GROUP BY p.pack_id"
        ).fetchall()
        owner_id = world.owner.keys.node_id
        holders = {bytes(h) for (h,) in db.execute("SELECT DISTINCT holder FROM shards")}
    assert per_pack
    assert all(shards == distinct == 5 for _, shards, distinct in per_pack)
    assert bytes(owner_id) not in holders  # the owner never holds its own shards


def test_second_backup_reads_only_what_changed(world: World) -> None:
    rnd = random.Random(9)
    files = sorted(
        p
        for p in world.source.rglob("*")
        if p.is_file() and not p.is_symlink() and p.stat().st_nlink == 1 and p.stat().st_size > 0
    )
    world.changed = rnd.sample(files, len(files) // 100)
    changed_bytes = 0
    for path in world.changed:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data) + b"more")
        changed_bytes += len(data) + 4
    with _ledger(world) as db:
        (packs_before,) = db.execute("SELECT COUNT(*) FROM packs").fetchone()
    s = world.owner.cli("backup", "--shards", "3/5", str(world.source), timeout=900)
    world.second = s
    assert s["files_changed"] == len(world.changed)
    assert s["files_new"] == 0
    assert s["files_unmodified"] == world.first["total_files_processed"] - len(world.changed)
    assert s["bytes_read"] == changed_bytes  # counters, not time: only changed files read
    assert 0 < s["data_added"] <= changed_bytes
    assert s["packs_added"] < world.first["packs_added"]
    with _ledger(world) as db:
        (packs_after,) = db.execute("SELECT COUNT(*) FROM packs").fetchone()
    assert packs_after - packs_before == s["packs_added"]  # only new packs went up
    stats = world.owner.cli("stats")
    added = {row["snapshot"]: row for row in stats["added_by_snapshot"]}
    assert added[s["snapshot_id"]]["data_added"] == s["data_added"]
    assert added[s["snapshot_id"]]["stored_added"] == s["stored_added"]
    assert stats["snapshots"] == 2
    assert stats["deduplicated_bytes"] < stats["logical_bytes"]
    assert stats["stored_bytes"] > stats["deduplicated_bytes"] // 2
    assert {m["name"] for m in stats["members"]} == {"f1", "f2", "f3", "f4", "f5"}
    one = world.owner.cli("stats", "latest")
    assert one["logical_bytes"] == s["total_bytes_processed"]


def test_restore_with_two_friends_killed_is_identical(world: World) -> None:
    killed = [world.friends[0], world.friends[3]]
    for node in killed:
        node.kill()
    target = world.base / "restored"
    r = world.owner.cli("restore", "latest", "--target", str(target), timeout=900)
    assert differences(world.source, _restored(world, target)) == []
    assert set(r["served_by"]) <= {"f2", "f3", "f5"}
    assert {n.name for n in killed} <= set(r["down"])
    assert not list(target.rglob("*.partial"))


def _typos(key: str, count: int) -> str:
    """``key`` with ``count`` characters mistyped (letters and digits swapped for others)."""
    chars = list(key)
    spots = [i for i, c in enumerate(chars) if c.isalnum()][5::17][:count]
    for i in spots:
        chars[i] = "a" if chars[i] != "a" else "b"
    assert "".join(chars) != key
    return "".join(chars)


def test_disaster_recovery_from_the_kit_and_one_friend(world: World) -> None:
    """The recovery kit ``init`` wrote, as it is, with three characters of its key
    mistyped (as read off a printed page): the node, its name and its backups return."""
    key = world.owner.info["recovery_key"]
    name = Home.open(world.owner.home).config().node.name
    assert name
    kit = (world.owner.home / "recovery-kit.txt").read_text()
    assert key in kit
    world.owner.kill()
    shutil.rmtree(world.owner.home)
    key_file = world.base / "recovery-kit.txt"
    key_file.write_text(kit.replace(key, _typos(key, 3)))
    survivor = world.friends[1]
    address = f"127.0.0.1:{survivor.status()['port']}"
    info = peerbak(
        world.owner.home,
        "recover",
        "--from",
        address,
        "--key-file",
        str(key_file),
        "--port",
        "0",
        "--listen",
        "127.0.0.1",
        "--no-lan",
    )
    assert info["node"] == world.owner.keys.node_id.hex()
    assert info["snapshots"] == 2
    snaps = peerbak(world.owner.home, "snapshots")
    assert [s["id"] for s in snaps][-1] == world.second["snapshot_id"]
    target = world.base / "recovered"
    peerbak(world.owner.home, "restore", "latest", "--target", str(target), timeout=900)
    assert differences(world.source, _restored(world, target)) == []
    assert os.stat(world.owner.home / "node.secret").st_mode & 0o777 == 0o600
    assert Home.open(world.owner.home).config().node.name == name  # from the pool's roster
