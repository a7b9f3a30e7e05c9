"""Repair: rebuild the shards a pack lost and place them on other members, before the
pack can fall below k.

A shard counts as healthy when its holder acknowledged it, no challenge or check found
it bad, and its holder is neither lost (offline past the grace) nor failing challenges
(``health.RepairPolicy``). A pack with ``k + margin`` healthy shards or fewer is
repaired, the thinnest first: k shards are fetched from any holder that still answers
(the rebuilt pack is checked against its id, so even a failing member's shards help),
the missing shards are rebuilt, each must hash to the root recorded at backup, and
they go to members chosen by the placement rule among those not holding the pack.

Crash safety, in order (protocol/security.md §repair):

1. ``moves`` rows name each new holder before a byte is sent.
2. After the new holder's durable ack, one transaction points the shard at it and
   turns the old placement into a ``release`` row.
3. The old holder is told to delete (to its trash) only then; a holder that is away
   is told when it answers again.

A repair killed anywhere resumes: an ``upload`` row whose shard the new holder has is
completed, one it lacks is dropped; no shard row ever points at a member that did not
acknowledge, and no pack loses a holder before its replacement is durable.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Final

from peerbak.core.codec import ErasureCode
from peerbak.core.errors import NotEnoughShares, PeerbakError, PeerUnavailable
from peerbak.core.health import MemberState, RepairPolicy, repair_order
from peerbak.core.ids import PackId, ShardKey
from peerbak.core.pack import make_shards
from peerbak.core.placement import Candidate, place
from peerbak.services.index import republish
from peerbak.services.repository import RateLimit, Repository, crash_point

log = logging.getLogger(__name__)

#: Packs looked at per ledger query.
PAGE: Final = 500


@dataclass
class RepairReport:
    packs_short: int = 0  # packs with fewer than n healthy shards
    packs_repaired: int = 0
    shards_placed: int = 0
    shards_released: int = 0
    shards_resumed: int = 0
    bytes_fetched: int = 0
    bytes_sent: int = 0
    stuck: list[str] = field(default_factory=list)  # packs that could not be repaired: why
    states: dict[str, str] = field(default_factory=dict)  # member name → state
    manifest_copies: int = 0
    packs_left: int = 0  # needing repair, left for the next pass (max_packs)


async def member_states(
    repo: Repository, policy: RepairPolicy, now: float
) -> dict[bytes, MemberState]:
    """Every member's state from this node's records."""
    stats = await repo.ledger.member_stats()
    out = {}
    for node in repo.members:
        s = stats.get(node)
        out[node] = policy.member_state(
            s.last_seen if s else None, bool(s and s.failing_since is not None), now
        )
    return out


async def repair(
    repo: Repository,
    policy: RepairPolicy,
    now: float,
    *,
    limit: RateLimit | None = None,
    max_packs: int | None = None,
) -> RepairReport:
    """One repair pass over the whole pool (the caller holds the backup lock and has
    probed the members)."""
    report = RepairReport()
    states = await member_states(repo, policy, now)
    report.states = {repo.members[n].name or n.hex()[:12]: s.value for n, s in states.items()}
    healthy = [n for n, s in states.items() if policy.shard_counts(s)]
    await _resume(repo, report, now)
    todo: list[tuple[bytes, int, int]] = []
    after = b""
    while page := await repo.ledger.packs_short(healthy, after, PAGE):
        after = page[-1][0]
        report.packs_short += len(page)
        todo += [(p, h, k) for p, h, k, n in page if policy.needs_repair(h, k, n)]
    order = repair_order(todo)
    if max_packs is not None and len(order) > max_packs:
        report.packs_left = len(order) - max_packs
        order = order[:max_packs]
    for pack_id in order:
        try:
            await _repair_pack(repo, pack_id, set(healthy), states, report, limit, now)
        except PeerbakError as exc:
            report.stuck.append(f"pack {pack_id.hex()[:12]}: {exc}")
            log.warning("repair of pack %s: %s", pack_id.hex()[:12], exc)
    await _release(repo, report)
    if report.packs_repaired:
        report.manifest_copies = await republish(repo)
    return report


async def _repair_pack(
    repo: Repository,
    pack_id: bytes,
    healthy: set[bytes],
    states: dict[bytes, MemberState],
    report: RepairReport,
    limit: RateLimit | None,
    now: float,
) -> None:
    found = await repo.ledger.pack(pack_id)
    if found is None:
        return
    record, stored = found
    rows = await repo.ledger.shard_rows(pack_id)
    good = {i: h for i, h, acked, state in rows if acked and state == "ok" and h in healthy}
    missing = [i for i in range(record.n) if i not in good]
    size = record.header(0).size
    placed_on = {h for _, h, _, _ in rows}  # never two shards of one pack on one member
    candidates = [
        Candidate(m.node, healthy=m.up and states.get(m.node) is MemberState.OK, free=m.free)
        for m in repo.members.values()
        if m.node not in placed_on
    ]
    chosen = place(pack_id, len(missing), candidates, bytes(repo.node_id), size)
    if not chosen:
        raise NotEnoughShares(
            f"{len(good)} of {record.n} shards healthy and no other member can take one"
        )
    targets = list(zip(missing, chosen, strict=False))
    if limit is not None:
        await limit.take((record.k + len(targets)) * size)
    await repo.ledger.begin_moves(pack_id, targets, now)
    # Any shard that still answers may help: the rebuilt pack is checked against its id.
    usable = {i: h for i, h in stored.items() if h in repo.members}
    data = await repo.fetch_record(record, usable)
    report.bytes_fetched += record.k * size
    _, shards = await asyncio.to_thread(
        make_shards, ErasureCode(record.k, record.n), record.pack_id, memoryview(data), []
    )
    placed = 0
    for index, node in targets:
        shard = shards[index]
        if shard.header.root != record.roots[index]:
            raise NotEnoughShares(f"shard {index} rebuilt with another root: not placed")
        member = repo.members[node]
        try:
            await member.link.put(ShardKey(PackId(pack_id), index), shard)
        except PeerbakError as exc:
            member.up, member.error = False, str(exc)
            await repo.ledger.drop_move(pack_id, index, node)
            log.warning(
                "repair: shard %d of %s to %s: %s", index, pack_id.hex()[:12], member.name, exc
            )
            continue
        crash_point("repair-uploaded")
        member.free -= size
        await repo.ledger.finish_move(pack_id, index, node, now)
        report.bytes_sent += size
        placed += 1
    report.shards_placed += placed
    if placed:
        report.packs_repaired += 1
    if placed < len(missing):
        report.stuck.append(
            f"pack {pack_id.hex()[:12]}: {len(good) + placed} of {record.n} shards healthy; "
            "no more members can take one"
        )


async def _resume(repo: Repository, report: RepairReport, now: float) -> None:
    """Finish or drop the uploads a killed repair left behind."""
    for move in await repo.ledger.moves("upload"):
        member = repo.members.get(move.holder)
        found = await repo.ledger.pack(move.pack_id)
        if member is None or found is None:
            await repo.ledger.drop_move(move.pack_id, move.index, move.holder)
            continue
        try:
            info = await member.link.stat(ShardKey(PackId(move.pack_id), move.index))
        except PeerUnavailable:
            continue  # ask again next pass
        except PeerbakError:
            await repo.ledger.drop_move(move.pack_id, move.index, move.holder)
            continue
        if info.header == found[0].header(move.index):
            await repo.ledger.finish_move(move.pack_id, move.index, move.holder, now)
            report.shards_resumed += 1
        else:
            await repo.ledger.drop_move(move.pack_id, move.index, move.holder)


async def _release(repo: Repository, report: RepairReport) -> None:
    """Tell old holders to drop (to their trash) shards now held elsewhere."""
    for move in await repo.ledger.moves("release"):
        member = repo.members.get(move.holder)
        if member is None:  # left the pool: nothing of ours to ask it for
            await repo.ledger.drop_move(move.pack_id, move.index, move.holder)
            continue
        if not member.up:
            continue
        try:
            await member.link.delete(ShardKey(PackId(move.pack_id), move.index))
        except PeerbakError as exc:
            log.info(
                "release of %s.%d on %s waits: %s",
                move.pack_id.hex()[:12],
                move.index,
                member.name,
                exc,
            )
            continue
        await repo.ledger.drop_move(move.pack_id, move.index, move.holder)
        report.shards_released += 1
