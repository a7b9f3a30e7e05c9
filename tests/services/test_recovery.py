"""Recovery against the in-process pool: the owner's machine is lost, a new ledger is
rebuilt from the newest manifest the members keep and the index objects it lists, and
everything restores; older manifests lose to newer ones, forged ones are refused, and
members may be down while it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerbak.core import objects
from peerbak.core.errors import IntegrityError, NotEnoughShares
from peerbak.core.objects import Manifest
from peerbak.services.backup import run_backup
from peerbak.services.check import run_check
from peerbak.services.recovery import rebuild_from_pool
from peerbak.services.repository import Repository
from peerbak.services.restore import run_restore
from peerbak.tools.mempool import MemoryPool
from peerbak.tools.sample import describe
from tests.services.kit import restored, stored_packs, write

CODE = (2, 4)
PACK = 64 << 10


async def two_backups(
    repo: Repository, mempool: MemoryPool, src: Path
) -> list[tuple[str, dict[str, tuple[object, ...]]]]:
    """Two snapshots an hour apart, the second with a file changed and one added:
    (snapshot id, the tree as it was) of each."""
    out = []
    for i in range(6):
        write(src / f"d{i % 2}" / f"f{i}.bin", 30_000 + i, seed=i)
    (src / "empty").touch()
    summary = await run_backup(repo, [src], code=CODE, pack_size=PACK)
    out.append((summary["snapshot_id"], describe(src)))
    mempool.clock.advance(3600)
    write(src / "d0" / "f0.bin", 31_000, seed=100)
    write(src / "new.bin", 70_000, seed=101)
    summary = await run_backup(repo, [src], code=CODE, pack_size=PACK)
    out.append((summary["snapshot_id"], describe(src)))
    return out


async def latest(repo: Repository) -> Manifest:
    found = await repo.latest_manifest()
    assert found is not None
    return found


async def test_a_lost_owner_rebuilds_its_ledger_and_restores_every_snapshot(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    snaps = await two_backups(repo, mempool, src)
    packs = await stored_packs(repo)
    before = sorted((s.id, s.time, s.tree) for s in await repo.snapshots())

    mempool.lose_owner()
    async with await mempool.open() as fresh:
        await fresh.probe()
        assert await fresh.snapshots() == []
        manifest, imported = await rebuild_from_pool(fresh, await latest(fresh))
        assert manifest.sequence == 2
        assert imported == len(packs)
        assert await stored_packs(fresh) == packs
        assert sorted((s.id, s.time, s.tree) for s in await fresh.snapshots()) == before
        for ident, state in snaps:
            out = await run_restore(fresh, ident, tmp_path / ident)
            assert out["exit_code"] == 0
            assert describe(restored(tmp_path / ident, src)) == state

        check = await run_check(fresh, None, False)
        assert check["ok"]
        assert check["shards_missing"] == check["shards_unknown"] == 0
        # The next backup stores no file again, and its manifest follows the last one.
        again = await run_backup(fresh, [src], code=CODE, pack_size=PACK)
        assert again["data_added"] == 0
        assert again["manifest_copies"] == 5
        assert (await latest(fresh)).sequence == 3


async def test_a_member_keeping_an_older_manifest_loses_to_the_newest(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", 40_000, seed=1)
    await run_backup(repo, [src], code=CODE)
    behind = mempool.member(1)
    behind.up = False  # away for the second backup: it keeps the first manifest
    mempool.clock.advance(60)
    write(src / "b.bin", 40_000, seed=2)
    second = await run_backup(repo, [src], code=CODE)
    behind.up = True

    mempool.lose_owner()
    async with await mempool.open() as fresh:
        for i in range(2, 6):
            mempool.member(i).up = False
        await fresh.probe()
        old = await latest(fresh)  # all the new machine first reaches
        assert old.sequence == 1
        assert len(old.body.snapshots) == 1
        for i in range(2, 6):
            mempool.member(i).up = True
        manifest, _ = await rebuild_from_pool(fresh, old)
        assert manifest.sequence == 2
        assert [s.id.hex() for s in await fresh.snapshots()].count(second["snapshot_id"]) == 1
        assert len(await fresh.snapshots()) == 2
        await run_restore(fresh, "latest", tmp_path / "out")
        assert describe(restored(tmp_path / "out", src)) == describe(src)


def _forge(mempool: MemoryPool, genuine: Manifest, kind: str) -> bytes:
    """A manifest one member keeps in place of ours, "newer" than any of ours."""
    sequence = 1 << 40
    body = genuine.body
    if kind == "signed-by-a-member":
        return objects.seal_manifest(mempool.keys[2], sequence, body, mempool.rng.randbytes)
    if kind == "claims-the-owner":  # a member's signature under the owner's id
        blob = objects.seal_manifest(mempool.keys[2], sequence, body, mempool.rng.randbytes)
        at = 5  # magic(4) ‖ format(1) ‖ owner(32)
        return blob[:at] + bytes(mempool.owner.node_id) + blob[at + 32 :]
    # Ours, but for another pool (this key in an earlier pool).
    other = objects.ManifestBody(
        pool=bytes(16), founder=body.founder, time=body.time, snapshots=[], index_packs=[]
    )
    return objects.seal_manifest(mempool.owner, sequence, other, mempool.rng.randbytes)


@pytest.mark.parametrize("kind", ["signed-by-a-member", "claims-the-owner", "another-pool"])
async def test_a_manifest_signed_by_another_key_or_for_another_pool_is_refused(
    repo: Repository, mempool: MemoryPool, tmp_path: Path, kind: str
) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", 40_000, seed=1)
    await run_backup(repo, [src], code=CODE)
    genuine = await latest(repo)
    forged = _forge(mempool, genuine, kind)
    liar = mempool.store(bytes(mempool.keys[3].node_id))
    liar.manifest_path.write_bytes(forged)

    mempool.lose_owner()
    async with await mempool.open() as fresh:
        with pytest.raises(IntegrityError):
            fresh.open_manifest(forged)
        await fresh.probe()
        first = await latest(fresh)
        assert first.sequence == genuine.sequence
        manifest, _ = await rebuild_from_pool(fresh, first)
        assert manifest.sequence == genuine.sequence
        assert [s.id for s in await fresh.snapshots()] == [s.id for s in genuine.body.snapshots]
        await run_restore(fresh, "latest", tmp_path / "out")
        assert describe(restored(tmp_path / "out", src)) == describe(src)


async def test_with_n_minus_k_members_down_the_rebuild_still_restores_everything(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    snaps = await two_backups(repo, mempool, src)
    packs = await stored_packs(repo)
    mempool.lose_owner()
    mempool.member(1).up = mempool.member(4).up = False
    async with await mempool.open() as fresh:
        await fresh.probe()
        manifest, _ = await rebuild_from_pool(fresh, await latest(fresh))
        assert manifest.sequence == 2
        assert await stored_packs(fresh) == packs
        ident, state = snaps[-1]
        out = await run_restore(fresh, ident, tmp_path / "out")
        assert out["exit_code"] == 0
        assert sorted(out["down"]) == ["m1", "m4"]
        assert describe(restored(tmp_path / "out", src)) == state


async def test_a_rebuild_cut_short_by_members_down_publishes_nothing_and_can_be_retried(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    snaps = await two_backups(repo, mempool, src)
    mempool.lose_owner()
    async with await mempool.open() as fresh:
        for i in range(1, 5):
            mempool.member(i).up = False  # m5 alone: the manifest, not k shards of anything
        await fresh.probe()
        first = await latest(fresh)
        with pytest.raises(NotEnoughShares):
            await rebuild_from_pool(fresh, first)
        assert await fresh.snapshots() == []
        assert await fresh.ledger.get_meta("manifest_seq") is None

        for i in range(1, 5):
            mempool.member(i).up = True
        manifest, _ = await rebuild_from_pool(fresh, first)
        assert manifest.sequence == 2
        assert {s.id.hex() for s in await fresh.snapshots()} == {i for i, _ in snaps}
        ident, state = snaps[0]
        await run_restore(fresh, ident, tmp_path / "out")
        assert describe(restored(tmp_path / "out", src)) == state
