"""Packs (encrypted blobs with a trailing encrypted header) and shard containers.

A pack is ``blob_0 ‖ … ‖ blob_{c-1} ‖ header blob ‖ trailer``. Header last, as restic
does: blobs stream into the pack as they come and nothing is rewritten when it is
sealed. The pack id is the blake3 hash of the sealed pack, checked after erasure
decoding, so a rebuilt pack is known to be exactly the one that was written.

A shard is what one holder stores: a 100-byte container header (which pack, which
index, k, n, lengths, the Merkle root of the shard data) followed by the data. The
byte layouts are in protocol/storage-format.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import blake3
import zstandard

from peerbak.core import crypto
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import BlobType, Compression
from peerbak.core.errors import InputError, IntegrityError
from peerbak.core.ids import ChunkId, PackId
from peerbak.core.merkle import root_of

#: Largest pack a reader accepts; writers seal at ``target_size`` (16 MiB) well below it.
MAX_PACK: Final = 64 << 20
#: Largest plaintext of one blob; FastCDC chunks are at most 4 MiB, trees are split below this.
MAX_BLOB_PLAIN: Final = 16 << 20
PACK_MAGIC: Final = b"PBPK"
TRAILER: Final = struct.Struct("<I4sB")  # header blob length, magic, format version
ENTRY: Final = struct.Struct("<BB32sII")  # type, compression, id, stored length, plain length
HEADER_PREFIX: Final = struct.Struct("<BI")  # format version, entry count
#: Compressed output must be at least this much smaller to be stored compressed.
_MIN_SAVING: Final = 1 / 32


@dataclass(frozen=True, slots=True)
class BlobEntry:
    """One blob of a pack, as listed in its header; ``offset`` follows from the order."""

    blob_type: BlobType
    compression: Compression
    ident: ChunkId
    offset: int
    length: int  # stored (encrypted) length, overhead included
    plain_length: int


@dataclass(frozen=True, slots=True)
class PlainBlob:
    """A chunk ready for a pack: compressed where that paid, not yet encrypted.

    Compression runs in parallel threads; encryption happens as the blob is added,
    straight into the pack buffer, so a chunk is never copied whole after compression.
    """

    blob_type: BlobType
    compression: Compression
    ident: ChunkId
    plain_length: int
    body: bytes | bytearray | memoryview

    @property
    def length(self) -> int:
        """Bytes the blob takes in a pack once encrypted."""
        return len(self.body) + crypto.BLOB_OVERHEAD


@dataclass(frozen=True, slots=True)
class SealedBlob:
    """A blob compressed and encrypted, ready to be copied into a pack."""

    blob_type: BlobType
    compression: Compression
    ident: ChunkId
    plain_length: int
    sealed: bytes  # nonce ‖ ciphertext ‖ tag

    @classmethod
    def of(cls, key: bytes, blob: PlainBlob, nonce: bytes) -> SealedBlob:
        aad = crypto.blob_aad(blob.blob_type, blob.compression, blob.ident)
        sealed = crypto.encrypt(key, aad, blob.body, nonce)
        return cls(blob.blob_type, blob.compression, blob.ident, blob.plain_length, sealed)


def prepare_blob(
    blob_type: BlobType,
    ident: ChunkId,
    plaintext: bytes | bytearray | memoryview,
    compressor: zstandard.ZstdCompressor | None,
) -> PlainBlob:
    """Compress when it saves at least 1/32. Thread-safe given a compressor per thread."""
    if len(plaintext) > MAX_BLOB_PLAIN:
        raise InputError(f"blob of {len(plaintext)} bytes exceeds {MAX_BLOB_PLAIN}")
    if compressor is not None:
        packed: bytes = compressor.compress(plaintext)
        if len(packed) < len(plaintext) * (1 - _MIN_SAVING):
            return PlainBlob(blob_type, Compression.ZSTD, ident, len(plaintext), packed)
    return PlainBlob(blob_type, Compression.NONE, ident, len(plaintext), plaintext)


def open_blob(
    data_key: bytes, chunk_id_key: bytes, entry: BlobEntry, stored: bytes | bytearray | memoryview
) -> bytes:
    """Decrypt, decompress and check the plaintext's keyed hash against the blob's id."""
    ident = entry.ident.hex()
    if len(stored) != entry.length:
        raise IntegrityError(
            f"chunk {ident}: {len(stored)} bytes, header says {entry.length}",
            obj="chunk",
            ident=ident,
            check="length",
        )
    aad = crypto.blob_aad(entry.blob_type, entry.compression, entry.ident)
    body = crypto.decrypt(data_key, aad, stored, what="chunk", ident=ident)
    if entry.compression == Compression.ZSTD:
        try:
            # zstandard ignores max_output_size when the frame declares its size: check it.
            declared = zstandard.frame_content_size(body)
            if declared > entry.plain_length:
                raise IntegrityError(
                    f"chunk {ident}: compressed frame claims {declared} bytes, "
                    f"header says {entry.plain_length}",
                    obj="chunk",
                    ident=ident,
                    check="length",
                )
            plain: bytes = zstandard.ZstdDecompressor().decompress(
                body, max_output_size=entry.plain_length
            )
        except zstandard.ZstdError as exc:
            raise IntegrityError(
                f"chunk {ident} does not decompress: {exc}", obj="chunk", ident=ident, check="zstd"
            ) from None
    else:
        plain = body
    if len(plain) != entry.plain_length or crypto.chunk_id(chunk_id_key, plain) != entry.ident:
        raise IntegrityError(
            f"chunk {ident}: contents do not match its id", obj="chunk", ident=ident, check="id"
        )
    return plain


class PackWriter:
    """Appends sealed blobs into one reusable buffer and seals packs of ≈ ``target_size``.

    The buffer is allocated once and reused for every pack: allocating tens of MiB per
    pack costs more than the copying (glibc hands big blocks back to the OS on free).
    A sealed pack is a view into the buffer, valid until the next :meth:`add`.
    """

    def __init__(self, data_key: bytes, target_size: int = 16 << 20) -> None:
        # Blobs up to the target, one more blob, a header no larger than the target: ≤ MAX_PACK.
        if not 1 <= target_size <= MAX_PACK // 4:
            raise InputError(f"pack target size must be 1..{MAX_PACK // 4} bytes")
        self._key = data_key
        self.target_size = target_size
        # Room for the target plus one largest chunk; a larger blob (a big tree) grows it.
        self._buf = bytearray(target_size + (4 << 20) + (64 << 10))
        self._used = 0
        self._entries: list[BlobEntry] = []

    def __len__(self) -> int:
        return self._used

    @property
    def count(self) -> int:
        return len(self._entries)

    @property
    def full(self) -> bool:
        """Time to seal: blobs plus the header they need reach the target size."""
        return self._used + ENTRY.size * self.count >= self.target_size

    def _reserve(self, size: int) -> None:
        """Grow by replacing, never resizing: an earlier pack's view may still be alive."""
        if size > len(self._buf):
            bigger = bytearray(size + (1 << 20))
            bigger[: self._used] = self._buf[: self._used]
            self._buf = bigger

    def add(self, blob: PlainBlob, nonce: bytes) -> int:
        """Encrypt ``blob`` into the pack; returns the bytes it took."""
        size = blob.length
        if self.full:
            raise InputError("pack is full: seal it before adding more")
        self._reserve(self._used + size)
        aad = crypto.blob_aad(blob.blob_type, blob.compression, blob.ident)
        with memoryview(self._buf) as out:
            crypto.encrypt_into(self._key, aad, blob.body, nonce, out[self._used :])
        self._entries.append(
            BlobEntry(
                blob.blob_type, blob.compression, blob.ident, self._used, size, blob.plain_length
            )
        )
        self._used += size
        return size

    def add_sealed(self, blob: SealedBlob) -> int:
        """Copy a blob already encrypted (by another thread) into the pack."""
        size = len(blob.sealed)
        if self.full:
            raise InputError("pack is full: seal it before adding more")
        self._reserve(self._used + size)
        self._buf[self._used : self._used + size] = blob.sealed
        self._entries.append(
            BlobEntry(
                blob.blob_type, blob.compression, blob.ident, self._used, size, blob.plain_length
            )
        )
        self._used += size
        return size

    def seal(self, nonce: bytes) -> tuple[PackId, memoryview, list[BlobEntry]]:
        """Write the encrypted header and trailer; return the pack and reset for the next."""
        if not self._entries:
            raise InputError("cannot seal an empty pack")
        header = bytearray(HEADER_PREFIX.pack(crypto.FORMAT_VERSION, len(self._entries)))
        for e in self._entries:
            header += ENTRY.pack(e.blob_type, e.compression, e.ident, e.length, e.plain_length)
        aad = crypto.blob_aad(BlobType.PACK_HEADER, Compression.NONE, bytes(32))
        sealed = crypto.encrypt(self._key, aad, bytes(header), nonce)
        end = self._used + len(sealed) + TRAILER.size
        self._reserve(end)
        self._buf[self._used : self._used + len(sealed)] = sealed
        self._buf[self._used + len(sealed) : end] = TRAILER.pack(
            len(sealed), PACK_MAGIC, crypto.FORMAT_VERSION
        )
        view = memoryview(self._buf)[:end]
        pack_id = PackId(blake3.blake3(view).digest())
        entries = self._entries
        self._entries = []
        self._used = 0
        return pack_id, view, entries


