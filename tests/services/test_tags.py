"""``tag`` against the in-process pool: tags added, removed and set, kept by the
members' manifest (a recovered ledger sees them), and bad tags refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerbak.core.errors import InputError, NotFoundError
from peerbak.core.selection import Selection
from peerbak.services.backup import run_backup
from peerbak.services.recovery import rebuild_from_pool
from peerbak.services.repository import Repository
from peerbak.services.tags import retag
from peerbak.tools.mempool import MemoryPool
from tests.services.kit import write


async def test_tags_change_in_the_ledger_and_in_the_pool(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    write(tmp_path / "a" / "f", 100, seed=1)
    write(tmp_path / "b" / "f", 100, seed=2)
    one = await run_backup(repo, [tmp_path / "a"], code=(2, 4), tags=["daily"])
    two = await run_backup(repo, [tmp_path / "b"], code=(2, 4))
    changed = await retag(repo, [one["snapshot_id"][:8]], add=["keep", "photos"], remove=["daily"])
    assert [(s.id.hex(), s.tags) for s in changed] == [(one["snapshot_id"], ["keep", "photos"])]
    only_b = Selection(paths=(str(tmp_path / "b"),))
    assert [s.tags for s in await retag(repo, set_to=["x"], only=only_b)] == [["x"]]
    assert await retag(repo, set_to=["x"], only=only_b) == []  # nothing left to change
    tags = {s.id.hex(): s.tags for s in await repo.snapshots()}
    assert tags == {one["snapshot_id"]: ["keep", "photos"], two["snapshot_id"]: ["x"]}

    manifest = await repo.latest_manifest()  # the pool has them too: a lost owner sees them
    assert manifest is not None
    mempool.lose_owner()
    async with await mempool.open() as fresh:
        await rebuild_from_pool(fresh, manifest)
        assert {s.id.hex(): s.tags for s in await fresh.snapshots()} == tags


async def test_bad_tags_and_unknown_snapshots_are_refused(repo: Repository, tmp_path: Path) -> None:
    write(tmp_path / "a" / "f", 100, seed=1)
    await run_backup(repo, [tmp_path / "a"], code=(2, 4))
    with pytest.raises(InputError, match="say what"):
        await retag(repo)
    with pytest.raises(InputError, match="not a tag"):
        await retag(repo, add=["a,b"])
    with pytest.raises(InputError, match="at most"):
        await retag(repo, add=[f"t{i}" for i in range(65)])
    with pytest.raises(NotFoundError):
        await retag(repo, ["ffffffff"], add=["x"])
    assert [s.tags for s in await repo.snapshots()] == [[]]
