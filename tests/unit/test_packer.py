"""The Packer seals chunks in the reading thread by default, or in a pool when asked:
both must store exactly what came in, dedupe alike and leave nothing behind."""

from __future__ import annotations

import asyncio
import io
import os
import random

import pytest

from peerbak.adapters.store import MemoryShareStore
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import NodeKeys
from peerbak.core.ids import ChunkId
from peerbak.core.pack import PackRecord
from peerbak.services.fetch import FetchReport, fetch_pack, read_blobs
from peerbak.services.packer import Packer


def _inputs() -> list[bytes]:
    rnd = random.Random(5)
    big = rnd.randbytes(3 << 20)  # streamed, cut into several chunks (views of one buffer)
    text = b" ".join(rnd.choice([b"lorem", b"ipsum", b"dolor"]) for _ in range(200_000))
    small = [rnd.randbytes(rnd.randint(1, 9_000)) for _ in range(40)]
    return [big, text, *small, big, small[3]]  # the repeats must dedupe


@pytest.mark.parametrize("threads", [0, 2])
def test_packer_stores_what_came_in(threads: int) -> None:
    keys = NodeKeys.derive(bytes(range(32)))
    inputs = _inputs()
    records: list[PackRecord] = []
    files: list[list[ChunkId]] = []

    async def run() -> dict[bytes, bytes]:
        stores = [MemoryShareStore() for _ in range(5)]
        packer = Packer(
            keys,
            ErasureCode(3, 5),
            stores,
            asyncio.get_running_loop(),
            random_bytes=os.urandom,
            on_pack=records.append,
            threads=threads,
            target_size=1 << 20,
        )

        def walk() -> None:
            for i, data in enumerate(inputs):
                # Every other input is streamed (no size hint), the rest read whole.
                hint = None if i % 2 == 0 else len(data)
                files.append(packer.add_stream(io.BytesIO(data), size_hint=hint))
            packer.flush()

        try:
            await asyncio.to_thread(walk)
        finally:
            packer.close()
        assert packer.stats.new_chunks < packer.stats.chunks
        chunks: dict[bytes, bytes] = {}
        for record in records:
            pack = await fetch_pack(record, stores, FetchReport())
            for entry, plain in read_blobs(keys, pack, record):
                assert bytes(entry.ident) not in chunks  # stored once
                chunks[bytes(entry.ident)] = plain
        return chunks

    chunks = asyncio.run(run())
    assert len(records) >= 3  # several packs, so buffers were reused
    for data, ids in zip(inputs, files, strict=True):
        assert b"".join(chunks[bytes(i)] for i in ids) == data
