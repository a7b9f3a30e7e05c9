"""Repair against the in-process pool: who counts as lost, what is rebuilt where, when
old placements go, and how a repair cut short resumes (services/repair.py, core/health.py).

Five members and 2-of-4 packs, so each pack has one member free to take a rebuilt
shard. Time moves only by the pool's clock; a kill is an exception raised at the
crash point (the ledger keeps what it committed, as after a power cut).
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from peerbak.core.errors import PeerUnavailable, StorageError
from peerbak.core.health import DAY, RepairPolicy
from peerbak.core.ids import ShardKey
from peerbak.core.pack import PackRecord, Shard
from peerbak.services import challenges
from peerbak.services import repair as repair_module
from peerbak.services.backup import run_backup
from peerbak.services.check import run_check
from peerbak.services.recovery import rebuild_from_pool
from peerbak.services.repair import repair
from peerbak.services.repository import RateLimit, Repository
from peerbak.services.restore import Restorer, run_restore
from peerbak.tools.mempool import ManualClock, MemoryPool
from peerbak.tools.sample import describe, differences
from tests.conftest import build_pack, shard_keys
from tests.services import _care as care
from tests.services._care import Killed
from tests.services.kit import node

POLICY = RepairPolicy()  # repairs at the first loss; lost after 7 days of silence

Rows = dict[bytes, list[tuple[int, bytes, bool, str]]]


@pytest.fixture
def mempool(tmp_path: Path) -> MemoryPool:
    return MemoryPool(tmp_path / "pool", 5, seed=1)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    care.write_files(src, "photo", 12, seed=7)  # six data packs
    return src


async def _backup(repo: Repository, src: Path, code: tuple[int, int] = (2, 4)) -> None:
    summary = await run_backup(repo, [src], code=code, pack_size=64 << 10)
    assert summary["packs_added"] >= 6


@pytest.fixture
async def backed(repo: Repository, source: Path) -> Repository:
    await _backup(repo, source)
    return repo


def _holding(placed: Rows, member: bytes) -> list[bytes]:
    """The packs of which ``member`` holds a shard, in id order."""
    return sorted(p for p, r in placed.items() if member in {h for _, h, _, _ in r})


def _holder(placed: list[tuple[int, bytes, bool, str]], index: int) -> bytes:
    return next(h for i, h, _, _ in placed if i == index)


async def _assert_whole(
    repo: Repository, mempool: MemoryPool, avoid: frozenset[bytes] = frozenset()
) -> None:
    """Every pack: n acknowledged healthy shards on n distinct members, none on
    ``avoid``, each really in its holder's store; no upload left to finish."""
    records = await care.packs(repo)
    for pack_id, placed in (await care.rows(repo)).items():
        n = records[pack_id][0].n
        assert len(placed) == n, placed
        assert all(acked and state == "ok" for _, _, acked, state in placed), placed
        holders = {h for _, h, _, _ in placed}
        assert len(holders) == n
        assert not holders & avoid
        for index, holder, _, _ in placed:
            assert care.key(pack_id, index) in care.live(mempool, holder)
    assert await repo.ledger.moves("upload") == []


async def _restores(repo: Repository, src: Path, target: Path) -> None:
    assert await care.restore(repo, "latest", target, src) == describe(src)


async def _lose(repo: Repository, mempool: MemoryPool, *members: int, days: float = 8) -> None:
    """Members gone (as a dead disk), the clock moved on, and a probe that sees it."""
    for i in members:
        mempool.member(i).up = False
    mempool.clock.advance(days * DAY)
    await repo.probe()


