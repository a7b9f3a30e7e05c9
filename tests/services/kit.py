"""Small helpers the service tests share: trees to back up, where a restore puts them,
the members' ids and shard files, damage."""

from __future__ import annotations

import random
from pathlib import Path

from peerbak.core.pack import SHARD_HEADER_LEN
from peerbak.services.repository import Repository
from peerbak.tools.mempool import MemoryPool


def write(path: Path, size: int, seed: int) -> Path:
    """``size`` incompressible bytes (each seed its own content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def restored(target: Path, src: Path) -> Path:
    """Where a restore into ``target`` puts the tree backed up from ``src``."""
    return target / str(src).lstrip("/")


def node(mempool: MemoryPool, i: int) -> bytes:
    """The id of member ``i`` (counted from 1, as their names are)."""
    return bytes(mempool.keys[i].node_id)


async def stored_packs(repo: Repository) -> set[bytes]:
    return {p async for page in repo.ledger.stored_pack_ids() for p in page}


def damage(path: Path) -> None:
    """Flip one byte in the middle of a shard's data (its header stays as recorded)."""
    raw = bytearray(path.read_bytes())
    raw[SHARD_HEADER_LEN + len(raw[SHARD_HEADER_LEN:]) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
