"""Storage challenges without a network: a real holder store answers, the owner checks.

An honest holder passes; one that flipped a bit anywhere in the shard, answers from
another shard, or replays an earlier answer fails. The schedule is a seeded Poisson
process driven by a clock the test steps.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peerbak.adapters.ledger import Ledger
from peerbak.adapters.store import DirectoryShareStore
from peerbak.core import merkle, wire
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import InputError, PeerUnavailable
from peerbak.core.health import DAY, challenges_to_detect, detection_probability
from peerbak.core.ids import ShardKey
from peerbak.core.pack import PackRecord
from peerbak.services.challenges import LEAVES, MAX_TRIES, Schedule, challenge, check_proof
from peerbak.services.holder import _prove
from peerbak.services.repository import Peer
from tests.conftest import build_pack


async def _stored(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> tuple[DirectoryShareStore, PackRecord]:
    record, shards = build_pack(keys, rng, size=200_000)  # shards of ~17 leaves
    store = DirectoryShareStore(tmp_path / "held", durable=False)
    for i, shard in enumerate(shards):
        await store.put(ShardKey(record.pack_id, i), shard)
    return store, record


def _challenge(record: PackRecord, index: int, rng: random.Random) -> wire.Challenge:
    count = merkle.leaf_count(record.header(index).shard_length)
    leaves = sorted(rng.sample(range(count), min(LEAVES, count)))
    return wire.Challenge(
        pack=bytes(record.pack_id), index=index, nonce=rng.randbytes(16), leaves=leaves
    )


def _through_the_wire(proof: wire.Proof) -> wire.Proof:
    answer = wire.decode(wire.encode(proof)[4:])
    assert isinstance(answer, wire.Proof)
    return answer


async def test_an_honest_holder_passes_every_leaf_including_the_short_last_one(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store, record = await _stored(tmp_path, keys, rng)
    count = merkle.leaf_count(record.header(1).shard_length)
    for leaves in ([0], [count - 1], list(range(min(16, count)))):
        nonce = rng.randbytes(16)
        msg = wire.Challenge(pack=bytes(record.pack_id), index=1, nonce=nonce, leaves=leaves)
        proof = _through_the_wire(await _prove(store, msg))
        assert check_proof(record, 1, leaves, nonce, proof) == ""


async def test_a_bit_flipped_anywhere_in_the_shard_fails_any_challenge_of_it(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store, record = await _stored(tmp_path, keys, rng)
    (path,) = (tmp_path / "held" / "shards").rglob(f"{record.pack_id.hex()}.2")
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x10  # in the last leaf
    path.write_bytes(bytes(raw))
    msg = wire.Challenge(pack=bytes(record.pack_id), index=2, nonce=b"n" * 16, leaves=[0])
    proof = await _prove(store, msg)  # leaf 0 itself is intact; its path is not
    assert "do not lead to the root" in check_proof(record, 2, [0], b"n" * 16, proof)


async def test_an_answer_from_another_shard_fails(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store, record = await _stored(tmp_path, keys, rng)
    asked = _challenge(record, 0, rng)
    other = wire.Challenge(pack=asked.pack, index=3, nonce=asked.nonce, leaves=asked.leaves)
    proof = await _prove(store, other)  # the holder lost shard 0 and answers from 3
    assert check_proof(record, 0, asked.leaves, asked.nonce, proof) != ""


async def test_a_replayed_answer_fails(tmp_path: Path, keys: NodeKeys, rng: random.Random) -> None:
    store, record = await _stored(tmp_path, keys, rng)
    first = _challenge(record, 4, rng)
    earlier = await _prove(store, first)
    assert check_proof(record, 4, first.leaves, first.nonce, earlier) == ""
    second = _challenge(record, 4, rng)
    # A holder that kept the earlier answer instead of the data: the nonce gives it away,
    # and with the new nonce copied in, the leaves asked for now do not match.
    assert "nonce" in check_proof(record, 4, second.leaves, second.nonce, earlier)
    forged = wire.Proof(nonce=second.nonce, leaves=earlier.leaves, paths=earlier.paths)
    if second.leaves != first.leaves:
        assert check_proof(record, 4, second.leaves, second.nonce, forged) != ""


async def test_a_short_or_padded_leaf_fails(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store, record = await _stored(tmp_path, keys, rng)
    msg = wire.Challenge(pack=bytes(record.pack_id), index=0, nonce=b"x" * 16, leaves=[0])
    proof = await _prove(store, msg)
    cut = wire.Proof(nonce=proof.nonce, leaves=[proof.leaves[0][:-1]], paths=proof.paths)
    assert "bytes" in check_proof(record, 0, [0], b"x" * 16, cut)
    missing = wire.Proof(nonce=proof.nonce, leaves=[], paths=[])
    assert "asked for 1" in check_proof(record, 0, [0], b"x" * 16, missing)


async def test_a_leaf_beyond_the_shard_is_refused(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store, record = await _stored(tmp_path, keys, rng)
    count = merkle.leaf_count(record.header(0).shard_length)
    msg = wire.Challenge(pack=bytes(record.pack_id), index=0, nonce=b"x" * 16, leaves=[count])
    with pytest.raises(InputError, match="leaves"):
        await _prove(store, msg)


def test_the_schedule_is_a_seeded_poisson_process_at_the_asked_rate() -> None:
    members = [bytes([i]) * 32 for i in range(5)]
    now = 1_000_000.0
    schedule = Schedule(members, random.Random(42), now, per_day=48)
    counts = dict.fromkeys(members, 0)
    for _ in range(30 * 24):  # a month in steps of an hour, without waiting
        now += 3600
        for m in schedule.due(now):
            counts[m] += 1
        assert schedule.next_time() > now
    per_day = [c / 30 for c in counts.values()]
    assert all(40 < d < 56 for d in per_day), per_day  # 48 ± 4 standard errors
    again = Schedule(members, random.Random(42), 1_000_000.0, per_day=48)
    assert again.due(1_000_000.0 + DAY) == Schedule(
        members, random.Random(42), 1_000_000.0, per_day=48
    ).due(1_000_000.0 + DAY)


def test_detection_odds_follow_the_formula() -> None:
    assert challenges_to_detect(0.10, 0.99) == 44
    assert challenges_to_detect(0.10, 0.999) == 66
    assert detection_probability(0.10, 44) >= 0.99 > detection_probability(0.10, 43)
    assert detection_probability(0.0, 1000) == 0.0


def test_uniform_choice_finds_a_10_percent_loss_as_often_as_the_formula_says() -> None:
    """Simulated holders (no I/O): how many uniform challenges until one hits a lost shard."""
    rng = random.Random(7)
    shards, lost = 500, 50
    runs, within_22 = 2000, 0
    for _ in range(runs):
        gone = set(rng.sample(range(shards), lost))
        for _n in range(1, 23):
            if rng.randrange(shards) in gone:
                within_22 += 1
                break
    expected = detection_probability(lost / shards, 22)  # 0.90
    assert abs(within_22 / runs - expected) < 0.03


class _StallingLink:
    """A holder that answers probes but never a challenge (or nothing at all)."""

    def __init__(self, answers_probes: bool) -> None:
        self.answers_probes = answers_probes

    async def challenge(self, *_: object) -> wire.Proof:
        raise PeerUnavailable("no answer within 30 s")

    async def space(self) -> wire.SpaceInfo:
        if not self.answers_probes:
            raise PeerUnavailable("connection refused")
        return wire.SpaceInfo(quota=1 << 30, used=0, free=1 << 30)

    def seen_alive(self) -> None:
        pass


class _Repo:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def compare_listing(self, _member: object) -> AsyncIterator[tuple[str, bytes, int]]:
        nothing: list[tuple[str, bytes, int]] = []  # the audit finds nothing else missing
        for item in nothing:
            yield item


@pytest.mark.parametrize("answers_probes", [True, False])
async def test_a_stalling_member_is_contained_then_fails_but_an_offline_one_does_not(
    tmp_path: Path, keys: NodeKeys, rng: random.Random, answers_probes: bool
) -> None:
    node = b"h" * 32
    record, _ = build_pack(keys, rng)
    async with await Ledger.open(tmp_path / "ledger.sqlite", create=True) as ledger:
        await ledger.add_pack(record, 1, [node] * record.n, 1.0)
        await ledger.pack_stored(record, list(range(record.n)))
        member = Peer(node, "stalls", _StallingLink(answers_probes))  # type: ignore[arg-type]
        repo = _Repo(ledger)
        results = [
            await challenge(repo, member, random.Random(i), 10.0 + i)  # type: ignore[arg-type]
            for i in range(MAX_TRIES)
        ]
        stats = (await ledger.member_stats()).get(node)
    if answers_probes:  # the same shard each time, then a failure with its evidence
        assert [r.result for r in results] == ["stalled"] * (MAX_TRIES - 1) + ["fail"]
        assert len({(r.pack_id, r.index) for r in results}) == 1
        assert f"no answer to {MAX_TRIES} tries" in results[-1].evidence
        assert stats is not None
        assert stats.failed == 1
        assert stats.failing_since is not None
    else:  # offline: the grace deals with it, not the challenges
        assert [r.result for r in results] == ["offline"] * MAX_TRIES
        assert stats is None or (stats.failed, stats.failing_since) == (0, None)