def pack_id_of(pack: bytes | bytearray | memoryview) -> PackId:
    return PackId(blake3.blake3(pack).digest())


def read_pack_header(data_key: bytes, pack: bytes | bytearray | memoryview) -> list[BlobEntry]:
    """Parse and authenticate a pack's header; every length is checked before use."""
    view = memoryview(pack)
    ident = "(header)"
    if not TRAILER.size + crypto.BLOB_OVERHEAD <= len(view) <= MAX_PACK:
        raise IntegrityError(
            f"pack of {len(view)} bytes is outside the valid sizes", obj="pack", check="length"
        )
    header_len, magic, version = TRAILER.unpack(view[-TRAILER.size :])
    if magic != PACK_MAGIC:
        raise IntegrityError("not a peerbak pack (bad magic)", obj="pack", check="magic")
    if version != crypto.FORMAT_VERSION:
        raise IntegrityError(
            f"pack format {version} is not known to this version of peerbak",
            obj="pack",
            check="version",
        )
    body_end = len(view) - TRAILER.size
    if not crypto.BLOB_OVERHEAD + HEADER_PREFIX.size <= header_len <= body_end:
        raise IntegrityError(
            f"pack header length {header_len} is impossible", obj="pack", check="length"
        )
    aad = crypto.blob_aad(BlobType.PACK_HEADER, Compression.NONE, bytes(32))
    header = crypto.decrypt(
        data_key, aad, view[body_end - header_len : body_end], what="pack header", ident=ident
    )
    version, count = HEADER_PREFIX.unpack_from(header)
    if version != crypto.FORMAT_VERSION or len(header) != HEADER_PREFIX.size + count * ENTRY.size:
        raise IntegrityError("pack header is malformed", obj="pack", check="header")
    entries = []
    offset = 0
    blobs_end = body_end - header_len
    for i in range(count):
        kind, comp, raw_id, length, plain = ENTRY.unpack_from(
            header, HEADER_PREFIX.size + i * ENTRY.size
        )
        try:
            blob_type, compression = BlobType(kind), Compression(comp)
        except ValueError:
            raise IntegrityError(
                f"pack header entry {i} has unknown type {kind} or compression {comp}",
                obj="pack",
                check="header",
            ) from None
        if (
            blob_type == BlobType.PACK_HEADER
            or length < crypto.BLOB_OVERHEAD
            or plain > MAX_BLOB_PLAIN
            or offset + length > blobs_end
        ):
            raise IntegrityError(
                f"pack header entry {i} is out of bounds", obj="pack", check="header"
            )
        entries.append(BlobEntry(blob_type, compression, ChunkId(raw_id), offset, length, plain))
        offset += length
    if offset != blobs_end:
        raise IntegrityError(
            "pack header does not account for every byte", obj="pack", check="header"
        )
    return entries


