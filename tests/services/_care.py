"""What the repair, prune and undelete tests share: the pool, a kill, and looks at the
members' disks and the owner's ledger."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from peerbak.core.health import DAY
from peerbak.core.ids import PackId, ShardKey
from peerbak.core.objects import Snapshot
from peerbak.core.pack import PackRecord
from peerbak.services.backup import run_backup
from peerbak.services.repository import Repository
from peerbak.services.restore import run_restore
from peerbak.tools.mempool import MemoryPool
from peerbak.tools.sample import describe


class Killed(BaseException):
    """The process dies here: nothing in a service catches it, and the ledger keeps
    what it committed, as after a power cut."""


@asynccontextmanager
async def reopened(mempool: MemoryPool) -> AsyncIterator[Repository]:
    """The owner's repository opened anew and probed, as by a restarted process."""
    async with await mempool.open() as repo:
        await repo.probe()
        yield repo


def write_files(folder: Path, prefix: str, count: int, seed: int, size: int = 40_000) -> None:
    """``count`` incompressible files: each one chunk, two to a 64 KiB pack."""
    folder.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    for i in range(count):
        (folder / f"{prefix}-{i:02}.bin").write_bytes(rnd.randbytes(size + i))


Made = list[tuple[str, dict[str, tuple[object, ...]]]]


async def history(repo: Repository, mempool: MemoryPool, src: Path, count: int = 3) -> Made:
    """``count`` 2-of-4 backups of ``src`` a day apart: eight files first, then each
    day two of the first eight go and two new ones come. Returns each snapshot's id
    and what ``src`` held then."""
    made: Made = []
    write_files(src, "base", 8, seed=1)
    for day in range(count):
        if day:
            mempool.clock.advance(DAY)
            for i in (2 * day - 2, 2 * day - 1):
                (src / f"base-{i:02}.bin").unlink()
            write_files(src, f"day{day}", 2, seed=10 + day)
        out = await run_backup(repo, [src], code=(2, 4), pack_size=64 << 10)
        made.append((str(out["snapshot_id"]), describe(src)))
    return made


async def used_ids(repo: Repository, snaps: list[Snapshot]) -> set[bytes]:
    """Every tree and chunk id the snapshots reach (a walk of their trees)."""
    seen: set[bytes] = set()
    stack = [bytes(s.tree) for s in snaps]
    while stack:
        tree_id = stack.pop()
        if tree_id in seen:
            continue
        seen.add(tree_id)
        tree = await repo.read_tree(tree_id)
        for entry in tree.entries:
            if entry.subtree:
                stack.append(bytes(entry.subtree))
            seen.update(bytes(c) for c in entry.chunks)
    return seen


def key(pack_id: bytes, index: int) -> str:
    return ShardKey(PackId(pack_id), index).text


def live(mempool: MemoryPool, holder: bytes) -> set[str]:
    """The shards of ours a member holds, as ``<pack>.<index>``."""
    return {k.text for k in mempool.store(holder)._list()}


def trash(mempool: MemoryPool, holder: bytes) -> set[str]:
    """The shards of ours in a member's trash, as ``<pack>.<index>``."""
    root = mempool.store(holder).root / "trash"
    return {p.name.rpartition(".")[0] for p in root.iterdir() if not p.name.startswith("manifest")}


def disks(mempool: MemoryPool) -> dict[bytes, tuple[set[str], set[str]]]:
    """Every member's live and trashed shards."""
    return {n: (live(mempool, n), trash(mempool, n)) for n in mempool.members}


async def packs(repo: Repository) -> dict[bytes, tuple[PackRecord, dict[int, bytes]]]:
    """Every stored pack: its record and the holder of each acknowledged shard."""
    out = {}
    async for page in repo.ledger.stored_pack_ids():
        for pack_id in page:
            found = await repo.ledger.pack(pack_id)
            assert found is not None
            out[pack_id] = found
    return out


async def rows(repo: Repository) -> dict[bytes, list[tuple[int, bytes, bool, str]]]:
    """Every stored pack's shard rows: (index, holder, acknowledged, state)."""
    return {p: await repo.ledger.shard_rows(p) for p in await packs(repo)}


async def restore(repo: Repository, ref: str, target: Path, src: Path) -> dict[str, Any]:
    """Restore snapshot ``ref`` into ``target``; the tree that was at ``src``, described."""
    out = await run_restore(repo, ref, target)
    assert out["exit_code"] == 0, out
    tree = describe(target / str(src).lstrip("/"))
    assert out["files_restored"] == sum(1 for v in tree.values() if v[0] == "file")
    return tree
