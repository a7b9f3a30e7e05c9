"""forget and prune against the in-process pool (services/prune.py, core/retention.py):
what a policy keeps, which packs go (to the holders' trash, never further), what a
repack copies, and prune's commit point (a doomed pack waits for a manifest without it).

Three 2-of-4 backups a day apart (``_care.history``): the first two snapshots own
packs the third does not use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peerbak.core.crypto import BlobType
from peerbak.core.errors import InputError, NotFoundError, PeerUnavailable
from peerbak.core.health import DAY
from peerbak.core.pack import PackRecord
from peerbak.core.retention import KeepPolicy
from peerbak.core.selection import Selection
from peerbak.ports.ledger import UNPUBLISHED_DOOM
from peerbak.services import prune as prune_module
from peerbak.services.backup import run_backup
from peerbak.services.check import run_check
from peerbak.services.prune import forget, prune
from peerbak.services.repository import Repository
from peerbak.services.restore import run_restore
from peerbak.tools.mempool import MemoryPool
from peerbak.tools.sample import describe
from tests.services import _care as care
from tests.services._care import Killed, Made
from tests.services.kit import node

LAST = KeepPolicy(last=1)


async def _ids(repo: Repository) -> list[str]:
    return sorted(s.id.hex() for s in await repo.snapshots())


async def _state(repo: Repository, mempool: MemoryPool) -> tuple[Any, ...]:
    """What a change would show: snapshots, packs and placements, the manifest's
    sequence (ledger and members), and every member's live and trashed shards."""
    manifest = await repo.latest_manifest()
    return (
        await _ids(repo),
        await care.rows(repo),
        await repo.ledger.sealed_packs(),
        await repo.ledger.get_meta("manifest_seq"),
        manifest.sequence if manifest else None,
        care.disks(mempool),
    )


async def _restores(repo: Repository, made: Made, src: Path, target: Path, *ids: str) -> None:
    for snap, tree in made:
        if snap in ids:
            assert await care.restore(repo, snap, target / snap[:8], src) == tree


async def _assert_disks_match_the_ledger(repo: Repository, mempool: MemoryPool) -> None:
    """Each member's live shards are exactly those the ledger places on it."""
    want: dict[bytes, set[str]] = {n: set() for n in mempool.members}
    for pack_id, placed in (await care.rows(repo)).items():
        for index, holder, acked, _ in placed:
            assert acked
            want[holder].add(care.key(pack_id, index))
    assert {n: care.live(mempool, n) for n in mempool.members} == want


async def _listed(repo: Repository, mempool: MemoryPool) -> set[bytes]:
    """The packs the members' newest manifest reaches (its index packs and the packs
    they list), after checking that every shard of them is live on its holder: a
    node recovering from that manifest finds all it lists."""
    manifest = await repo.latest_manifest()
    assert manifest is not None
    reached = set()
    for listed in manifest.body.index_packs:
        for item in [listed, *await repo.read_index(listed)]:
            reached.add(bytes(item.pack))
            for index, holder in enumerate(item.holders):
                if holder:
                    assert care.key(item.pack, index) in care.live(mempool, holder)
    return reached


async def test_forget_keeps_what_the_policy_says_and_publishes_only_that(
    repo: Repository, mempool: MemoryPool, src: Path
) -> None:
    """Four snapshots: two on the first day (the first tagged), one each on the next
    two. Two daily and the tag keep three; the second of the first day goes."""
    care.write_files(src, "f", 2, seed=1)
    times = [0.0, 3600.0, DAY, 2 * DAY]
    ids = []
    for i, at in enumerate(times):
        mempool.clock.now = 1_780_000_000.0 + at
        (src / f"f-{i}.txt").write_text(str(i))
        out = await run_backup(repo, [src], code=(2, 4), tags=["base"] if i == 0 else [])
        ids.append(out["snapshot_id"])
    before = care.disks(mempool)
    seq = await repo.ledger.get_meta("manifest_seq")

    policy = KeepPolicy(daily=2, tags=(frozenset({"base"}),))
    decisions = await forget(repo, policy)
    why = {d.snapshot.id.hex(): [str(r) for r in d.reasons] for d in decisions}
    assert why == {
        ids[3]: ["daily snapshot"],
        ids[2]: ["daily snapshot"],
        ids[1]: [],
        ids[0]: ["has tags [base]"],
    }
    kept = sorted([ids[0], ids[2], ids[3]])
    assert await _ids(repo) == kept
    manifest = await repo.latest_manifest()
    assert manifest is not None
    assert sorted(s.id.hex() for s in manifest.body.snapshots) == kept
    assert int.from_bytes(await repo.ledger.get_meta("manifest_seq") or b"", "big") == (
        int.from_bytes(seq or b"", "big") + 1
    )
    assert care.disks(mempool) == before  # forget deletes nothing


