"""One suite, every Member: PeerLink over SSH to a real daemon, and the in-process member
the services' tests use (peerbak.tools.mempool). What the services rely on a member to
do is checked against both, so a service test against the in-process pool means what it
says about a real one.

The daemon pool is shared by the module (starting it costs seconds), so each case uses
packs of its own and manifest sequences above any earlier case's.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from peerbak.adapters.link import PeerLink
from peerbak.adapters.transport import private_key
from peerbak.core import objects, pool
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import (
    InputError,
    IntegrityError,
    NotFoundError,
    PeerUnavailable,
)
from peerbak.core.ids import NodeId, ShardKey
from peerbak.core.objects import ManifestBody
from peerbak.core.pack import Shard
from peerbak.ports.member import Member
from peerbak.services.challenges import check_proof
from peerbak.tools.localpool import LocalNode, temporary_pool
from peerbak.tools.mempool import MemoryPool
from tests.conftest import build_pack, shard_keys

_SEQUENCE = itertools.count(1000)


@dataclass
class Setup:
    """A member of an owner's pool, seen by that owner."""

    member: Member
    owner: NodeKeys
    pool_id: bytes
    shard_file: Callable[[ShardKey], Path]  # where the member keeps a shard's bytes
    down: Callable[[], Member]  # the same member, unreachable


@pytest.fixture(scope="module")
def daemons() -> Iterator[list[LocalNode]]:
    with temporary_pool(["owner", "friend"], "pbk-member-") as made:
        yield made


def _link(to: LocalNode, owner: LocalNode, address: str) -> PeerLink:
    return PeerLink(
        NodeId(bytes(to.keys.node_id)),
        [address],
        pool.ssh_public_key(to.keys),
        private_key(owner.keys.ssh_seed),
        timeout=5,
    )


@pytest.fixture(params=[pytest.param("ssh", marks=pytest.mark.slow), "memory"])
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    if request.param == "memory":
        mem = MemoryPool(tmp_path / "pool", 1, seed=7)
        member = mem.member(1)

        def gone() -> Member:
            twin = MemoryPool(tmp_path / "gone", 1, seed=7).member(1)
            twin.up = False
            return twin

        yield Setup(
            member,
            mem.owner,
            mem.pool_id,
            lambda key: mem.store(bytes(member.node))._path(key),
            gone,
        )
        return
    owner, friend = request.getfixturevalue("daemons")
    link = _link(friend, owner, str(friend.status()["addresses"][0]))
    held = friend.home / "held" / owner.keys.node_id.hex() / "shards"
    pool_id = bytes.fromhex(owner.status()["pool"])
    try:
        yield Setup(
            link,
            owner.keys,
            pool_id,
            lambda key: held / key.text[:2] / key.text,
            lambda: _link(friend, owner, "127.0.0.1:1"),
        )
    finally:
        await link.close()


def _pack(seed: int) -> tuple[list[ShardKey], list[Shard], object]:
    keys = NodeKeys.derive(bytes(32))
    record, shards = build_pack(keys, random.Random(seed))
    return shard_keys(record), shards, record


async def _listed(member: Member) -> list[ShardKey]:
    return [key async for key in member.list()]


def _seed() -> int:
    return random.SystemRandom().getrandbits(32)


async def test_put_get_stat_and_a_sorted_list(setup: Setup) -> None:
    member = setup.member
    keys, shards, _ = _pack(_seed())
    for key, shard in zip(keys, shards, strict=True):
        await member.put(key, shard)
    for key, shard in zip(keys, shards, strict=True):
        assert (await member.get(key)).to_bytes() == shard.to_bytes()
        info = await member.stat(key)
        assert (info.key, info.size) == (key, len(shard.to_bytes()))
    listed = await _listed(member)
    assert set(keys) <= set(listed)
    order = [(bytes(k.pack), k.index) for k in listed]
    assert order == sorted(order)  # the owner merges it with the ledger's sorted list


async def test_the_same_shard_again_is_a_no_op_damaged_bytes_are_refused(setup: Setup) -> None:
    keys, shards, _ = _pack(_seed())
    await setup.member.put(keys[0], shards[0])
    await setup.member.put(keys[0], shards[0])
    forged = bytearray(shards[0].data)
    forged[0] ^= 1
    await setup.member.put(keys[0], Shard(shards[0].header, forged))  # the stored copy stands
    assert (await setup.member.get(keys[0])).to_bytes() == shards[0].to_bytes()
    forged = bytearray(shards[1].data)
    forged[0] ^= 1
    with pytest.raises(IntegrityError):  # a new shard is checked against its header's root
        await setup.member.put(keys[1], Shard(shards[1].header, forged))
    with pytest.raises(NotFoundError):  # and nothing of it is kept
        await setup.member.stat(keys[1])
    with pytest.raises(InputError):  # shard 2 under shard 0's key: the caller's mistake
        await setup.member.put(keys[0], shards[2])


