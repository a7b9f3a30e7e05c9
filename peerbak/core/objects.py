"""What a backup is made of beyond file contents: trees, snapshots, index objects and
the manifest. Encodings only; no I/O. Byte layouts in protocol/snapshots.md.

- A **tree** lists one directory (sorted by name): each entry's type, attributes and
  either its contents (chunk ids) or its subtree (a tree id). Trees are stored as TREE
  blobs, so an unchanged directory is the same blob and is stored once.
- A **snapshot** names a root tree and says when, from where and what it added.
- An **index object** (an INDEX blob) lists packs: their shape, Merkle roots, holders
  and blobs. Each backup writes one for the packs it made; together they rebuild the
  ledger's pack and blob tables on a new machine.
- The **manifest** is the root of it all: the snapshots and the packs holding index
  objects, encrypted for the owner and signed by its identity key, with a sequence
  number. Every member keeps the owner's latest one, refuses an older one (no rollback)
  and one not signed by the owner; the owner checks the same on the way back.
"""

from __future__ import annotations

import stat
import struct
from enum import IntEnum
from typing import Annotated, Final, TypeVar

import msgspec
import nacl.exceptions
import nacl.signing
import zstandard

from peerbak.core import crypto
from peerbak.core.crypto import BlobType, Compression, RandomBytes
from peerbak.core.errors import InputError, IntegrityError
from peerbak.core.ids import ChunkId, PackId
from peerbak.core.pack import MAX_BLOB_PLAIN, MAX_N, MAX_PACK, BlobEntry, PackRecord

#: Largest manifest envelope, so that it travels in one wire frame (wire.DATA_MAX).
MANIFEST_MAX: Final = 1 << 20
#: Largest manifest body once decompressed.
MANIFEST_PLAIN_MAX: Final = 64 << 20
MANIFEST_MAGIC: Final = b"PBMF"
MANIFEST_FORMAT: Final = 1
#: magic, format, owner id, sequence
_ENVELOPE: Final = struct.Struct("<4sB32sQ")
_SIG_DOMAIN: Final = b"peerbak manifest signature v1\x00"
_AAD_DOMAIN: Final = b"peerbak manifest v1\x00"
SIG_LEN: Final = 64
ID_LEN: Final = 32


class NodeType(IntEnum):
    FILE = 1
    DIR = 2
    SYMLINK = 3
    FIFO = 4
    CHARDEV = 5
    BLOCKDEV = 6


#: The file type bits (``stat.S_IF*``) of each node type: what the archiver reads from
#: ``lstat``, the restorer creates, and ``ls`` and ``mount`` show.
FILE_TYPE_BITS: Final[dict[NodeType, int]] = {
    NodeType.FILE: stat.S_IFREG,
    NodeType.DIR: stat.S_IFDIR,
    NodeType.SYMLINK: stat.S_IFLNK,
    NodeType.FIFO: stat.S_IFIFO,
    NodeType.CHARDEV: stat.S_IFCHR,
    NodeType.BLOCKDEV: stat.S_IFBLK,
}