async def test_forget_refuses_no_rule_and_rules_keeping_nothing_and_a_dry_run_changes_nothing(
    repo: Repository, mempool: MemoryPool, made: Made
) -> None:
    before = await _state(repo, mempool)
    with pytest.raises(InputError, match="no keep rule"):
        await forget(repo, KeepPolicy())
    with pytest.raises(InputError, match="keep no snapshot"):
        await forget(repo, KeepPolicy(tags=(frozenset({"nowhere"}),)))
    decisions = await forget(repo, LAST, dry_run=True)
    assert [d.snapshot.id.hex() for d in decisions if d.kept] == [made[-1][0]]
    assert await _state(repo, mempool) == before


async def test_forget_with_no_member_up_forgets_nothing(
    repo: Repository, mempool: MemoryPool, made: Made
) -> None:
    """The pool first, then the ledger: a manifest no member took forgets nothing."""
    for i in range(1, 6):
        mempool.member(i).up = False
    await repo.probe()
    with pytest.raises(PeerUnavailable, match="nothing was forgotten"):
        await forget(repo, LAST)
    assert await _ids(repo) == sorted(s for s, _ in made)


async def test_prune_moves_to_the_trash_only_the_packs_no_kept_snapshot_uses(
    repo: Repository, mempool: MemoryPool, made: Made, src: Path, tmp_path: Path
) -> None:
    await forget(repo, KeepPolicy(last=2))
    kept = await repo.snapshots()
    used = await care.used_ids(repo, kept)
    before = await care.packs(repo)

    report = await prune(repo, repack_below=0.0)
    after = await care.packs(repo)
    gone = set(before) - set(after)
    assert report["packs_unused"] == report["packs_deleted"] == len(gone) > 0
    assert report["packs_repacked"] == 0
    for pack_id in gone:
        record, holders = before[pack_id]
        assert not {bytes(e.ident) for e in record.entries} & used
        for index, holder in holders.items():  # in its holder's trash, not further
            assert care.key(pack_id, index) in care.trash(mempool, holder)
    for pack_id in set(before) & set(after):
        record = after[pack_id][0]
        assert {bytes(e.ident) for e in record.entries} & used, "a used pack stays"
    assert await repo.ledger.sealed_packs() == []
    await _assert_disks_match_the_ledger(repo, mempool)
    await _restores(repo, made, src, tmp_path, made[1][0], made[2][0])
    assert (await run_check(repo, None, True))["ok"]