async def test_ranges_of_the_data_region(setup: Setup) -> None:
    keys, shards, _ = _pack(_seed())
    await setup.member.put(keys[2], shards[2])
    assert await setup.member.get_range(keys[2], 10, 100) == bytes(shards[2].data[10:110])
    length = len(shards[2].data)
    with pytest.raises(InputError):
        await setup.member.get_range(keys[2], length - 1, 2)


async def test_missing_shards_and_deletes_go_to_the_trash_and_come_back(setup: Setup) -> None:
    member = setup.member
    keys, shards, _ = _pack(_seed())
    with pytest.raises(NotFoundError):
        await member.get(keys[0])
    with pytest.raises(NotFoundError):
        await member.stat(keys[0])
    await member.delete(keys[0])  # missing: a no-op
    await member.put(keys[0], shards[0])
    await member.delete(keys[0])
    assert keys[0] not in await _listed(member)
    with pytest.raises(NotFoundError):
        await member.get(keys[0])
    answer = await member.undelete()
    assert answer.restored >= 1
    assert (await member.get(keys[0])).to_bytes() == shards[0].to_bytes()


async def test_damaged_bytes_are_an_integrity_error_never_data(setup: Setup) -> None:
    keys, shards, _ = _pack(_seed())
    await setup.member.put(keys[1], shards[1])
    path = setup.shard_file(keys[1])
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        await setup.member.get(keys[1])
    unverified = await setup.member.get(keys[1], verify=False)  # header only, as asked
    assert unverified.data != shards[1].data


async def test_a_challenge_is_answered_with_leaves_that_prove_the_root(setup: Setup) -> None:
    keys, shards, record = _pack(_seed())
    await setup.member.put(keys[3], shards[3])
    nonce = bytes(range(16))
    proof = await setup.member.challenge(keys[3], nonce, [0, 1])
    assert check_proof(record, 3, [0, 1], nonce, proof) == ""  # type: ignore[arg-type]
    wrong = await setup.member.challenge(keys[3], b"x" * 16, [0, 1])
    assert "nonce" in check_proof(record, 3, [0, 1], nonce, wrong)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        await setup.member.challenge(keys[3], nonce, [10_000])


def _manifest(setup: Setup, sequence: int, keys: NodeKeys | None = None) -> bytes:
    body = ManifestBody(
        pool=setup.pool_id, founder=bytes(32), time=1.0, snapshots=[], index_packs=[]
    )
    return objects.seal_manifest(keys or setup.owner, sequence, body, random.randbytes)


async def test_manifests_keep_the_newest_and_the_replaced_in_the_trash(setup: Setup) -> None:
    member = setup.member
    first, second = next(_SEQUENCE), next(_SEQUENCE)
    assert await member.put_manifest(_manifest(setup, first)) == first
    blob = _manifest(setup, second)
    assert await member.put_manifest(blob) == second
    assert await member.get_manifest() == blob
    assert await member.put_manifest(_manifest(setup, first - 1)) == second  # older: kept out
    replaced = await member.trashed_manifest(second)
    assert objects.manifest_header(replaced) == (bytes(setup.owner.node_id), first)
    with pytest.raises(IntegrityError):  # signed by someone else
        await member.put_manifest(_manifest(setup, next(_SEQUENCE), NodeKeys.derive(b"\1" * 32)))


async def test_space_counts_what_we_store(setup: Setup) -> None:
    keys, shards, _ = _pack(_seed())
    before = await setup.member.space()
    await setup.member.put(keys[4], shards[4])
    after = await setup.member.space()
    assert after.used == before.used + len(shards[4].to_bytes())
    assert after.quota > after.used


async def test_an_unreachable_member_is_peer_unavailable(setup: Setup) -> None:
    keys, shards, _ = _pack(_seed())
    gone = setup.down()
    try:
        with pytest.raises(PeerUnavailable):
            await gone.put(keys[0], shards[0])
        with pytest.raises(PeerUnavailable):
            await gone.space()
    finally:
        await gone.close()
