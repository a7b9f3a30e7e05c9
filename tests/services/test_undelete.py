"""undelete against the in-process pool (services/undelete.py): the holders' trash and
their replaced manifests bring back what forget and prune removed, and what malware
with the owner's key deleted, even with the ledger gone, a member away, or run twice.

Three 2-of-4 backups a day apart (``_care.history``); the holders never purge their
trash here (their grace is theirs: no owner message shortens it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from peerbak.core import objects
from peerbak.core.errors import PeerUnavailable
from peerbak.core.ids import PackId, ShardKey
from peerbak.core.objects import ManifestBody, Snapshot
from peerbak.core.retention import KeepPolicy
from peerbak.services import undelete as undelete_module
from peerbak.services.check import run_check
from peerbak.services.prune import forget, prune
from peerbak.services.repository import Repository
from peerbak.services.undelete import undelete
from peerbak.tools.mempool import MemoryPool
from tests.services import _care as care
from tests.services._care import Killed, Made
from tests.services.kit import node

Disks = dict[bytes, set[str]]


def _live(mempool: MemoryPool) -> Disks:
    return {n: care.live(mempool, n) for n in mempool.members}


def _trashed(mempool: MemoryPool) -> Disks:
    return {n: care.trash(mempool, n) for n in mempool.members}


async def _ids(repo: Repository) -> set[str]:
    return {s.id.hex() for s in await repo.snapshots()}


async def _malware(repo: Repository) -> None:
    """With the owner's key and ledger: every shard deleted, every snapshot forgotten,
    and an empty manifest published over the good one."""
    for pack_id, (_, holders) in (await care.packs(repo)).items():
        for index, holder in holders.items():
            await repo.members[holder].link.delete(ShardKey(PackId(pack_id), index))
    await repo.ledger.remove_snapshots([s.id for s in await repo.snapshots()])
    await repo.publish([], [])


async def _restores_all(repo: Repository, made: Made, src: Path, target: Path) -> None:
    for snap, tree in made:
        assert await care.restore(repo, snap, target / snap[:8], src) == tree


async def _published(repo: Repository) -> set[str]:
    manifest = await repo.latest_manifest()
    assert manifest is not None
    return {s.id.hex() for s in manifest.body.snapshots}


async def test_after_forget_and_prune_undelete_brings_back_the_shards_and_the_snapshots(
    repo: Repository, mempool: MemoryPool, made: Made, src: Path, tmp_path: Path
) -> None:
    before = _live(mempool)
    await forget(repo, KeepPolicy(last=1))
    pruned = await prune(repo)
    assert pruned["packs_deleted"] > 0
    assert await _ids(repo) == {made[-1][0]}
    trashed = _trashed(mempool)
    assert any(trashed.values())

    r = await undelete(repo)
    assert r["shards_restored"] == sum(len(t) for t in trashed.values())
    assert r["snapshots"] == 3  # the forgotten two from the replaced manifests
    assert r["manifests_read"] >= 5 * 4  # each member's current one and its trash
    assert r["manifest_copies"] == 5
    after = _live(mempool)
    assert all(before[n] <= after[n] for n in before)  # and prune's new index stays
    assert _trashed(mempool) == {n: set() for n in mempool.members}
    assert await _ids(repo) == await _published(repo) == {s for s, _ in made}
    await _restores_all(repo, made, src, tmp_path)
    assert (await run_check(repo, None, True))["ok"]


async def test_undelete_undoes_malware_that_deleted_every_shard_and_published_nothing(
    repo: Repository, mempool: MemoryPool, made: Made, src: Path, tmp_path: Path
) -> None:
    before = _live(mempool)
    await _malware(repo)
    assert _live(mempool) == {n: set() for n in mempool.members}
    assert await _published(repo) == set()

    r = await undelete(repo)
    assert r["shards_restored"] == sum(len(v) for v in before.values())
    assert r["snapshots"] == 3
    assert _live(mempool) == before
    assert await _ids(repo) == await _published(repo) == {s for s, _ in made}
    await _restores_all(repo, made, src, tmp_path)


async def test_undelete_needs_no_ledger_when_malware_wiped_it_too(
    repo: Repository, mempool: MemoryPool, made: Made, src: Path, tmp_path: Path
) -> None:
    before = _live(mempool)
    await _malware(repo)
    mempool.lose_owner()  # the ledger is gone with the rest of the owner's home
    async with care.reopened(mempool) as fresh:
        assert await fresh.snapshots() == []
        r = await undelete(fresh)
        assert r["snapshots"] == 3
        assert r["packs"] == len(await care.packs(repo))
        assert _live(mempool) == before
        assert await _ids(fresh) == await _published(fresh) == {s for s, _ in made}
        await _restores_all(fresh, made, src, tmp_path)


async def test_undelete_with_a_member_down_then_again_when_it_answers(
    repo: Repository, mempool: MemoryPool, made: Made, src: Path, tmp_path: Path
) -> None:
    m1 = node(mempool, 1)
    before = _live(mempool)
    await _malware(repo)
    mempool.member(1).up = False

    r = await undelete(repo)
    assert "m1" not in r["members"]
    assert r["shards_restored"] == sum(len(v) for n, v in before.items() if n != m1)
    assert r["snapshots"] == 3  # the others' manifests have them all
    assert care.live(mempool, m1) == set()
    assert care.trash(mempool, m1) == before[m1]  # still in its trash
    await _restores_all(repo, made, src, tmp_path / "m1-down")

    mempool.member(1).up = True
    r = await undelete(repo)
    assert r["members"]["m1"]["restored"] == len(before[m1])
    assert r["shards_restored"] == len(before[m1])  # the others had nothing left
    assert _live(mempool) == before
    assert (await run_check(repo, None, True))["ok"]


async def test_undelete_run_twice_changes_nothing_the_second_time(
    repo: Repository, mempool: MemoryPool, made: Made, src: Path, tmp_path: Path
) -> None:
    await _malware(repo)
    await undelete(repo)
    disks, placed, ids = care.disks(mempool), await care.rows(repo), await _ids(repo)

    r = await undelete(repo)
    assert r["shards_restored"] == 0
    assert all(m == {"restored": 0, "already": 0} for m in r["members"].values())
    assert r["snapshots"] == 3
    assert care.disks(mempool) == disks
    assert await care.rows(repo) == placed
    assert await _ids(repo) == ids == {s for s, _ in made}
    await _restores_all(repo, made, src, tmp_path)


async def test_undelete_with_no_member_up_says_so_and_changes_nothing(
    repo: Repository, mempool: MemoryPool, made: Made
) -> None:
    await _malware(repo)
    trashed = _trashed(mempool)
    for i in range(1, 6):
        mempool.member(i).up = False
    with pytest.raises(PeerUnavailable, match="no member is reachable"):
        await undelete(repo)
    assert await _ids(repo) == set()
    assert _trashed(mempool) == trashed


async def test_an_undelete_killed_after_moving_the_trash_back_completes_when_run_again(
    repo: Repository,
    mempool: MemoryPool,
    made: Made,
    src: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _live(mempool)
    await _malware(repo)

    def crash(name: str) -> None:
        if name == "undelete-moved":
            raise Killed(name)

    monkeypatch.setattr(undelete_module, "crash_point", crash)
    with pytest.raises(Killed):
        await undelete(repo)
    monkeypatch.undo()
    assert _live(mempool) == before  # moved back,
    assert await _ids(repo) == await _published(repo) == set()  # not yet listed

    r = await undelete(repo)
    assert r["shards_restored"] == 0
    assert r["snapshots"] == 3
    await _restores_all(repo, made, src, tmp_path)


async def test_a_manifest_of_another_pool_in_a_trash_is_left_out(
    repo: Repository, mempool: MemoryPool, made: Made
) -> None:
    """Signed with this node's key but for another pool (an earlier pool of the same
    key, replayed): refused like a forgery; the rest of that member's trash is read."""
    m2 = node(mempool, 2)
    ghost = Snapshot(
        id=b"\x01" * 16,
        time=mempool.clock(),
        hostname="elsewhere",
        paths=["/ghost"],
        tags=[],
        tree=b"\x02" * 32,
        k=2,
        n=4,
    )
    body = ManifestBody(
        pool=b"\x03" * 16, founder=b"", time=mempool.clock(), snapshots=[ghost], index_packs=[]
    )
    blob = objects.seal_manifest(mempool.owner, 1_000_000, body, mempool.rng.randbytes)
    (mempool.store(m2).root / "trash" / "manifest.1000000.0").write_bytes(blob)
    await _malware(repo)
    good = sum(  # each member's current manifest and the ones in its trash, but the ghost
        1 + sum(1 for p in (mempool.store(n).root / "trash").iterdir() if p.name[:9] == "manifest.")
        for n in mempool.members
    )

    r = await undelete(repo)
    assert r["manifests_read"] == good - 1
    assert r["snapshots"] == 3
    assert await _ids(repo) == {s for s, _ in made}
    assert ghost.id.hex() not in await _published(repo)


async def test_a_damaged_manifest_in_a_trash_does_not_hide_the_older_ones(
    repo: Repository, mempool: MemoryPool, made: Made
) -> None:
    """Bit rot in each member's copy of the newest replaced manifest: the older ones
    still list the forgotten snapshots."""
    await forget(repo, KeepPolicy(last=1))
    for holder in mempool.members:
        trash = mempool.store(holder).root / "trash"
        newest = max(
            (p for p in trash.iterdir() if p.name.startswith("manifest.")),
            key=lambda p: int(p.name.split(".")[1]),
        )
        raw = bytearray(newest.read_bytes())
        raw[-1] ^= 1
        newest.write_bytes(bytes(raw))
    r = await undelete(repo)
    assert await _ids(repo) == {s for s, _ in made}
    assert r["snapshots"] == 3
