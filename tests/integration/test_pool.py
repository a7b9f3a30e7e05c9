"""Five real daemons on 127.0.0.1 form a pool with invites, then use each other's disks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbak.adapters.link import PeerLink
from peerbak.core.errors import NotFoundError
from peerbak.core.ids import NodeId, ShardKey
from tests.conftest import build_pack
from tests.integration.nodes import Daemon

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    base = tmp_path_factory.mktemp("pool")
    nodes = [Daemon(base, f"node{i}") for i in range(1, 6)]
    try:
        for node in nodes:
            node.init()
            node.start()
        for joiner in nodes[1:]:  # node1 invites the others one at a time
            token = nodes[0].cli("invite")["token"]
            joined = joiner.cli("join", token)
            assert joined["inviter"] == nodes[0].info["node"]
            assert joined["members"] == nodes.index(joiner) + 1
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def test_every_roster_lists_the_same_five_signed_records(pool: list[Daemon]) -> None:
    views = [node.status() for node in pool]
    expected = sorted(node.info["node"] for node in pool)
    for view in views:
        assert sorted(m["node"] for m in view["members"]) == expected
        assert view["pool"] == views[0]["pool"]
    records = {(m["node"], m["version"], m["added_by"]) for m in views[0]["members"]}
    for view in views[1:]:
        assert {(m["node"], m["version"], m["added_by"]) for m in view["members"]} == records
    founder = pool[0].info["node"]
    assert all(m["added_by"] == founder for m in views[0]["members"])


async def test_every_node_puts_stats_gets_and_deletes_on_every_other(
    pool: list[Daemon],
) -> None:
    status = {node.name: node.status() for node in pool}
    rng = random.Random(4)
    for owner in pool:
        keys = owner.keys
        for holder in pool:
            if holder is owner:
                continue
            member = next(
                m for m in status[owner.name]["members"] if m["node"] == holder.info["node"]
            )
            host_key = _ssh_key_of(holder)
            link = PeerLink(
                NodeId.from_hex(member["node"]), member["addresses"], host_key, owner.ssh_key
            )
            try:
                record, shards = build_pack(keys, rng)
                key = ShardKey(record.pack_id, 0)
                await link.put(key, shards[0])
                info = await link.stat(key)
                assert info.header == shards[0].header
                assert (await link.get(key)).to_bytes() == shards[0].to_bytes()
                await link.delete(key)
                with pytest.raises(NotFoundError):
                    await link.stat(key)
                trash = holder.home / "held" / keys.node_id.hex() / "trash"
                assert [p.name for p in trash.iterdir()] == [f"{key.text}.0"]
            finally:
                await link.close()


def _ssh_key_of(node: Daemon) -> bytes:
    from peerbak.core.pool import ssh_public_key

    return ssh_public_key(node.keys)


def test_status_reports_bytes_held_per_owner(pool: list[Daemon], tmp_path: Path) -> None:
    view = pool[1].status()
    assert view["port"] > 0
    assert all("held_bytes" in m for m in view["members"])


def test_a_member_away_during_an_admission_learns_it_by_gossip(
    tmp_path: Path, pool: list[Daemon]
) -> None:
    """node2 is down while node1 admits a sixth node; at its restart gossip catches it up."""
    away, newcomer = pool[1], Daemon(tmp_path, "node6")
    away.stop()
    try:
        newcomer.init()
        newcomer.start()
        newcomer.cli("join", pool[0].cli("invite")["token"])
        away.start()
        others = {node.info["node"] for node in (*pool, newcomer)}
        # Every daemon gossips its whole record set every ten minutes; run the inviter's
        # round now rather than wait for it.
        pool[0].cli("gossip")
        assert {m["node"] for m in away.status()["members"]} == others
    finally:
        newcomer.cli("leave")
        newcomer.kill()


def test_removal_and_leaving_are_applied_by_every_member(pool: list[Daemon]) -> None:
    """Runs last: it shrinks the pool."""
    first, leaver, removed = pool[0], pool[3], pool[4]
    out = first.cli("peers", "remove", removed.info["node"][:10])
    assert out["removed"] == removed.info["node"]
    assert out["unreached"] == {}
    left = leaver.cli("leave")
    assert left["removed"] == leaver.info["node"]
    remaining = sorted(node.info["node"] for node in pool[:3])
    for node in pool[:3]:
        assert sorted(m["node"] for m in node.status()["members"]) == remaining
    for gone in (leaver, removed):  # they learned it too
        assert gone.info["node"] not in [m["node"] for m in gone.status()["members"]]
