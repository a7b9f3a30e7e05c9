"""The write half of the data path: streams in, shards out, on both cores.

A :class:`Packer` runs in one worker thread of its own (it blocks on files and on
uploads) and keeps three things busy at once:

- the calling thread reads and chunks a stream and hashes each chunk (chunk ids),
- a pool of sealing threads compresses and encrypts new chunks (zstd and libsodium
  release the GIL, so these really run in parallel),
- one shard thread erasure-codes each sealed pack, builds the shard containers with
  their Merkle roots, and hands them to the stores on the event loop.

Two pack buffers alternate: one fills while the other is being sharded and uploaded,
so memory stays at a few packs whatever the size of the input.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

import zstandard

from peerbak import chunker, crypto
from peerbak.codec import ErasureCode
from peerbak.crypto import BlobType, NodeKeys, RandomBytes
from peerbak.errors import InputError
from peerbak.ids import ChunkId, PackId, ShardKey
from peerbak.pack import BlobEntry, PackRecord, PackWriter, SealedBlob, make_shards, seal_blob
from peerbak.ports import ShareStore

#: Chunks being sealed at once; bounds memory to WINDOW × 4 MiB of plaintext.
WINDOW: Final = 8
ZSTD_LEVEL: Final = 3


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

    ``stores[i]`` receives shard ``i`` of every pack (placement picks the stores).
    ``on_pack`` is called from the shard thread once every shard of a pack is durable;
    only then may anything refer to the pack's chunks.
    """

    def __init__(
        self,
        keys: NodeKeys,
        code: ErasureCode,
        stores: Sequence[ShareStore],
        loop: asyncio.AbstractEventLoop,
        *,
        random_bytes: RandomBytes,
        on_pack: Callable[[PackRecord], None],
        known: set[ChunkId] | None = None,
        threads: int = 2,
        target_size: int = 16 << 20,
        compress: bool = True,
    ) -> None:
        if len(stores) != code.n:
            raise InputError(f"{code.n} stores needed for {code.k}-of-{code.n}, got {len(stores)}")
        self._keys = keys
        self._code = code
        self._stores = list(stores)
        self._loop = loop
        self._random = random_bytes
        self._on_pack = on_pack
        self._known: set[ChunkId] = set() if known is None else known
        self._compress = compress
        self._seal_pool = ThreadPoolExecutor(threads, thread_name_prefix="peerbak-seal")
        self._shard_pool = ThreadPoolExecutor(1, thread_name_prefix="peerbak-shard")
        self._writers = [PackWriter(keys.data_key, target_size) for _ in range(2)]
        self._jobs: list[Future[None] | None] = [None, None]
        self._active = 0
        self._pending: deque[Future[SealedBlob]] = deque()
        self._local = threading.local()
        self.stats = PackerStats()

    # -- input ------------------------------------------------------------------------------

    def add_stream(
        self, stream: chunker.Readable, blob_type: BlobType = BlobType.DATA
    ) -> list[ChunkId]:
        """Chunk a stream to its end; the chunk ids in order describe its contents."""
        ids: list[ChunkId] = []
        it = chunker.chunks(stream)
        while True:
            t0 = time.perf_counter()
            view = next(it, None)
            if view is None:
                self.stats.timed("read+chunk", time.perf_counter() - t0)
                return ids
            data = bytes(view)  # the view dies with the next chunk
            self.stats.timed("read+chunk", time.perf_counter() - t0)
            ids.append(self.add_chunk(data, blob_type))

    def add_chunk(self, data: bytes, blob_type: BlobType = BlobType.DATA) -> ChunkId:
        """Hash one chunk and, if new, queue it for sealing. Returns its id."""
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
        nonce = self._random(crypto.NONCE_LEN)
        self._pending.append(self._seal_pool.submit(self._seal, blob_type, ident, data, nonce))
        while len(self._pending) > WINDOW:
            self._append(self._pending.popleft().result())
        return ident

    def flush(self) -> None:
        """Seal the open pack and wait until every pack is stored (or raise its error)."""
        while self._pending:
            self._append(self._pending.popleft().result())
        if self._writers[self._active].count:
            self._rotate()
        for job in self._jobs:
            if job is not None:
                job.result()
        self._jobs = [None, None]

    def close(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._seal_pool.shutdown(wait=True, cancel_futures=True)
        self._shard_pool.shutdown(wait=True, cancel_futures=True)

    # -- sealing threads ----------------------------------------------------------------

    def _seal(self, blob_type: BlobType, ident: ChunkId, data: bytes, nonce: bytes) -> SealedBlob:
        t0 = time.perf_counter()
        compressor: zstandard.ZstdCompressor | None = None
        if self._compress:
            compressor = getattr(self._local, "zstd", None)
            if compressor is None:
                compressor = self._local.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        blob = seal_blob(self._keys.data_key, blob_type, ident, data, nonce, compressor)
        self.stats.timed("compress+encrypt", time.perf_counter() - t0)
        return blob

    # -- packs ----------------------------------------------------------------------------

    def _append(self, blob: SealedBlob) -> None:
        writer = self._writers[self._active]
        writer.add(blob)
        self.stats.stored_bytes += len(blob.data)
        if writer.full:
            self._rotate()

    def _rotate(self) -> None:
        """Seal the active pack, hand it to the shard thread, switch to the other buffer."""
        writer = self._writers[self._active]
        pack_id, view, entries = writer.seal(self._random(crypto.NONCE_LEN))
        self._jobs[self._active] = self._shard_pool.submit(self._store_pack, pack_id, view, entries)
        self._active ^= 1
        previous = self._jobs[self._active]
        if previous is not None:  # the other buffer is still being sharded: wait for it
            t0 = time.perf_counter()
            previous.result()
            self.stats.timed("wait for shards", time.perf_counter() - t0)
            self._jobs[self._active] = None

    def _store_pack(self, pack_id: PackId, view: memoryview, entries: list[BlobEntry]) -> None:
        t0 = time.perf_counter()
        record, containers = make_shards(self._code, pack_id, view, entries)
        t1 = time.perf_counter()
        self.stats.timed("erasure+merkle", t1 - t0)
        put = asyncio.run_coroutine_threadsafe(self._put_all(pack_id, containers), self._loop)
        put.result()
        self.stats.timed("store", time.perf_counter() - t1)
        self.stats.packs += 1
        self.stats.shard_bytes += sum(len(c) for c in containers)
        self._on_pack(record)

    async def _put_all(self, pack_id: PackId, containers: list[bytes]) -> None:
        await asyncio.gather(
            *(
                store.put(ShardKey(pack_id, i), shard)
                for i, (store, shard) in enumerate(zip(self._stores, containers, strict=True))
            )
        )
