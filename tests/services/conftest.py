"""Services against a pool in this process (peerbak.tools.mempool): real holder, real
stores and ledger on disk, no SSH, an injected clock and seeded randomness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peerbak.services.repository import Repository
from peerbak.tools.mempool import MemoryPool
from tests.services import _care as care
from tests.services._care import Made


@pytest.fixture
def mempool(tmp_path: Path) -> MemoryPool:
    return MemoryPool(tmp_path / "pool", 5, seed=1)


@pytest.fixture
async def repo(mempool: MemoryPool) -> AsyncIterator[Repository]:
    async with await mempool.open() as repo:
        await repo.probe()
        yield repo


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """The tree the forget, prune and undelete histories back up."""
    return tmp_path / "src"


@pytest.fixture
async def made(repo: Repository, mempool: MemoryPool, src: Path) -> Made:
    """Three 2-of-4 backups of ``src`` a day apart (``_care.history``)."""
    return await care.history(repo, mempool, src)
