"""Content-defined chunking (FastCDC 2020), streaming from any readable binary object.

Cut points depend only on content, so an insertion early in a file moves only the
chunks around it and the rest deduplicate. Sizes: minimum 256 KiB, normal 768 KiB
(the actual mean is normal + minimum ≈ 1 MiB, as the FastCDC paper's cut-point
skipping gives), maximum 4 MiB. These are part of the format: changing them changes
every chunk id, so they are fixed per format version (storage-format.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final, Protocol, cast

import pyfastcdc

MIN_SIZE: Final = 256 << 10
AVG_SIZE: Final = 768 << 10
MAX_SIZE: Final = 4 << 20


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _cdc() -> pyfastcdc.FastCDC:
    """A fresh chunker per stream: a FastCDC object must not be shared between threads."""
    return pyfastcdc.FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE, normalized_chunking=1)


def chunks(stream: Readable) -> Iterator[memoryview]:
    """Yield the chunks of ``stream`` in order.

    Memory stays at a few MAX_SIZE buffers whatever the stream's length. Each
    memoryview is valid only until the next one is requested: copy what you keep.
    """
    # Files' readinto may return None (non-blocking only); pyfastcdc's stub says int.
    for chunk in _cdc().cut_stream(cast(Any, stream)):
        data: memoryview = chunk.data
        yield data


def chunk_bytes(data: bytes | memoryview) -> Iterator[memoryview]:
    """Chunks of an in-memory buffer; views into ``data``, valid as long as it is."""
    for chunk in _cdc().cut_buf(data):
        view: memoryview = chunk.data
        yield view


def read_up_to(stream: Readable, limit: int) -> memoryview:
    """Up to ``limit`` bytes, fewer only at end of stream."""
    buf = bytearray(limit)
    view = memoryview(buf)
    got = 0
    while got < limit:
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return view[:got]


class Prefixed:
    """A stream that first replays bytes already read from it: for files that grew."""

    def __init__(self, head: memoryview, rest: Readable) -> None:
        self._head = head
        self._rest = rest

    def readinto(self, buffer: memoryview, /) -> int | None:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(buffer)