class _Obj(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    pass


U63 = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
I64 = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
Id32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
OptId = Annotated[bytes, msgspec.Meta(max_length=32)]


class Entry(_Obj):
    """One directory entry. ``name`` is the raw file name (bytes: not every name is
    UTF-8); ``content`` concatenates the 32-byte chunk ids of a file, in order."""

    name: Annotated[bytes, msgspec.Meta(min_length=1, max_length=4096)]
    type: NodeType
    mode: Annotated[int, msgspec.Meta(ge=0, le=0o7777)]
    uid: U63
    gid: U63
    mtime_ns: I64
    size: U63 = 0
    inode: U63 = 0
    device: U63 = 0
    links: U63 = 1
    content: bytes = b""
    subtree: OptId = b""
    target: bytes = b""
    rdev: U63 = 0

    def __post_init__(self) -> None:
        if b"/" in self.name or b"\0" in self.name or self.name in (b".", b".."):
            raise ValueError(f"entry name {self.name!r} is not a single path component")
        if len(self.content) % ID_LEN:
            raise ValueError("content is not a whole number of chunk ids")
        _check_opt_id(self.subtree, "subtree")
        if (self.type is NodeType.DIR) != (len(self.subtree) == ID_LEN):
            raise ValueError("a directory, and only a directory, has a subtree")
        if self.content and self.type is not NodeType.FILE:
            raise ValueError("only a file has content")

    @property
    def chunks(self) -> list[ChunkId]:
        c = self.content
        return [ChunkId(c[i : i + ID_LEN]) for i in range(0, len(c), ID_LEN)]


def _check_opt_id(value: bytes, what: str) -> None:
    if len(value) not in (0, ID_LEN):
        raise ValueError(f"{what} must be empty or {ID_LEN} bytes, got {len(value)}")


class Tree(_Obj):
    entries: list[Entry]

    def __post_init__(self) -> None:
        names = [e.name for e in self.entries]
        if names != sorted(set(names)):
            raise ValueError("tree entries must be sorted by name, without duplicates")


class Summary(_Obj):
    """What one backup did (restic's summary line)."""

    files_new: U63 = 0
    files_changed: U63 = 0
    files_unmodified: U63 = 0
    dirs: U63 = 0
    bytes_read: U63 = 0  # file bytes read and chunked in this run
    total_files: U63 = 0
    total_bytes: U63 = 0  # logical size of the snapshot
    data_added: U63 = 0  # plaintext bytes of new chunks
    stored_added: U63 = 0  # shard bytes uploaded, redundancy included
    packs_added: U63 = 0
    errors: U63 = 0


class Snapshot(_Obj):
    id: Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
    time: float
    hostname: Annotated[str, msgspec.Meta(max_length=255)]
    paths: Annotated[list[str], msgspec.Meta(max_length=1024)]
    tags: Annotated[list[str], msgspec.Meta(max_length=64)]
    tree: Id32
    k: Annotated[int, msgspec.Meta(ge=1, le=MAX_N)]
    n: Annotated[int, msgspec.Meta(ge=2, le=MAX_N)]
    parent: Annotated[bytes, msgspec.Meta(max_length=16)] = b""
    summary: Summary = msgspec.field(default_factory=Summary)

    def __post_init__(self) -> None:
        if not self.k < self.n:
            raise ValueError(f"a snapshot's k ({self.k}) must be below its n ({self.n})")
        if len(self.parent) not in (0, 16):
            raise ValueError(f"parent must be empty or a 16-byte snapshot id, not {self.parent!r}")

    @property
    def short(self) -> str:
        return self.id.hex()[:8]


class IndexBlob(_Obj):
    type: BlobType
    compression: Compression
    id: Id32
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_PACK)]
    length: Annotated[int, msgspec.Meta(ge=crypto.BLOB_OVERHEAD, le=MAX_PACK)]
    plain_length: Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOB_PLAIN)]


class IndexPack(_Obj):
    """A pack as the index keeps it: enough to fetch, check and read it from its holders
    (``holders[i]`` holds shard i; empty when no member took it)."""

    pack: Id32
    k: Annotated[int, msgspec.Meta(ge=1, le=MAX_N)]
    n: Annotated[int, msgspec.Meta(ge=2, le=MAX_N)]
    length: Annotated[int, msgspec.Meta(ge=1, le=MAX_PACK)]
    roots: list[Id32]
    holders: list[OptId]
    blobs: list[IndexBlob]

    def __post_init__(self) -> None:
        if not self.k < self.n or len(self.roots) != self.n or len(self.holders) != self.n:
            raise ValueError("an indexed pack needs k < n and n roots and n holders")
        for holder in self.holders:
            _check_opt_id(holder, "holder")

    def record(self) -> PackRecord:
        entries = tuple(
            BlobEntry(b.type, b.compression, ChunkId(b.id), b.offset, b.length, b.plain_length)
            for b in self.blobs
        )
        return PackRecord(
            PackId(self.pack), self.k, self.n, self.length, tuple(self.roots), entries
        )

    @classmethod
    def of(cls, record: PackRecord, holders: list[bytes]) -> IndexPack:
        return cls(
            pack=bytes(record.pack_id),
            k=record.k,
            n=record.n,
            length=record.length,
            roots=list(record.roots),
            holders=holders,
            blobs=[
                IndexBlob(
                    e.blob_type, e.compression, bytes(e.ident), e.offset, e.length, e.plain_length
                )
                for e in record.entries
            ],
        )


class Index(_Obj):
    packs: list[IndexPack]


class ManifestBody(_Obj):
    """The plaintext of a manifest. ``pool`` and ``founder`` let a recovered node check
    that the roster it is handed is the pool's, not one made up by whoever answered."""

    pool: Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
    founder: Id32
    time: float
    snapshots: list[Snapshot]
    index_packs: list[IndexPack]


class Manifest(msgspec.Struct, frozen=True):
    """A checked manifest: who signed it, its sequence, its body."""

    owner: bytes
    sequence: int
    body: ManifestBody


_ENC: Final = msgspec.msgpack.Encoder()
T = TypeVar("T", bound=_Obj)


def encode(obj: _Obj) -> bytes:
    data = _ENC.encode(obj)
    if len(data) > MAX_BLOB_PLAIN:
        raise InputError(
            f"{type(obj).__name__} of {len(data)} bytes exceeds the {MAX_BLOB_PLAIN}-byte "
            "object limit"
        )
    return data


