"""The write half of the data path: streams in, shards out, on both cores.

A :class:`Packer` runs in one worker thread of its own (it blocks on files and on
uploads) and keeps two things busy at once:

- the calling thread reads and chunks a stream, hashes each chunk (chunk ids),
  compresses and encrypts the new ones and copies them into the open pack buffer,
- one shard thread erasure-codes each sealed pack, computes the Merkle root of each
  shard and hands the shards to the stores on the event loop.

Chunks are sealed in the calling thread unless ``threads`` asks for a pool. Handing
every chunk to a pool and back costs more than it saves: with a pool of two, a first
backup of the 1 GiB mixed tree to five local friends took 10.0–10.4 s and made 148,000
context switches; sealed in place, and encrypted straight into the pack, 7.8–8.1 s
and 55,000 (``backup --dry-run``: 6.1–6.5 s against 4.9 s). zstd and libsodium release
the GIL, but most chunks are small files whose hand-off takes longer than their
compression.

WRITERS pack buffers take turns: one fills while the others are coded and stored.
Data shards are views of the pack buffer and parity is written into buffers kept
from pack to pack, so memory stays at a few packs whatever the size of the input.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import zstandard

from peerbak.core import chunker, crypto
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import BlobType, NodeKeys, RandomBytes
from peerbak.core.errors import InputError
from peerbak.core.ids import ChunkId, PackId, ShardKey
from peerbak.core.pack import (
    BlobEntry,
    PackRecord,
    PackWriter,
    PlainBlob,
    SealedBlob,
    Shard,
    make_shards,
    prepare_blob,
)
from peerbak.ports import ShareStore

#: Chunks being sealed at once by a pool; bounds memory to WINDOW × 4 MiB of plaintext.
WINDOW: Final = 8
#: Pack buffers: one filling, the others being coded and stored.
WRITERS: Final = 3
#: Streams up to this size are read whole and chunked in memory.
SMALL_FILE: Final = 8 << 20
ZSTD_LEVEL: Final = 3


#: Stores one sealed pack's shards wherever placement says; returns once it is durable.
StorePack = Callable[[PackRecord, list[Shard]], Awaitable[None]]


class ChunkSet(Protocol):
    def __contains__(self, ident: object, /) -> bool: ...
    def add(self, ident: ChunkId, /) -> None: ...


class KnownChunks:
    """Chunk ids already stored, in 16 bytes each whatever their number.

    A Python set costs about 90 bytes per id: 4 million chunks (4 TB of photos) would
    take 360 MB. Here the ids known at start are one sorted numpy array of 16-byte
    prefixes (64 MB for those 4 million), looked up by binary search; ids added during
    the run go to a small set, merged into the array when it grows. A 128-bit prefix
    of a keyed hash does not collide by chance (p ≈ 10⁻²⁶ at 4 million), and nobody
    without the node's key can make it collide on purpose.
    """

    PREFIX: Final = 16
    MERGE_AT: Final = 1 << 16

    def __init__(self, ids: Iterable[bytes] = ()) -> None:
        self._sorted = np.array([], dtype=f"S{self.PREFIX}")
        self._recent: set[bytes] = set()
        self._lock = threading.Lock()
        self.update(ids)

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    @classmethod
    def prefixes(cls, ids: Sequence[bytes]) -> np.ndarray[Any, Any]:
        return np.array([i[: cls.PREFIX] for i in ids], dtype=f"S{cls.PREFIX}")

    @classmethod
    def from_sorted(cls, arrays: list[np.ndarray[Any, Any]]) -> KnownChunks:
        """Built from :meth:`prefixes` of ids already in ascending order (the ledger's
        pages): one concatenation, no sort, 16 bytes an id whatever their number."""
        known = cls()
        if arrays:
            known._sorted = np.concatenate(arrays)
        return known

    def update(self, ids: Iterable[bytes]) -> None:
        with self._lock:
            self._recent.update(bytes(i[: self.PREFIX]) for i in ids)
            self._merge()

    def _merge(self) -> None:
        if not self._recent:
            return
        fresh = np.array(sorted(self._recent), dtype=f"S{self.PREFIX}")
        self._sorted = np.union1d(self._sorted, fresh)
        self._recent.clear()

    def __contains__(self, ident: object, /) -> bool:
        if not isinstance(ident, bytes):
            return False
        key = ident[: self.PREFIX]
        with self._lock:
            if key in self._recent:
                return True
            arr = self._sorted
        # numpy strips trailing NULs from S values; compare the same way.
        pos = int(np.searchsorted(arr, key))
        return pos < len(arr) and arr[pos] == key.rstrip(b"\0")

    def add(self, ident: ChunkId, /) -> None:
        with self._lock:
            self._recent.add(bytes(ident[: self.PREFIX]))
            if len(self._recent) >= self.MERGE_AT:
                self._merge()


@dataclass
class PackerStats:
    """Counters and per-stage seconds (summed over the threads that ran each stage)."""

    bytes_in: int = 0
    chunks: int = 0
    new_chunks: int = 0
    new_bytes: int = 0  # plaintext bytes of new chunks
    stored_bytes: int = 0  # encrypted blob bytes in packs
    packs: int = 0
    shard_bytes: int = 0  # container bytes handed to stores
    stages: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def timed(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stages[stage] = self.stages.get(stage, 0.0) + seconds


class Packer:
    """Chunks, deduplicates, seals and stores; reports each stored pack to ``on_pack``.

    ``stores[i]`` receives shard ``i`` of every pack; or ``stores`` is a StorePack
    that places and uploads each pack itself.
    ``on_pack`` is called (from the calling thread) once every shard of a pack is
    durable; only then may anything refer to the pack's chunks.
    """

    def __init__(
        self,
        keys: NodeKeys,
        code: ErasureCode,
        stores: Sequence[ShareStore] | StorePack,
        loop: asyncio.AbstractEventLoop,
        *,
        random_bytes: RandomBytes,
        on_pack: Callable[[PackRecord], None],
        known: ChunkSet | None = None,
        threads: int = 0,
        target_size: int = 16 << 20,
        compress: bool = True,
    ) -> None:
        if callable(stores):
            self._store_pack = stores
        else:
            if len(stores) != code.n:
                raise InputError(
                    f"{code.n} stores needed for {code.k}-of-{code.n}, got {len(stores)}"
                )
            self._stores = list(stores)
            self._store_pack = self._put_all
        self._keys = keys
        self._code = code
        self._loop = loop
        self._random = random_bytes
        self._on_pack = on_pack
        self._known: ChunkSet = set() if known is None else known
        self._compress = compress
        self._seal_pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="peerbak-compress") if threads else None
        )
        self._shard_pool = ThreadPoolExecutor(1, thread_name_prefix="peerbak-shard")
        # A pack buffer is busy until its shards are stored (data shards are views of it).
        self._writers = [PackWriter(keys.data_key, target_size) for _ in range(WRITERS)]
        self._jobs: list[Future[tuple[PackRecord, Future[None]]] | None] = [None] * WRITERS
        self._parity: list[list[bytearray]] = [[] for _ in range(WRITERS)]
        self._active = 0
        self._pending: deque[Future[SealedBlob]] = deque()
        self._local = threading.local()
        self.stats = PackerStats()

    # -- input ------------------------------------------------------------------------------

    def add_stream(
        self,
        stream: chunker.Readable,
        blob_type: BlobType = BlobType.DATA,
        size_hint: int | None = None,
    ) -> list[ChunkId]:
        """Chunk a stream to its end; the chunk ids in order describe its contents.

        A stream expected to be small (``size_hint`` ≤ SMALL_FILE, most files) is read
        whole and cut in memory: streaming costs a 4 MiB buffer per stream, 300 times
        the work of cutting a 20 KB file. A file that grew since its size was taken is
        streamed.
        """
        if size_hint is not None and size_hint <= SMALL_FILE:
            t0 = time.perf_counter()
            head = chunker.read_up_to(stream, size_hint + 1)
            self.stats.timed("read+chunk", time.perf_counter() - t0)
            if len(head) <= size_hint:
                return [self.add_chunk(view, blob_type) for view in chunker.chunk_bytes(head)]
            stream = chunker.Prefixed(head, stream)
        ids: list[ChunkId] = []
        it = chunker.chunks(stream)
        while True:
            t0 = time.perf_counter()
            view = next(it, None)
            if view is None:
                self.stats.timed("read+chunk", time.perf_counter() - t0)
                return ids
            # The view dies with the next chunk: a pool needs a copy, sealing here does not.
            data = view if self._seal_pool is None else bytes(view)
            self.stats.timed("read+chunk", time.perf_counter() - t0)
            ids.append(self.add_chunk(data, blob_type))

    def add_chunk(self, data: bytes | memoryview, blob_type: BlobType = BlobType.DATA) -> ChunkId:
        """Hash one chunk and, if new, queue it for compression. Returns its id."""
        t0 = time.perf_counter()
        ident = crypto.chunk_id(self._keys.chunk_id_key, data)
        self.stats.timed("hash", time.perf_counter() - t0)
        self.stats.bytes_in += len(data)
        self.stats.chunks += 1
        if ident in self._known:
            return ident
        self._known.add(ident)
        self.stats.new_chunks += 1
        self.stats.new_bytes += len(data)
        if self._seal_pool is None:
            self._seal_here(blob_type, ident, data)
            return ident
        self._pending.append(self._seal_pool.submit(self._prepare, blob_type, ident, data))
        while len(self._pending) > WINDOW:
            t0 = time.perf_counter()
            blob = self._pending.popleft().result()
            self.stats.timed("wait for compress", time.perf_counter() - t0)
            self._append(blob)
        return ident

    def flush(self) -> None:
        """Seal the open pack and wait until every pack is stored (or raise its error)."""
        while self._pending:
            self._append(self._pending.popleft().result())
        if self._writers[self._active].count:
            self._rotate()
        for i in range(1, WRITERS + 1):  # oldest first
            self._finish((self._active + i) % WRITERS)

    def close(self) -> None:
        """Stop the threads and let go of the pack and parity buffers (tens of MiB)."""
        for fut in self._pending:
            fut.cancel()
        if self._seal_pool is not None:
            self._seal_pool.shutdown(wait=True, cancel_futures=True)
        self._shard_pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
        self._writers = []
        self._parity = []

    # -- sealing (in the calling thread, or the pool's) -------------------------------------

    def _plain(self, blob_type: BlobType, ident: ChunkId, data: bytes | memoryview) -> PlainBlob:
        """Compressed where it pays, with this thread's own compressor."""
        compressor: zstandard.ZstdCompressor | None = None
        if self._compress:
            compressor = getattr(self._local, "zstd", None)
            if compressor is None:
                compressor = self._local.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        return prepare_blob(blob_type, ident, data, compressor)

    def _seal_here(self, blob_type: BlobType, ident: ChunkId, data: bytes | memoryview) -> None:
        """Compress, then encrypt straight into the open pack (no copy of the ciphertext)."""
        t0 = time.perf_counter()
        blob = self._plain(blob_type, ident, data)
        t1 = time.perf_counter()
        writer = self._writers[self._active]
        self.stats.stored_bytes += writer.add(blob, self._random(crypto.NONCE_LEN))
        self.stats.timed("compress", t1 - t0)
        self.stats.timed("encrypt", time.perf_counter() - t1)
        if writer.full:
            self._rotate()

    def _prepare(self, blob_type: BlobType, ident: ChunkId, data: bytes | memoryview) -> SealedBlob:
        """A pool thread's share: the blob compressed and encrypted, for :meth:`_append`."""
        t0 = time.perf_counter()
        blob = self._plain(blob_type, ident, data)
        t1 = time.perf_counter()
        sealed = SealedBlob.of(self._keys.data_key, blob, self._random(crypto.NONCE_LEN))
        self.stats.timed("compress", t1 - t0)
        self.stats.timed("encrypt", time.perf_counter() - t1)
        return sealed

    # -- packs ----------------------------------------------------------------------------

    def _append(self, blob: SealedBlob) -> None:
        """Copy into the active pack; seal it when full."""
        writer = self._writers[self._active]
        t0 = time.perf_counter()
        self.stats.stored_bytes += writer.add_sealed(blob)
        self.stats.timed("append", time.perf_counter() - t0)
        if writer.full:
            self._rotate()

    def _rotate(self) -> None:
        """Seal the active pack, hand it to the shard thread, move to the next buffer."""
        slot = self._active
        pack_id, view, entries = self._writers[slot].seal(self._random(crypto.NONCE_LEN))
        self._jobs[slot] = self._shard_pool.submit(self._code_pack, slot, pack_id, view, entries)
        self._active = (slot + 1) % WRITERS
        self._finish(self._active)

    def _finish(self, slot: int) -> None:
        """Wait until the pack in ``slot`` is stored; then report it and free its buffer."""
        job = self._jobs[slot]
        if job is None:
            return
        t0 = time.perf_counter()
        record, put = job.result()
        put.result()
        self.stats.timed("wait for store", time.perf_counter() - t0)
        self._jobs[slot] = None
        self.stats.packs += 1
        self._on_pack(record)

    def _code_pack(
        self, slot: int, pack_id: PackId, view: memoryview, entries: list[BlobEntry]
    ) -> tuple[PackRecord, Future[None]]:
        """Shard thread: code the pack and start storing its shards; coding the next pack
        overlaps the storing of this one."""
        t0 = time.perf_counter()
        record, shards = make_shards(self._code, pack_id, view, entries, self._parity[slot])
        self.stats.timed("erasure+merkle", time.perf_counter() - t0)
        self.stats.shard_bytes += sum(s.header.size for s in shards)
        put = asyncio.run_coroutine_threadsafe(self._timed_store(record, shards), self._loop)
        return record, put

    async def _timed_store(self, record: PackRecord, shards: list[Shard]) -> None:
        t0 = time.perf_counter()
        await self._store_pack(record, shards)
        self.stats.timed("store", time.perf_counter() - t0)

    async def _put_all(self, record: PackRecord, shards: list[Shard]) -> None:
        await asyncio.gather(
            *(
                store.put(ShardKey(record.pack_id, i), shard)
                for i, (store, shard) in enumerate(zip(self._stores, shards, strict=True))
            )
        )
