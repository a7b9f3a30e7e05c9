"""A member replays what was once valid: old roster records, and a manifest the owner
really signed, but for another pool.

On a real pool (owner + three friends, each its own daemon process). A friend restarts
on a new port and re-signs its record; a member then pushes the whole roster as it was
before: nothing is accepted, and everyone still dials the new port. A friend keeps a
manifest signed with the owner's key for another pool (as an earlier pool of the same
key would have), with a higher sequence, as its current one and in its trash: recovery
through it is refused, recovery through an honest friend and ``undelete`` ignore it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Iterator

import pytest

from peerbak.adapters.link import PeerLink
from peerbak.adapters.transport import private_key
from peerbak.core import objects, pool
from peerbak.core.ids import NodeId
from peerbak.core.objects import ManifestBody
from peerbak.tools.localpool import LocalNode, temporary_pool
from peerbak.tools.sample import describe

pytestmark = pytest.mark.slow

SHARDS = ("--shards", "2/3")
DEADLINE = 60.0


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[LocalNode]]:
    with temporary_pool(["owner", "f1", "f2", "f3"], "pbk-replay-") as made:
        yield made


def _records(node: LocalNode) -> list[bytes]:
    db = sqlite3.connect(f"file:{node.home / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return [bytes(r[0]) for r in db.execute("SELECT record FROM roster_records")]
    finally:
        db.close()


def _roster(node: LocalNode) -> pool.Roster:
    db = sqlite3.connect(f"file:{node.home / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        (pool_id,) = db.execute("SELECT value FROM meta WHERE key = 'pool'").fetchone()
    finally:
        db.close()
    roster = pool.Roster(bytes(pool_id))
    for blob in _records(node):
        roster.apply(blob)
    return roster


def _link(to: LocalNode, as_: LocalNode) -> PeerLink:
    return PeerLink(
        NodeId(bytes(to.keys.node_id)),
        [str(to.status()["addresses"][0])],
        pool.ssh_public_key(to.keys),
        private_key(as_.keys.ssh_seed),
        timeout=30,
    )


async def test_replayed_old_roster_records_change_nothing(nodes: list[LocalNode]) -> None:
    owner, f1, f2, _ = nodes
    old = _records(owner)
    old_address = _roster(owner).record(bytes(f2.keys.node_id))
    assert old_address is not None

    f2.stop()  # a new port: f2 re-signs its record and tells the others
    f2.start()
    new = str(f2.status()["addresses"][0])
    deadline = time.monotonic() + DEADLINE
    while True:
        record = _roster(owner).record(bytes(f2.keys.node_id))
        assert record is not None
        if new in record.addresses:
            break
        assert time.monotonic() < deadline, "the owner never learnt f2's new address"
        await asyncio.sleep(0.2)  # polling the owner's ledger until the deadline
    assert new not in old_address.addresses

    link = _link(owner, f1)  # a member replays everything as it was
    try:
        assert await link.push_roster(old) == 0
    finally:
        await link.close()
    after = _roster(owner).record(bytes(f2.keys.node_id))
    assert after is not None
    assert new in after.addresses
    assert sorted(m.node for m in _roster(owner).members()) == sorted(
        bytes(n.keys.node_id) for n in nodes
    )
    # The owner still reaches f2 where it is now: a backup places shards on it.
    src = owner.home.parent / "replay-src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(300_000))
    owner.cli("backup", *SHARDS, str(src))
    assert owner.cli("check", check=False).returncode == 0


def _foreign(owner: LocalNode, sequence: int) -> bytes:
    """A manifest signed and sealed with the owner's own key, naming another pool."""
    body = ManifestBody(
        pool=os.urandom(16),
        founder=bytes(owner.keys.node_id),
        time=time.time(),
        snapshots=[],
        index_packs=[],
    )
    return objects.seal_manifest(owner.keys, sequence, body, os.urandom)


def test_a_manifest_signed_for_another_pool_is_never_taken(nodes: list[LocalNode]) -> None:
    owner, liar, honest, _ = nodes
    src = owner.home.parent / "foreign-src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}.bin").write_bytes(os.urandom(100_000))
    snap = owner.cli("backup", *SHARDS, str(src))["snapshot_id"]
    held = liar.home / "held" / owner.keys.node_id.hex()
    genuine = (held / "manifest").read_bytes()
    forged = _foreign(owner, 1 << 40)
    (held / "manifest").write_bytes(forged)
    (held / "trash" / f"manifest.{(1 << 40) - 1}.0").write_bytes(_foreign(owner, (1 << 40) - 1))
    key = owner.home.parent / "owner-key.txt"
    key.write_text(owner.info["recovery_key"])
    try:

        def recover(through: LocalNode, name: str) -> LocalNode:
            node = LocalNode(owner.home.parent, name)
            address = str(through.status()["addresses"][0])
            out = node.cli(
                "recover",
                "--from",
                address,
                "--key-file",
                str(key),
                "--port",
                "0",
                "--listen",
                "127.0.0.1",
                "--no-lan",
                check=False,
            )
            node.info = {"returncode": out.returncode, "stderr": out.stderr, "out": out.stdout}
            return node

        through_liar = recover(liar, "recovered-through-liar")
        assert through_liar.info["returncode"] == 65, through_liar.info
        assert not (through_liar.home / "node.secret").exists()

        through_honest = recover(honest, "recovered-through-honest")
        assert through_honest.info["returncode"] == 0, through_honest.info
        ids = [s["id"] for s in through_honest.cli("snapshots")]
        assert ids == [s["id"] for s in owner.cli("snapshots")]
        target = owner.home.parent / "foreign-restored"
        through_honest.cli("restore", snap, "--target", str(target))
        assert describe(target / str(src).lstrip("/")) == describe(src)

        before = [s["id"] for s in owner.cli("snapshots")]
        r = owner.cli("undelete")
        assert [s["id"] for s in owner.cli("snapshots")] == before
        assert r["snapshots"] == len(before)
    finally:
        (held / "manifest").write_bytes(genuine)