# --- shard container -----------------------------------------------------------------------

SHARD_MAGIC: Final = b"PBSH"
_SHARD_FIELDS: Final = struct.Struct("<4sBBBB32sQI32s")
SHARD_CHECK_LEN: Final = 16
SHARD_HEADER_LEN: Final = _SHARD_FIELDS.size + SHARD_CHECK_LEN  # 100
MAX_N: Final = 32


@dataclass(frozen=True, slots=True)
class ShardHeader:
    """The 100-byte header before a shard's data. See storage-format.md, "Shard container"."""

    pack_id: PackId
    index: int
    k: int
    n: int
    pack_length: int
    shard_length: int
    root: bytes

    def to_bytes(self) -> bytes:
        fields = _SHARD_FIELDS.pack(
            SHARD_MAGIC,
            crypto.FORMAT_VERSION,
            self.k,
            self.n,
            self.index,
            self.pack_id,
            self.pack_length,
            self.shard_length,
            self.root,
        )
        return fields + blake3.blake3(fields).digest(SHARD_CHECK_LEN)

    @property
    def size(self) -> int:
        """Bytes of the whole container: header and data."""
        return SHARD_HEADER_LEN + self.shard_length

    @classmethod
    def parse(cls, raw: bytes | bytearray | memoryview) -> ShardHeader:
        """Parse and check the header alone; the data is checked by :func:`verify_shard`."""
        if len(raw) < SHARD_HEADER_LEN:
            raise IntegrityError(
                f"shard of {len(raw)} bytes is shorter than its header", obj="shard", check="length"
            )
        view = memoryview(raw)[:SHARD_HEADER_LEN]
        fields = view[: _SHARD_FIELDS.size]
        magic, version, k, n, index, pack_id, pack_length, shard_length, root = (
            _SHARD_FIELDS.unpack(fields)
        )
        ident = f"{bytes(pack_id).hex()}.{index}"
        if magic != SHARD_MAGIC:
            raise IntegrityError("not a peerbak shard (bad magic)", obj="shard", check="magic")
        if blake3.blake3(fields).digest(SHARD_CHECK_LEN) != bytes(view[_SHARD_FIELDS.size :]):
            raise IntegrityError(
                f"shard {ident}: header is corrupted", obj="shard", ident=ident, check="header"
            )
        if version != crypto.FORMAT_VERSION:
            raise IntegrityError(
                f"shard format {version} is not known to this version of peerbak",
                obj="shard",
                ident=ident,
                check="version",
            )
        if not (1 <= k < n <= MAX_N and index < n and 1 <= pack_length <= MAX_PACK):
            raise IntegrityError(
                f"shard {ident}: impossible k={k} n={n} index={index} length={pack_length}",
                obj="shard",
                ident=ident,
                check="header",
            )
        if shard_length != -(-pack_length // k):
            raise IntegrityError(
                f"shard {ident}: length {shard_length} does not fit the pack length",
                obj="shard",
                ident=ident,
                check="header",
            )
        return cls(PackId(pack_id), index, k, n, pack_length, shard_length, root)


def build_shard_header(
    pack_id: PackId,
    index: int,
    k: int,
    n: int,
    pack_length: int,
    data: bytes | bytearray | memoryview,
) -> ShardHeader:
    return ShardHeader(pack_id, index, k, n, pack_length, len(data), root_of(data))


def verify_shard(raw: bytes | bytearray | memoryview) -> tuple[ShardHeader, memoryview]:
    """Header, length and Merkle root checked: the data returned is what was written."""
    header = ShardHeader.parse(raw)
    data = memoryview(raw)[SHARD_HEADER_LEN:]
    check_shard_data(header, data)
    return header, data


def check_shard_data(header: ShardHeader, data: bytes | bytearray | memoryview) -> None:
    """The data's length and Merkle root are the ones its header declares."""
    ident = f"{header.pack_id.hex()}.{header.index}"
    if len(data) != header.shard_length:
        raise IntegrityError(
            f"shard {ident}: {len(data)} data bytes, header says {header.shard_length}",
            obj="shard",
            ident=ident,
            check="length",
        )
    if root_of(data) != header.root:
        raise IntegrityError(
            f"shard {ident}: data does not match its Merkle root",
            obj="shard",
            ident=ident,
            check="merkle-root",
        )


# --- a pack's record and its shards ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackRecord:
    """What the owner keeps of a stored pack: enough to fetch, check and read it back.

    ``roots[i]`` is shard i's Merkle root, recorded before upload: a holder's answer is
    checked against it, never against anything the holder says.
    """

    pack_id: PackId
    k: int
    n: int
    length: int
    roots: tuple[bytes, ...]
    entries: tuple[BlobEntry, ...]

    def header(self, index: int) -> ShardHeader:
        shard_length = -(-self.length // self.k)
        return ShardHeader(
            self.pack_id, index, self.k, self.n, self.length, shard_length, self.roots[index]
        )


@dataclass(frozen=True, slots=True)
class Shard:
    """A shard as stores take it: header and data apart, so data can be a zero-copy view."""

    header: ShardHeader
    data: bytes | bytearray | memoryview

    @property
    def key_text(self) -> str:
        return f"{self.header.pack_id.hex()}.{self.header.index}"

    def to_bytes(self) -> bytes:
        """The container as stored on disk: header then data."""
        return self.header.to_bytes() + self.data

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview) -> Shard:
        """Parse and verify a whole container (header, length, Merkle root)."""
        header, data = verify_shard(raw)
        return cls(header, data)

    def verify(self) -> None:
        """Length and Merkle root of the data against the header."""
        check_shard_data(self.header, self.data)


def make_shards(
    code: ErasureCode,
    pack_id: PackId,
    pack: memoryview,
    entries: list[BlobEntry],
    parity: list[bytearray] | None = None,
) -> tuple[PackRecord, list[Shard]]:
    """Erasure-code a sealed pack into ``n`` shards and its record.

    Data shards are views of ``pack`` (only a padded last one is copied); parity goes
    into ``parity`` (m bytearrays the caller keeps from pack to pack; one too small is
    replaced in the list), so coding a pack allocates nothing pack-sized.
    """
    size = code.shard_length(len(pack))
    if parity is None:
        parity = []
    while len(parity) < code.m:
        parity.append(bytearray())
    for i in range(code.m):
        if len(parity[i]) < size:
            parity[i] = bytearray(size)
    outs = [memoryview(buf)[:size] for buf in parity[: code.m]]
    datas = code.encode(pack, parity_out=outs)
    shards = []
    for index, data in enumerate(datas):
        shards.append(
            Shard(build_shard_header(pack_id, index, code.k, code.n, len(pack), data), data)
        )
    roots = tuple(shard.header.root for shard in shards)
    record = PackRecord(pack_id, code.k, code.n, len(pack), roots, tuple(entries))
    return record, shards