async def test_a_sparse_pack_is_repacked_and_every_chunk_still_used_restores(
    repo: Repository, mempool: MemoryPool, src: Path, tmp_path: Path
) -> None:
    care.write_files(src, "f", 12, seed=3)
    await run_backup(repo, [src], code=(2, 4), pack_size=256 << 10)  # six files a pack
    for path in sorted(src.iterdir())[1:]:
        path.unlink()  # one file of twelve stays
    mempool.clock.advance(DAY)
    second = (await run_backup(repo, [src], code=(2, 4)))["snapshot_id"]
    expected = describe(src)
    await forget(repo, LAST)
    used = await care.used_ids(repo, await repo.snapshots())
    before = await care.packs(repo)
    sparse = {
        p
        for p, (record, _) in before.items()
        if record.entries[0].blob_type is BlobType.DATA
        and {bytes(e.ident) for e in record.entries} & used
    }
    assert len(sparse) == 1

    report = await prune(repo)
    assert report["packs_repacked"] >= 1
    assert report["bytes_repacked"] >= 40_000  # the one file, copied
    assert report["packs_deleted"] == report["packs_unused"] + report["packs_repacked"]
    after = await care.packs(repo)
    assert not sparse & set(after)
    (old,) = sparse
    for index, holder in before[old][1].items():
        assert care.key(old, index) in care.trash(mempool, holder)
    located = await repo.ledger.locate(list(used))
    assert len(located) == len(used)  # every used blob is in a pack that stays
    assert set(located.values()) <= set(after)
    await _assert_disks_match_the_ledger(repo, mempool)
    assert await care.restore(repo, second, tmp_path / "out", src) == expected
    assert (await run_check(repo, None, True))["ok"]


async def test_below_the_threshold_a_partly_used_pack_is_kept_whole(
    repo: Repository, mempool: MemoryPool, src: Path
) -> None:
    care.write_files(src, "f", 12, seed=3)
    await run_backup(repo, [src], code=(2, 4), pack_size=256 << 10)
    for path in sorted(src.iterdir())[1:]:
        path.unlink()
    mempool.clock.advance(DAY)
    await run_backup(repo, [src], code=(2, 4))
    await forget(repo, LAST)
    report = await prune(repo, repack_below=0.1)  # a sixth used is above a tenth
    assert report["packs_repacked"] == report["bytes_repacked"] == 0
    assert report["packs_partly_used"] == 1
    assert report["bytes_unused_kept"] >= 5 * 40_000
    await _assert_disks_match_the_ledger(repo, mempool)


async def test_a_dry_run_prune_changes_nothing(
    repo: Repository, mempool: MemoryPool, made: Made
) -> None:
    await forget(repo, LAST)
    before = await _state(repo, mempool)
    report = await prune(repo, dry_run=True)
    assert report["dry_run"]
    assert report["packs_unused"] > 0
    assert report["packs_deleted"] == report["manifest_copies"] == 0
    assert await _state(repo, mempool) == before


def _index_packs(found: dict[bytes, tuple[PackRecord, dict[int, bytes]]]) -> set[bytes]:
    return {p for p, (r, _) in found.items() if r.entries[0].blob_type is BlobType.INDEX}


async def test_with_nothing_unused_prune_only_writes_the_index_anew(
    repo: Repository, mempool: MemoryPool, src: Path, tmp_path: Path
) -> None:
    """Index packs count as unused (prune writes a fresh index): every other pack,
    and its placement, stays as it was."""
    care.write_files(src, "f", 6, seed=2)
    await run_backup(repo, [src], code=(2, 4), pack_size=64 << 10)
    before = await care.rows(repo)
    index = _index_packs(await care.packs(repo))
    assert index
    report = await prune(repo)
    assert report["packs_unused"] == report["packs_deleted"] == len(index)
    assert report["packs_repacked"] == report["packs_partly_used"] == 0
    after = await care.rows(repo)
    assert {p: r for p, r in after.items() if p in before} == {
        p: r for p, r in before.items() if p not in index
    }
    assert _index_packs(await care.packs(repo)) == set(after) - set(before)  # the new one
    await _assert_disks_match_the_ledger(repo, mempool)
    assert await care.restore(repo, "latest", tmp_path / "out", src) == describe(src)