def _crash_at(monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    def crash(name: str) -> None:
        if name == point:
            raise Killed(name)

    monkeypatch.setattr(repair_module, "crash_point", crash)


async def test_a_healthy_pool_needs_no_repair_and_publishes_nothing(
    backed: Repository, mempool: MemoryPool
) -> None:
    before = await care.rows(backed)
    seq = await backed.ledger.get_meta("manifest_seq")
    report = await repair(backed, POLICY, mempool.clock())
    assert (report.packs_short, report.packs_repaired, report.manifest_copies) == (0, 0, 0)
    assert report.stuck == []
    assert set(report.states.values()) == {"ok"}
    assert await care.rows(backed) == before
    assert await backed.ledger.get_meta("manifest_seq") == seq


async def test_a_member_lost_past_the_grace_is_rebuilt_elsewhere_and_restore_needs_it_not(
    backed: Repository, mempool: MemoryPool, source: Path, tmp_path: Path
) -> None:
    m1 = node(mempool, 1)
    had = _holding(await care.rows(backed), m1)
    assert had
    await _lose(backed, mempool, 1)
    report = await repair(backed, POLICY, mempool.clock())
    assert report.states["m1"] == "lost"
    assert report.packs_repaired == report.packs_short == len(had)
    assert report.shards_placed == len(had)  # one shard of a pack on each member
    assert report.stuck == []
    assert report.shards_released == 0  # m1 is away: told when it answers
    assert sorted(m.pack_id for m in await backed.ledger.moves("release")) == had
    assert report.manifest_copies == 4  # every member but the lost one
    await _assert_whole(backed, mempool, avoid=frozenset({m1}))
    mempool.member(2).up = False  # one more down: 3 of 4 shards still answer
    await _restores(backed, source, tmp_path / "out")


async def test_a_lost_member_back_again_has_its_old_shards_moved_to_its_trash(
    backed: Repository, mempool: MemoryPool
) -> None:
    m1 = node(mempool, 1)
    held = care.live(mempool, m1)
    assert held
    await _lose(backed, mempool, 1)
    await repair(backed, POLICY, mempool.clock())
    assert care.live(mempool, m1) == held  # out of reach: nothing was asked of it

    mempool.member(1).up = True
    await backed.probe()
    report = await repair(backed, POLICY, mempool.clock())
    assert report.states["m1"] == "ok"
    assert report.packs_repaired == 0
    assert report.shards_released == len(held)
    assert care.live(mempool, m1) == set()
    assert care.trash(mempool, m1) == held  # in its trash, for its grace period
    assert await backed.ledger.moves("release") == []
    await _assert_whole(backed, mempool)


async def test_unreachable_within_the_grace_is_not_lost(
    backed: Repository, mempool: MemoryPool
) -> None:
    before = await care.rows(backed)
    await _lose(backed, mempool, 1, days=7)  # exactly the grace: still only offline
    report = await repair(backed, POLICY, mempool.clock())
    assert report.states["m1"] == "unreachable"
    assert report.packs_short == report.packs_repaired == 0  # its shards still count
    assert await care.rows(backed) == before
    assert await backed.ledger.moves("upload") == await backed.ledger.moves("release") == []

    mempool.clock.advance(1)  # one second past the grace: lost
    await backed.probe()
    report = await repair(backed, POLICY, mempool.clock())
    assert report.states["m1"] == "lost"
    assert report.packs_repaired == len(_holding(before, node(mempool, 1)))


async def test_a_member_failing_challenges_has_only_what_it_lost_rebuilt(
    backed: Repository, mempool: MemoryPool, source: Path, tmp_path: Path
) -> None:
    m2 = node(mempool, 2)
    store = mempool.store(m2)
    held = sorted(care.live(mempool, m2))
    dropped = set(held[::2])  # it silently loses half of our shards
    for k in store._list():
        if k.text in dropped:
            store._path(k).unlink()
    rng = random.Random(5)
    outcomes = []
    for _ in range(40):
        outcome = await challenges.challenge(backed, backed.members[m2], rng, mempool.clock())
        outcomes.append(outcome.result)
        if outcome.result == "fail":
            break
    assert outcomes[-1] == "fail", outcomes
    assert "does not have it" in outcome.evidence
    (told,) = await backed.ledger.events(kinds=["challenge."])
    assert (told.kind, told.subject, told.level) == ("challenge.failed", "m2", "error")
    assert "does not have it" in told.message

    await backed.probe()
    report = await repair(backed, POLICY, mempool.clock())
    assert report.states["m2"] == "failing"
    assert report.packs_repaired == len(dropped)  # the audit found every lost one
    assert report.shards_released == len(dropped)
    assert report.stuck == []
    await _assert_whole(backed, mempool)
    kept = {
        care.key(p, i)
        for p, placed in (await care.rows(backed)).items()
        for i, h, _, _ in placed
        if h == m2
    }
    assert kept == set(held) - dropped  # what it still holds stays; nothing new for it
    mempool.member(1).up = False
    await _restores(backed, source, tmp_path / "out")


async def test_shards_deleted_on_a_holders_disk_are_found_by_the_listing_and_rebuilt(
    backed: Repository, mempool: MemoryPool
) -> None:
    m3 = node(mempool, 3)
    store = mempool.store(m3)
    gone = sorted(store._list(), key=lambda k: k.text)[:2]
    for k in gone:
        store._path(k).unlink()
    found = await run_check(backed, None, False)
    assert found["shards_missing"] == 2
    assert all("on m3" in p for p in found["problems"])
    report = await repair(backed, POLICY, mempool.clock())
    assert report.packs_repaired == report.shards_placed == 2
    await _assert_whole(backed, mempool)
    for k in gone:  # rebuilt on the member that held none of the pack
        assert _holder(await backed.ledger.shard_rows(bytes(k.pack)), k.index) != m3
    again = await run_check(backed, None, True)
    assert again["ok"], again["problems"]


async def test_a_damaged_shard_is_released_only_after_its_replacement_is_durable(
    backed: Repository, mempool: MemoryPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old placement goes (to the holder's trash) only once the new holder acked
    and the ledger points at it; while no member takes the new shard, it stays."""
    m2 = node(mempool, 2)
    store = mempool.store(m2)
    bad = sorted(store._list(), key=lambda k: k.text)[0]
    raw = bytearray(store._path(bad).read_bytes())
    raw[-1] ^= 1
    store._path(bad).write_bytes(bytes(raw))
    assert (await run_check(backed, None, True))["shards_damaged"] == 1
    pack_id = bytes(bad.pack)

    async def refuse(_key: ShardKey, _shard: Shard) -> None:
        raise PeerUnavailable("disk unplugged")

    for i in range(1, 6):
        monkeypatch.setattr(mempool.member(i), "put", refuse)
    report = await repair(backed, POLICY, mempool.clock())
    assert report.packs_repaired == 0
    assert len(report.stuck) == 1
    assert pack_id.hex()[:12] in report.stuck[0]
    assert (bad.index, m2, True, "bad") in await backed.ledger.shard_rows(pack_id)
    assert await backed.ledger.moves("upload") == await backed.ledger.moves("release") == []
    assert bad.text in care.live(mempool, m2)  # never told to delete it
    monkeypatch.undo()

    seen: list[tuple[bytes, bool]] = []
    real_delete = mempool.member(2).delete

    async def delete(k: ShardKey) -> None:
        holder = _holder(await backed.ledger.shard_rows(bytes(k.pack)), k.index)
        seen.append((holder, k.text in care.live(mempool, holder)))
        await real_delete(k)

    monkeypatch.setattr(mempool.member(2), "delete", delete)
    await backed.probe()
    report = await repair(backed, POLICY, mempool.clock())
    assert report.packs_repaired == report.shards_released == 1
    (new_holder, has_it), *more = seen
    assert not more
    assert new_holder != m2  # the ledger pointed at the new holder already,
    assert has_it  # which had the shard
    assert bad.text not in care.live(mempool, m2)
    assert bad.text in care.trash(mempool, m2)
    await _assert_whole(backed, mempool)


async def test_too_few_members_left_is_stuck_reported_and_nothing_is_lost(
    repo: Repository, mempool: MemoryPool, source: Path, tmp_path: Path
) -> None:
    await _backup(repo, source, code=(2, 5))  # every member holds a shard of every pack
    before = await care.rows(repo)
    await _lose(repo, mempool, 1)
    report = await repair(repo, POLICY, mempool.clock())
    assert report.packs_repaired == report.shards_placed == 0
    assert len(report.stuck) == len(before) == report.packs_short
    assert all("no other member can take one" in s for s in report.stuck)
    assert report.manifest_copies == 0
    assert await care.rows(repo) == before  # no placement dropped
    assert await repo.ledger.moves("upload") == await repo.ledger.moves("release") == []
    await _restores(repo, source, tmp_path / "out")


async def test_two_members_lost_heals_what_it_can_and_names_the_rest(
    backed: Repository, mempool: MemoryPool, source: Path, tmp_path: Path
) -> None:
    lost = {node(mempool, 1), node(mempool, 2)}
    before = set(await care.packs(backed))
    await _lose(backed, mempool, 1, 2)
    report = await repair(backed, POLICY, mempool.clock())
    assert report.packs_repaired > 0
    still_short = set()
    for pack_id, placed in (await care.rows(backed)).items():
        if pack_id not in before:
            continue  # the new index, on the three members left
        good = {h for _, h, acked, state in placed if acked and state == "ok"} - lost
        assert len(good) >= 2  # never below k
        if len(good) < 4:
            still_short.add(pack_id.hex()[:12])
    assert still_short  # three members left cannot hold four shards
    assert {s.split()[1].rstrip(":") for s in report.stuck} == still_short
    await _restores(backed, source, tmp_path / "out")


async def test_max_packs_repairs_the_thinnest_first_and_the_next_pass_goes_on(
    tmp_path: Path, source: Path
) -> None:
    """Six members, so each pack has two free to take its rebuilt shards."""
    mempool = MemoryPool(tmp_path / "six", 6, seed=2)
    m1 = node(mempool, 1)
    async with care.reopened(mempool) as repo:
        await _backup(repo, source)
        placed = await care.rows(repo)
        short = _holding(placed, m1)
        assert len(short) >= 3
        thinnest = short[-1]  # last by id: first only for being thinnest
        other = next(i for i, h, _, _ in placed[thinnest] if h != m1)
        await repo.ledger.mark_shard_bad(thinnest, other)
        await _lose(repo, mempool, 1)

        report = await repair(repo, POLICY, mempool.clock(), max_packs=1)
        assert (report.packs_repaired, report.shards_placed) == (1, 2)
        assert report.packs_left == len(short) - 1
        assert all(s == "ok" for _, _, _, s in await repo.ledger.shard_rows(thinnest))
        left = [report.packs_left]
        while report.packs_left:
            report = await repair(repo, POLICY, mempool.clock(), max_packs=1)
            assert report.packs_repaired == 1
            left.append(report.packs_left)
        assert left == list(range(len(short) - 1, -1, -1))  # one a pass, none twice
        await _assert_whole(repo, mempool, avoid=frozenset({m1}))


async def test_the_rate_limit_waits_for_every_byte_beyond_its_burst(
    backed: Repository, mempool: MemoryPool
) -> None:
    clock = ManualClock(0.0)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    per_hour = 1 << 20
    limit = RateLimit(per_hour, clock=clock, sleep=sleep)
    await _lose(backed, mempool, 1)
    report = await repair(backed, POLICY, mempool.clock(), limit=limit)
    assert report.stuck == []
    assert report.packs_repaired > 1
    moved = report.bytes_fetched + report.bytes_sent
    assert moved > per_hour / 10  # more than the burst
    assert sum(slept) == pytest.approx((moved - per_hour / 10) / (per_hour / 3600))
    assert clock.now == pytest.approx(sum(slept))


async def test_a_rate_limit_of_nothing_never_waits() -> None:
    async def sleep(_seconds: float) -> None:
        raise AssertionError("waited")

    limit = RateLimit(0, clock=ManualClock(0.0), sleep=sleep)
    await limit.take(1 << 40)


async def test_a_repair_killed_after_an_upload_completes_it_on_the_next_run(
    mempool: MemoryPool, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m1 = node(mempool, 1)
    async with care.reopened(mempool) as repo:
        await _backup(repo, source)
        await _lose(repo, mempool, 1)
        _crash_at(monkeypatch, "repair-uploaded")
        with pytest.raises(Killed):
            await repair(repo, POLICY, mempool.clock())
        (move,) = await repo.ledger.moves("upload")
        assert care.key(move.pack_id, move.index) in care.live(mempool, move.holder)
        placed = await repo.ledger.shard_rows(move.pack_id)
        assert _holder(placed, move.index) == m1  # not yet pointed at the new holder
    monkeypatch.undo()

    async with care.reopened(mempool) as repo:
        report = await repair(repo, POLICY, mempool.clock())
        assert report.shards_resumed == 1
        assert report.stuck == []
        assert _holder(await repo.ledger.shard_rows(move.pack_id), move.index) == move.holder
        await _assert_whole(repo, mempool, avoid=frozenset({m1}))
        await _restores(repo, source, tmp_path / "out")


async def test_a_repair_killed_before_its_upload_arrived_drops_the_move_and_redoes_it(
    mempool: MemoryPool, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m1 = node(mempool, 1)
    async with care.reopened(mempool) as repo:
        await _backup(repo, source)
        await _lose(repo, mempool, 1)

        async def killed(_key: ShardKey, _shard: Shard) -> None:
            raise Killed("mid-upload")

        for i in range(2, 6):
            monkeypatch.setattr(mempool.member(i), "put", killed)
        with pytest.raises(Killed):
            await repair(repo, POLICY, mempool.clock())
        (move,) = await repo.ledger.moves("upload")
        assert care.key(move.pack_id, move.index) not in care.live(mempool, move.holder)
    monkeypatch.undo()

    async with care.reopened(mempool) as repo:
        report = await repair(repo, POLICY, mempool.clock())
        assert report.shards_resumed == 0  # nothing to resume: the row is dropped
        assert report.stuck == []
        assert report.packs_repaired == report.packs_short > 0
        await _assert_whole(repo, mempool, avoid=frozenset({m1}))


async def test_a_resumed_upload_to_a_member_now_down_waits_for_it(
    mempool: MemoryPool, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row names a shard the member stored before the kill: kept while the member
    is away, completed when it answers (the stand-in placed meanwhile is released),
    so the pack ends with n holders either way."""
    m1 = node(mempool, 1)
    async with care.reopened(mempool) as repo:
        await _backup(repo, source)
        await _lose(repo, mempool, 1)
        _crash_at(monkeypatch, "repair-uploaded")
        with pytest.raises(Killed):
            await repair(repo, POLICY, mempool.clock())
        (move,) = await repo.ledger.moves("upload")
    monkeypatch.undo()
    target = next(i for i in range(2, 6) if node(mempool, i) == move.holder)
    mempool.member(target).up = False

    async with care.reopened(mempool) as repo:
        report = await repair(repo, POLICY, mempool.clock())
        assert report.shards_resumed == 0
        assert await repo.ledger.moves("upload") == [move]  # kept for the next pass
        mempool.member(target).up = True
        await repo.probe()
        report = await repair(repo, POLICY, mempool.clock())
        assert report.shards_resumed == 1
        assert _holder(await repo.ledger.shard_rows(move.pack_id), move.index) == move.holder
        await _assert_whole(repo, mempool, avoid=frozenset({m1}))


async def test_after_a_repair_the_pool_index_names_the_new_holders(
    backed: Repository, mempool: MemoryPool, source: Path, tmp_path: Path
) -> None:
    """A node recovered from the pool alone finds the rebuilt shards where they are."""
    m1 = node(mempool, 1)
    await _lose(backed, mempool, 1)
    report = await repair(backed, POLICY, mempool.clock())
    assert report.manifest_copies > 0
    mempool.lose_owner()
    async with care.reopened(mempool) as fresh:
        first = await fresh.latest_manifest()
        assert first is not None
        await rebuild_from_pool(fresh, first)
        found = await care.packs(fresh)
        assert set(found) == set(await care.packs(backed))
        for record, holders in found.values():
            assert m1 not in holders.values()
            assert len(holders) == record.n
        await _restores(fresh, source, tmp_path / "out")


async def test_a_request_to_a_member_leaves_a_put_in_flight_alone(tmp_path: Path) -> None:
    """What the daemon guarantees by opening each owner's store once: a request that
    arrives while a put is being written does not delete the put's file."""
    plain = MemoryPool(tmp_path / "pool", 2, seed=3)
    record, shards = build_pack(plain.owner, random.Random(1), k=1, n=2)
    k = shard_keys(record)[0]
    store = plain.store(node(plain, 1))
    writing = store._begin(k, shards[0].header)
    assert writing is not None
    writing.write(shards[0].data)
    await plain.member(1).space()  # another request to the same member meanwhile
    try:
        writing.commit(check_root=False)  # as a put does, having checked the whole shard
    except StorageError as exc:
        pytest.fail(f"the put in flight was lost: {exc}")
    assert k in store._list()


async def test_a_file_completed_before_the_empty_files_pass_keeps_its_contents(
    backed: Repository, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree with many directories makes the empty-file pass start late; here it
    starts once the first pack is written (an event, bounded, not a sleep)."""
    written = threading.Event()
    real_write, real_empty = Restorer._write_pack, Restorer._finish_empty

    def write(self: Restorer, record: PackRecord, data: bytes) -> None:
        real_write(self, record, data)
        written.set()

    def empty(self: Restorer) -> None:
        written.wait(5)
        real_empty(self)

    monkeypatch.setattr(Restorer, "_write_pack", write)
    monkeypatch.setattr(Restorer, "_finish_empty", empty)
    out = await run_restore(backed, "latest", tmp_path / "out")
    assert differences(source, tmp_path / "out" / str(source).lstrip("/")) == []
    assert out["files_restored"] == 12