def decode(data: bytes | memoryview, kind: type[T], what: str, ident: str = "") -> T:
    """Decode an object whose bytes passed their AEAD check (so a failure is a bug or
    a format from a newer peerbak, reported as integrity, never a traceback)."""
    try:
        return msgspec.msgpack.decode(data, type=kind)
    except (msgspec.MsgspecError, ValueError) as exc:
        raise IntegrityError(
            f"{what} {ident} is malformed: {exc}", obj=what, ident=ident, check="decode"
        ) from None


# --- the manifest envelope ----------------------------------------------------------------

#  magic(4) ‖ format(1) ‖ owner(32) ‖ sequence(8, LE) ‖ nonce(24) ‖ ciphertext ‖ tag(16) ‖ sig(64)


def seal_manifest(
    keys: crypto.NodeKeys, sequence: int, body: ManifestBody, random_bytes: RandomBytes
) -> bytes:
    head = _ENVELOPE.pack(MANIFEST_MAGIC, MANIFEST_FORMAT, bytes(keys.node_id), sequence)
    plain = zstandard.ZstdCompressor(level=10).compress(_ENC.encode(body))
    sealed = head + crypto.encrypt(
        keys.data_key, _AAD_DOMAIN + head, plain, random_bytes(crypto.NONCE_LEN)
    )
    blob = sealed + keys.identity.sign(_SIG_DOMAIN + sealed).signature
    if len(blob) > MANIFEST_MAX:
        raise InputError(
            f"the manifest would take {len(blob)} bytes, over the {MANIFEST_MAX}-byte limit: "
            "forget old snapshots"
        )
    return blob


def manifest_sequence(blob: bytes) -> tuple[bytes, int]:
    """(owner, sequence) an envelope claims, its signature not checked: enough to step past
    a damaged manifest in a member's trash, never to trust one. IntegrityError if it is
    not even shaped like a manifest."""
    if not _ENVELOPE.size + crypto.NONCE_LEN + 16 + SIG_LEN <= len(blob) <= MANIFEST_MAX:
        raise IntegrityError(
            f"a manifest of {len(blob)} bytes is impossible", obj="manifest", check="length"
        )
    magic, fmt, owner, sequence = _ENVELOPE.unpack_from(blob)
    if sequence >= 1 << 63:
        raise IntegrityError(
            "a manifest sequence must stay below 2**63", obj="manifest", check="sequence"
        )
    if magic != MANIFEST_MAGIC or fmt != MANIFEST_FORMAT:
        raise IntegrityError(
            "not a peerbak manifest (magic or format)", obj="manifest", check="magic"
        )
    return bytes(owner), int(sequence)


def manifest_header(blob: bytes) -> tuple[bytes, int]:
    """(owner, sequence) of an envelope whose signature checks, else IntegrityError.

    What a holder checks before keeping an owner's manifest; it cannot read the rest.
    """
    owner, sequence = manifest_sequence(blob)
    signed, sig = blob[:-SIG_LEN], blob[-SIG_LEN:]
    try:
        nacl.signing.VerifyKey(owner).verify(_SIG_DOMAIN + signed, sig)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        raise IntegrityError(
            "the manifest's signature is not its owner's", obj="manifest", check="signature"
        ) from None
    return owner, sequence


def open_manifest(keys: crypto.NodeKeys, blob: bytes) -> Manifest:
    """Check and decrypt a manifest that must be this node's own."""
    owner, sequence = manifest_header(blob)
    if owner != bytes(keys.node_id):
        raise IntegrityError(
            f"the manifest is signed by {owner.hex()[:12]}, not by this node",
            obj="manifest",
            check="owner",
        )
    head = blob[: _ENVELOPE.size]
    plain = crypto.decrypt(
        keys.data_key,
        _AAD_DOMAIN + head,
        blob[_ENVELOPE.size : -SIG_LEN],
        what="manifest",
        ident=str(sequence),
    )
    try:
        # zstandard ignores max_output_size when the frame declares its size: check it.
        declared = zstandard.frame_content_size(plain)
        if declared > MANIFEST_PLAIN_MAX:
            raise zstandard.ZstdError(f"frame declares {declared} bytes")
        raw = zstandard.ZstdDecompressor().decompress(plain, max_output_size=MANIFEST_PLAIN_MAX)
    except zstandard.ZstdError as exc:
        raise IntegrityError(
            f"manifest {sequence}: {exc}", obj="manifest", check="decompress"
        ) from None
    return Manifest(owner, sequence, decode(raw, ManifestBody, "manifest", str(sequence)))
