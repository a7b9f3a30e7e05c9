"""Small helpers the service tests share: trees to back up, where a restore puts them,
the members' ids and shard files, damage."""

from __future__ import annotations

import os
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


def read_beneath(root: Path, rel: Path) -> bytes:
    """A file's bytes, reached a directory at a time (the whole path may pass PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in rel.parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        leaf = os.open(rel.parts[-1], os.O_RDONLY, dir_fd=fd)
        try:
            return os.read(leaf, 1 << 20)
        finally:
            os.close(leaf)
    finally:
        os.close(fd)
