"""Index objects and the manifest: what makes stored packs findable again.

Index records (pack → chunks, shards, roots) are written into the pool as encrypted
objects in metadata packs of their own, then the signed manifest listing the snapshots
and those index packs is given to every member (protocol/snapshots.md). Backup writes
them last; repair and prune publish again after moving or dropping packs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Final, NamedTuple

from peerbak.core import objects
from peerbak.core.crypto import BlobType
from peerbak.core.errors import PeerbakError
from peerbak.core.ids import PackId
from peerbak.core.objects import Index, IndexPack, Snapshot
from peerbak.core.pack import PackRecord, Shard
from peerbak.services.packer import Packer
from peerbak.services.repository import META, Repository, index_pack

log = logging.getLogger(__name__)

#: Packs per index object: ≈ 3 KB each, so an index blob stays a few MiB.
INDEX_PACKS_PER_OBJECT: Final = 1000
#: An index object is closed at about this size (the largest blob is 16 MiB).
INDEX_OBJECT_BYTES: Final = 4 << 20
#: A rough upper bound of one blob's entry in an encoded index object.
INDEX_ENTRY_BYTES: Final = 64
#: Index packs the manifest may list before the newest small ones are merged; small
#: means at most MERGE_SMALL bytes (a backup that added a few hundred packs), and at
#: most MERGE_MAX are merged at once (16 MiB read back at most).
INDEX_LIST_MAX: Final = 32
MERGE_SMALL: Final = 1 << 20
MERGE_MAX: Final = 16
META_PACK: Final = 4 << 20


async def store(repo: Repository, record: PackRecord, shards: list[Shard], *, kind: int) -> None:
    await repo.store_pack(record, shards, kind)


class Made(NamedTuple):
    """A pack this run made: what the summary and the index need, not its blob entries
    (a run of millions of small files would otherwise keep every entry to the end)."""

    pack_id: PackId
    k: int
    n: int
    length: int
    kind: int

    @classmethod
    def of(cls, record: PackRecord, kind: int) -> Made:
        return cls(record.pack_id, record.k, record.n, record.length, kind)

    @property
    def stored_size(self) -> int:
        return self.n * (100 + -(-self.length // self.k))


async def write_index(repo: Repository, meta: Packer, made: list[Made]) -> list[IndexPack]:
    """Index objects for every stored pack no index lists yet (this run's, and any a
    killed run stored), in packs of their own that the manifest then lists.

    Each backup adds an index pack to the manifest's list; once the list is long, the
    newest small ones are read back and merged into one, so the manifest stays small
    (about 400 bytes an entry, 1 MiB at most) however often backups run.
    """
    existing = await repo.index_packs()
    merging = _to_merge(existing)
    before = len(made)
    writer = _IndexWriter(meta)
    try:
        for listed_pack in merging:
            for item in await repo.read_index(listed_pack):
                await writer.add(item)
            await writer.add(listed_pack)  # it stays a stored pack: an index now lists it
    except PeerbakError as exc:  # merging can wait for a better day (the merged packs
        log.warning("index packs not merged this time: %s", exc)  # stay listed)
        merging = []
    listed: list[bytes] = []
    async for page in repo.ledger.unindexed_packs():
        for rec, holders in page:
            await writer.add(index_pack(rec, holders))
            listed.append(bytes(rec.pack_id))
    if not writer.written and not listed:
        return existing
    await writer.flush()
    await asyncio.to_thread(meta.flush)
    new = []
    for record in made[before:]:
        found = await repo.ledger.pack(record.pack_id)
        if found is not None:
            new.append(index_pack(found[0], found[1]))
            listed.append(record.pack_id)
    merged = {p.pack for p in merging}
    every = [p for p in existing if p.pack not in merged] + new
    # Kept now, not when the manifest is published: a crash before publishing must not
    # leave packs marked indexed that no manifest will ever list.
    await repo.ledger.set_meta("index_packs", objects.encode(Index(packs=every)))
    await repo.ledger.mark_indexed(listed)
    return every


class _IndexWriter:
    """Index objects of at most INDEX_OBJECT_BYTES, written to the metadata packer as
    they fill, so indexing millions of chunks holds one object in memory, not all."""

    def __init__(self, meta: Packer) -> None:
        self.meta = meta
        self.batch: list[IndexPack] = []
        self.size = 0
        self.written = 0

    async def add(self, item: IndexPack) -> None:
        self.batch.append(item)
        self.size += INDEX_ENTRY_BYTES * (len(item.blobs) + 4)
        if self.size >= INDEX_OBJECT_BYTES or len(self.batch) >= INDEX_PACKS_PER_OBJECT:
            await self.flush()

    async def flush(self) -> None:
        if self.batch:
            body = objects.encode(Index(packs=self.batch))
            await asyncio.to_thread(self.meta.add_chunk, body, BlobType.INDEX)
            self.written += len(self.batch)
        self.batch, self.size = [], 0


def _to_merge(existing: list[IndexPack]) -> list[IndexPack]:
    """The newest small index packs, once the manifest lists too many.

    Only a run of small ones at the end of the list: the merged pack goes to the end,
    and a later entry for a pack (its placement after a repair) must stay after an
    earlier one, because recovery applies them in list order.
    """
    if len(existing) < INDEX_LIST_MAX:
        return []
    tail = 0
    while tail < min(len(existing), MERGE_MAX) and existing[-1 - tail].length <= MERGE_SMALL:
        tail += 1
    return existing[len(existing) - tail :] if tail >= 2 else []


async def republish(
    repo: Repository, snapshots: Sequence[Snapshot] | None = None, *, unless: str = ""
) -> int:
    """Index the packs no index lists as placed now (after a repair moved shards, or
    a killed run), then publish a manifest listing ``snapshots`` (default: all the
    ledger keeps). Returns how many members keep it. The caller holds the backup lock.
    """
    loop = asyncio.get_running_loop()
    made: list[Made] = []
    snaps = list(snapshots) if snapshots is not None else await repo.snapshots()
    latest = max(snaps, key=lambda s: s.time, default=None)
    meta = Packer(
        repo.keys,
        repo.code((latest.k, latest.n) if latest else None),  # as the backups chose
        functools.partial(store, repo, kind=META),
        loop,
        random_bytes=repo.random_bytes,
        on_pack=lambda record: made.append(Made.of(record, META)),
        target_size=META_PACK,
    )
    try:
        index_packs = await write_index(repo, meta, made)
    finally:
        meta.close()
    return await repo.publish(snaps, index_packs, unless=unless)