async def test_prune_with_a_member_down_deletes_the_rest_when_it_answers(
    repo: Repository, mempool: MemoryPool, made: Made, src: Path, tmp_path: Path
) -> None:
    m1 = node(mempool, 1)
    await forget(repo, LAST)
    before = await care.packs(repo)
    held_by_m1 = care.live(mempool, m1)
    mempool.member(1).up = False

    report = await prune(repo, repack_below=0.0)
    doomed = set(before) - set(await care.packs(repo))
    waiting = {p for p in doomed if m1 in before[p][1].values()}
    assert waiting  # m1 held a shard of some of them
    assert report["packs_unused"] == len(doomed)
    assert report["packs_deleted"] == len(doomed) - len(waiting)
    assert {p for p, _ in await repo.ledger.sealed_packs()} == waiting
    assert care.live(mempool, m1) == held_by_m1  # out of reach
    for pack_id in doomed:
        for index, holder in before[pack_id][1].items():
            if holder != m1:
                assert care.key(pack_id, index) in care.trash(mempool, holder)
    await _restores(repo, made, src, tmp_path / "m1-down", made[-1][0])

    mempool.member(1).up = True
    index_packs = _index_packs(await care.packs(repo))  # written while m1 was away
    report = await prune(repo)
    assert report["packs_unused"] == len(index_packs)
    assert report["packs_deleted"] == len(waiting) + len(index_packs)
    assert await repo.ledger.sealed_packs() == []
    for pack_id in waiting:
        on_m1 = next(i for i, h in before[pack_id][1].items() if h == m1)
        assert care.key(pack_id, on_m1) in care.trash(mempool, m1)
    await _assert_disks_match_the_ledger(repo, mempool)


