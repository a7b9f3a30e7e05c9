from __future__ import annotations

from pathlib import Path

from peerbak.services.backup import run_backup
from peerbak.services.repository import Repository
from peerbak.services.restore import run_restore
from peerbak.tools.mempool import MemoryPool
from peerbak.tools.sample import describe


async def test_backup_then_restore(repo: Repository, mempool: MemoryPool, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(bytes([i]) * 100_000)
    summary = await run_backup(repo, [src], code=(2, 4))
    assert summary["packs_added"] > 0
    mempool.member(1).up = False
    out = await run_restore(repo, "latest", tmp_path / "out")
    assert out["files_restored"] == 5
    assert describe(tmp_path / "out" / str(src).lstrip("/")) == describe(src)
