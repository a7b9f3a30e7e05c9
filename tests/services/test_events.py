"""The event log against the in-process pool: a member's changes are logged once each
(unreachable after a few missed probes, back when it answers), and the log reads back
by kind, subject, time and order."""

from __future__ import annotations

from peerbak.core.health import RepairPolicy
from peerbak.services.events import note, track_members
from peerbak.services.repository import Repository
from peerbak.tools.mempool import MemoryPool

POLICY = RepairPolicy(offline_after=15 * 60)


async def _round(repo: Repository, mempool: MemoryPool) -> list[str]:
    """One daemon round: probe, then log the changes; the new events' kinds."""
    await repo.probe()
    made = await track_members(repo, POLICY, mempool.clock())
    return [e.kind for e in await repo.ledger.events() if e.id in made]


async def test_a_member_gone_and_back_is_logged_once_each_way(
    repo: Repository, mempool: MemoryPool
) -> None:
    assert await _round(repo, mempool) == []  # all well: nothing to tell
    mempool.member(2).up = False
    mempool.clock.advance(5 * 60)
    assert await _round(repo, mempool) == []  # one missed probe is not yet unreachable
    mempool.clock.advance(11 * 60)
    assert await _round(repo, mempool) == ["member.unreachable"]
    mempool.clock.advance(5 * 60)
    assert await _round(repo, mempool) == []  # still unreachable: told already
    mempool.member(2).up = True
    mempool.clock.advance(5 * 60)
    assert await _round(repo, mempool) == ["member.ok"]
    logged = await repo.ledger.events(kinds=["member."])
    assert [(e.subject, e.level, e.details["state"]) for e in logged] == [
        ("m2", "warning", "unreachable"),
        ("m2", "info", "ok"),
    ]
    assert "m2 is unreachable: no answer for 16 minutes" in logged[0].message
    assert logged[1].message == "m2 is back (was unreachable)"


async def test_the_log_reads_back_by_kind_subject_time_and_order(
    repo: Repository, mempool: MemoryPool
) -> None:
    t = mempool.clock()
    for i, (kind, subject) in enumerate(
        [("job.ok", "photos"), ("job.failed", "docs"), ("repair.done", ""), ("job.ok", "docs")]
    ):
        await note(repo.ledger, t + i, "info", kind, subject, f"{kind} {subject}", n=i)
    every = await repo.ledger.events()
    assert [e.details["n"] for e in every] == [0, 1, 2, 3]
    assert [e.kind for e in await repo.ledger.events(kinds=["job."])] == [
        "job.ok",
        "job.failed",
        "job.ok",
    ]
    assert [e.message for e in await repo.ledger.events(kinds=["job.ok"], subject="docs")] == [
        "job.ok docs"
    ]
    assert [e.details["n"] for e in await repo.ledger.events(since=t + 2)] == [2, 3]
    newest = await repo.ledger.events(limit=2, newest_first=True)
    assert [e.details["n"] for e in newest] == [3, 2]
    assert [e.details["n"] for e in await repo.ledger.events(after=every[1].id)] == [2, 3]
