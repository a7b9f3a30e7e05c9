"""Services against a pool in this process (peerbak.tools.mempool): real holder, real
stores and ledger on disk, no SSH, an injected clock and seeded randomness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peerbak.services.repository import Repository
from peerbak.tools.mempool import MemoryPool


@pytest.fixture
def mempool(tmp_path: Path) -> MemoryPool:
    return MemoryPool(tmp_path / "pool", 5, seed=1)


@pytest.fixture
async def repo(mempool: MemoryPool) -> AsyncIterator[Repository]:
    async with await mempool.open() as repo:
        await repo.probe()
        yield repo