async def test_packs_doomed_but_not_yet_published_away_wait_for_a_manifest_without_them(
    repo: Repository,
    mempool: MemoryPool,
    made: Made,
    src: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed between its commit point and its manifest, a prune leaves the doomed
    packs sealed: the members' manifest still lists them, so nothing reclaims them
    until a manifest without them is out (here a backup's); then one does."""
    await forget(repo, LAST)

    def crash(name: str) -> None:
        if name == "prune-doomed":
            raise Killed(name)

    monkeypatch.setattr(prune_module, "crash_point", crash)
    with pytest.raises(Killed):
        await prune(repo)
    monkeypatch.undo()
    assert await repo.ledger.get_meta(UNPUBLISHED_DOOM) == b"1"
    doomed = {p for p, _ in await repo.ledger.sealed_packs()}
    assert doomed
    trash_before = {n: care.trash(mempool, n) for n in mempool.members}
    assert await repo.reclaim() == 0
    assert {n: care.trash(mempool, n) for n in mempool.members} == trash_before
    assert doomed <= await _listed(repo, mempool)  # why they must wait

    care.write_files(src, "late", 1, seed=99)
    mempool.clock.advance(DAY)
    out = await run_backup(repo, [src], code=(2, 4), pack_size=64 << 10)
    assert out["reclaimed_packs"] == 0  # it reclaims before it publishes
    assert await repo.ledger.get_meta(UNPUBLISHED_DOOM) is None
    assert not doomed & await _listed(repo, mempool)

    assert await repo.reclaim() == len(doomed)
    assert await repo.ledger.sealed_packs() == []
    await _assert_disks_match_the_ledger(repo, mempool)
    await _restores(repo, made, src, tmp_path, made[-1][0])
    assert await care.restore(repo, out["snapshot_id"], tmp_path / "late", src) == describe(src)


async def test_a_prune_killed_after_repacking_changed_nothing_and_runs_again_whole(
    repo: Repository,
    mempool: MemoryPool,
    src: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    care.write_files(src, "f", 12, seed=3)
    first = (await run_backup(repo, [src], code=(2, 4), pack_size=256 << 10))["snapshot_id"]
    for path in sorted(src.iterdir())[1:]:
        path.unlink()
    mempool.clock.advance(DAY)
    second = (await run_backup(repo, [src], code=(2, 4)))["snapshot_id"]
    await forget(repo, LAST)
    trash_before = {n: care.trash(mempool, n) for n in mempool.members}

    def crash(name: str) -> None:
        if name == "prune-repacked":
            raise Killed(name)

    monkeypatch.setattr(prune_module, "crash_point", crash)
    with pytest.raises(Killed):
        await prune(repo)
    monkeypatch.undo()
    assert {n: care.trash(mempool, n) for n in mempool.members} == trash_before
    assert await repo.ledger.get_meta(UNPUBLISHED_DOOM) is None
    assert await care.restore(repo, second, tmp_path / "killed", src) == describe(src)

    report = await prune(repo)
    assert report["packs_deleted"] == report["packs_unused"] + report["packs_repacked"] > 0
    await _assert_disks_match_the_ledger(repo, mempool)
    assert await care.restore(repo, second, tmp_path / "again", src) == describe(src)
    assert (await run_check(repo, None, True))["ok"]
    with pytest.raises(NotFoundError, match="no snapshot"):
        await repo.find_snapshot(first)


async def _jobs(repo: Repository, mempool: MemoryPool, tmp_path: Path) -> dict[str, list[str]]:
    """Two backup jobs, as the trap needs: photos hourly, documents once, then photos
    twice more; returns each job's snapshot ids, oldest first."""
    photos, docs = tmp_path / "photos", tmp_path / "docs"
    care.write_files(photos, "img", 3, seed=1)
    care.write_files(docs, "doc", 2, seed=2)
    jobs: dict[str, list[str]] = {"photos": [], "docs": []}
    for job in ("photos", "docs", "photos", "photos"):
        if job == "photos":
            care.write_files(photos, f"img{len(jobs['photos'])}", 1, seed=9 + len(jobs["photos"]))
        out = await run_backup(repo, [tmp_path / job], code=(2, 4), pack_size=64 << 10)
        jobs[job].append(str(out["snapshot_id"]))
        mempool.clock.advance(3600)
    return jobs


async def test_keep_last_one_keeps_the_last_of_each_backup_job_and_prune_keeps_it_whole(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    jobs = await _jobs(repo, mempool, tmp_path)
    decisions = await forget(repo, LAST)
    assert {str(d.group) for d in decisions} == {
        f"host [owner-host], paths [{tmp_path / 'photos'}]",
        f"host [owner-host], paths [{tmp_path / 'docs'}]",
    }
    await prune(repo)
    assert await _ids(repo) == sorted([jobs["photos"][-1], jobs["docs"][-1]])
    for job in ("photos", "docs"):
        target = tmp_path / f"out-{job}"
        out = await run_restore(repo, jobs[job][-1][:8], target)
        assert out["exit_code"] == 0
        assert describe(target / str(tmp_path / job).lstrip("/")) == describe(tmp_path / job)


async def test_one_group_for_all_forgets_across_jobs_only_when_asked(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    jobs = await _jobs(repo, mempool, tmp_path)
    decisions = await forget(repo, LAST, group_by=frozenset(), dry_run=True)
    assert [d.snapshot.id.hex() for d in decisions if d.kept] == [jobs["photos"][-1]]
    assert len(await _ids(repo)) == 4  # a dry run
    await forget(repo, LAST, group_by=frozenset())
    assert await _ids(repo) == [jobs["photos"][-1]]


async def test_selection_and_ids_forget_only_what_they_name(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    jobs = await _jobs(repo, mempool, tmp_path)
    only_docs = Selection(paths=(str(tmp_path / "docs"),))
    decisions = await forget(repo, LAST, only=only_docs)
    assert [d.snapshot.id.hex() for d in decisions] == jobs["docs"]  # photos not considered
    assert len(await _ids(repo)) == 4
    assert await forget(repo, LAST, only=Selection(hosts=("elsewhere",))) == []
    gone = await forget(repo, KeepPolicy(), ids=[jobs["photos"][0][:8]])
    assert [(d.snapshot.id.hex(), d.kept) for d in gone] == [(jobs["photos"][0], False)]
    assert jobs["photos"][0] not in await _ids(repo)
    with pytest.raises(InputError, match="not both"):
        await forget(repo, LAST, ids=[jobs["photos"][1][:8]])
    with pytest.raises(NotFoundError):
        await forget(repo, KeepPolicy(), ids=["ffffffff"])
    assert len(await _ids(repo)) == 3
