"""Storage challenges: the owner makes each holder prove, now and then, that it still
holds what it acknowledged, without keeping any copy of the data itself.

A challenge names a shard the holder acknowledged, chosen uniformly among all of them,
a few random 4 KiB leaf indices and a fresh nonce. The holder answers with those leaves
and their Merkle audit paths, computed from the data it has; the owner checks them
against the root it recorded before upload. A holder that lost a fraction x of our
shards fails a challenge with probability x, so N challenges find it with probability
1 − (1 − x)^N (``health.detection_probability``; defaults derived in security.md).

A member that does not answer while it answers other requests is *contained* (Storj's
term): it gets the same challenge again, up to :data:`MAX_TRIES` times, before the
silence counts as a failure, so it cannot dodge a shard it lost by stalling. A member
that answers nothing at all is offline, which the grace period handles, not a failure.

Time and randomness are parameters: the daemon passes the clock and a system RNG; the
tests a seeded ``random.Random`` and a clock they step.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from peerbak.core import merkle, wire
from peerbak.core.errors import IntegrityError, NotFoundError, PeerbakError, PeerUnavailable
from peerbak.core.health import CHALLENGES_PER_DAY, DAY
from peerbak.core.ids import PackId, ShardKey
from peerbak.core.pack import PackRecord
from peerbak.services import events
from peerbak.services.repository import Peer, Repository

log = logging.getLogger(__name__)

#: Leaves per challenge: 4 × 4 KiB answers a bit flip anywhere in the shard (the path
#: is computed from all of it) and costs about 17 KiB on the wire.
LEAVES: Final = 4
#: Stalled tries of one challenge before the silence counts as a failure.
MAX_TRIES: Final = 4
#: Challenges per holder per day (each at a random time): 48 finds a holder that lost
#: 10 % of our shards within a day with probability 1 − 0.9^48 = 99.4 %.
PER_DAY: Final = CHALLENGES_PER_DAY


@dataclass(frozen=True, slots=True)
class Outcome:
    """One challenge: ``pass``, ``fail``, ``stalled`` (contained, asked again later),
    ``offline`` (member unreachable: not counted) or ``nothing`` (holds nothing of ours)."""

    member: bytes
    result: str
    pack_id: bytes = b""
    index: int = -1
    evidence: str = ""
    wire_bytes: int = 0


def leaf_length(shard_length: int, index: int) -> int:
    count = merkle.leaf_count(shard_length)
    return merkle.LEAF_SIZE if index < count - 1 else shard_length - (count - 1) * merkle.LEAF_SIZE


def check_proof(
    record: PackRecord, index: int, asked: list[int], nonce: bytes, proof: wire.Proof
) -> str:
    """Why ``proof`` does not prove shard ``index`` of ``record`` holds leaves ``asked``,
    or "" when it does. Checked against the root recorded before upload only."""
    if proof.nonce != nonce:
        return "the answer is for another challenge (nonce differs)"
    if len(proof.leaves) != len(asked) or len(proof.paths) != len(asked):
        return (
            f"asked for {len(asked)} leaves, got {len(proof.leaves)} with {len(proof.paths)} paths"
        )
    shard_length = record.header(index).shard_length
    count = merkle.leaf_count(shard_length)
    root = record.roots[index]
    for i, leaf, path in zip(asked, proof.leaves, proof.paths, strict=True):
        if len(leaf) != leaf_length(shard_length, i):
            return f"leaf {i} is {len(leaf)} bytes, not {leaf_length(shard_length, i)}"
        if not merkle.verify_proof(root, i, count, leaf, path):
            return f"leaf {i} and its path do not lead to the root recorded before upload"
    return ""


def proof_size(proof: wire.Proof) -> int:
    return len(wire.encode(proof))


async def challenge(  # noqa: PLR0911 - one return per outcome
    repo: Repository, member: Peer, rng: random.Random, now: float
) -> Outcome:
    """Challenge one member once, record the result in the ledger, and return it."""
    node = member.node
    contained = await repo.ledger.contained(node)
    if contained is not None:
        picked: tuple[bytes, int] | None = (contained.pack_id, contained.index)
    else:
        picked = await repo.ledger.random_shard(node, rng.random())
    if picked is None:
        return Outcome(node, "nothing")
    pack_id, index = picked
    found = await repo.ledger.pack(pack_id)
    if found is None or found[1].get(index) != node:  # repaired away or pruned meanwhile
        await repo.ledger.uncontain(node)
        return Outcome(node, "nothing", pack_id, index)
    record = found[0]
    count = merkle.leaf_count(record.header(index).shard_length)
    asked = sorted(rng.sample(range(count), min(LEAVES, count)))
    nonce = rng.randbytes(16)
    key = ShardKey(PackId(pack_id), index)
    try:
        proof = await member.link.challenge(key, nonce, asked)
    except NotFoundError as exc:
        return await _fail(repo, member, pack_id, index, f"the holder does not have it: {exc}", now)
    except IntegrityError as exc:
        return await _fail(
            repo, member, pack_id, index, f"the holder's copy is damaged: {exc}", now
        )
    except PeerUnavailable as exc:
        return await _stalled(repo, member, pack_id, index, str(exc), now)
    except PeerbakError as exc:
        return await _fail(repo, member, pack_id, index, f"no valid answer: {exc}", now)
    size = proof_size(proof) + len(
        wire.encode(wire.Challenge(pack=pack_id, index=index, nonce=nonce, leaves=asked))
    )
    evidence = check_proof(record, index, asked, nonce, proof)
    if evidence:
        return await _fail(repo, member, pack_id, index, evidence, now, size)
    await repo.ledger.record_challenge(node, pack_id, index, "pass", "", now)
    return Outcome(node, "pass", pack_id, index, wire_bytes=size)


async def _fail(
    repo: Repository,
    member: Peer,
    pack_id: bytes,
    index: int,
    evidence: str,
    now: float,
    size: int = 0,
) -> Outcome:
    """Record the failure, then audit the member: every shard it should hold and does
    not list is marked bad too, so repair rebuilds what it lost, not all it holds."""
    node = member.node
    await events.note(
        repo.ledger,
        now,
        "error",
        "challenge.failed",
        member.label,
        f"{member.label} failed a challenge of shard {pack_id.hex()[:12]}.{index}: {evidence}",
        pack=pack_id.hex(),
        index=index,
    )
    await repo.ledger.record_challenge(node, pack_id, index, "fail", evidence, now)
    member.failing = True  # no new shards for it in this run either
    try:
        async for kind, pack, i in repo.compare_listing(member):
            if kind == "missing":
                await repo.ledger.mark_shard_bad(pack, i)
    except PeerbakError as exc:
        log.info("audit of %s after a failed challenge: %s", member.name, exc)
    return Outcome(node, "fail", pack_id, index, evidence, size)


async def _stalled(
    repo: Repository, member: Peer, pack_id: bytes, index: int, why: str, now: float
) -> Outcome:
    """No answer to the challenge: offline if it answers nothing, else contained."""
    member.link.seen_alive()  # ask again at once, past the link's backoff
    try:
        await member.link.space()
    except PeerbakError:
        return Outcome(member.node, "offline", pack_id, index, why)
    tries = await repo.ledger.contain(member.node, pack_id, index, now)
    if tries >= MAX_TRIES:
        return await _fail(
            repo, member, pack_id, index, f"no answer to {tries} tries, while up: {why}", now
        )
    return Outcome(member.node, "stalled", pack_id, index, why)


async def read_whole(  # noqa: PLR0911 - one return per outcome
    repo: Repository, member: Peer, rng: random.Random, now: float
) -> Outcome:
    """Read one random shard whole and check it against its recorded root: the rare,
    expensive check (within a bytes-per-day budget) that leaves no byte unproven."""
    node = member.node
    picked = await repo.ledger.random_shard(node, rng.random())
    if picked is None:
        return Outcome(node, "nothing")
    pack_id, index = picked
    found = await repo.ledger.pack(pack_id)
    if found is None or found[1].get(index) != node:
        return Outcome(node, "nothing", pack_id, index)
    record = found[0]
    try:
        shard = await member.link.get(ShardKey(PackId(pack_id), index), verify=False)
    except NotFoundError as exc:
        return await _fail(repo, member, pack_id, index, f"the holder does not have it: {exc}", now)
    except PeerUnavailable as exc:
        return Outcome(node, "offline", pack_id, index, str(exc))
    except PeerbakError as exc:
        return await _fail(repo, member, pack_id, index, f"no valid answer: {exc}", now)
    size = len(shard.data)
    if shard.header != record.header(index):
        return await _fail(repo, member, pack_id, index, "its header differs from ours", now, size)
    if merkle.root_of(shard.data) != record.roots[index]:
        return await _fail(
            repo, member, pack_id, index, "its data do not hash to the recorded root", now, size
        )
    await repo.ledger.record_challenge(node, pack_id, index, "pass", "", now)
    return Outcome(node, "pass", pack_id, index, wire_bytes=size)


class Schedule:
    """When each member is next challenged: a Poisson process of ``per_day`` a day each,
    so a holder cannot tell when the next one comes (and cannot fetch a lost shard
    back from other holders just in time)."""

    def __init__(
        self, members: Iterable[bytes], rng: random.Random, now: float, per_day: float = PER_DAY
    ) -> None:
        if per_day <= 0:
            raise ValueError("per_day must be positive")
        self._rng = rng
        self._rate = per_day / DAY
        self.members = frozenset(members)
        self._heap = [(now + rng.expovariate(self._rate), m) for m in sorted(self.members)]
        heapq.heapify(self._heap)

    def next_time(self) -> float:
        return self._heap[0][0] if self._heap else float("inf")

    def due(self, now: float) -> list[bytes]:
        """Members due by ``now``; each is rescheduled from its due time."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            when, member = heapq.heappop(self._heap)
            out.append(member)
            heapq.heappush(self._heap, (when + self._rng.expovariate(self._rate), member))
        return out
