"""Typed 32-byte identifiers and their text forms.

Ids cross trust boundaries (the wire, file names, the CLI), so parsing is strict:
exactly 64 lowercase hex digits, nothing that could ever name a path. A node id is
also shown in base32 (52 characters) where people read it.
"""

from __future__ import annotations

import base64
import re
from typing import Self

from peerbak.core.errors import InputError

ID_LEN = 32
_HEX_RE = re.compile(r"[0-9a-f]{64}")
_B32_RE = re.compile(r"[a-z2-7]{52}")


class _Id(bytes):
    """32 raw bytes with a type; subclasses keep chunk, pack and node ids apart."""

    __slots__ = ()
    kind: str = "id"

    def __new__(cls, raw: bytes) -> Self:
        if len(raw) != ID_LEN:
            raise InputError(f"{cls.kind} id must be {ID_LEN} bytes, got {len(raw)}")
        return super().__new__(cls, raw)

    @classmethod
    def from_hex(cls, text: str) -> Self:
        """Parse the canonical text form; anything else (case, length, '/', NUL) is refused."""
        if not isinstance(text, str) or _HEX_RE.fullmatch(text) is None:
            shown = repr(text)[:80]
            raise InputError(f"not a {cls.kind} id (64 lowercase hex digits): {shown}")
        return cls(bytes.fromhex(text))

    @property
    def text(self) -> str:
        """Canonical text form: 64 lowercase hex digits. Safe as a file name."""
        return self.hex()

    @property
    def short(self) -> str:
        """First 12 hex digits, for people (never for lookups)."""
        return self.hex()[:12]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()[:16]}…)"

    def __str__(self) -> str:
        return self.hex()


class NodeId(_Id):
    """A node's Ed25519 identity public key."""

    __slots__ = ()
    kind = "node"

    @property
    def b32(self) -> str:
        """Lowercase unpadded base32 (52 characters), the form people compare."""
        return base64.b32encode(self).decode("ascii").rstrip("=").lower()

    @classmethod
    def from_b32(cls, text: str) -> Self:
        if not isinstance(text, str) or _B32_RE.fullmatch(text) is None:
            raise InputError(f"not a node id (52 base32 characters): {repr(text)[:80]}")
        return cls(base64.b32decode(text.upper() + "====")[:ID_LEN])


class ChunkId(_Id):
    """Keyed blake3 of a chunk's plaintext: equal contents, equal id, within one node only."""

    __slots__ = ()
    kind = "chunk"


class PackId(_Id):
    """blake3 of a sealed pack's bytes: the end-to-end check after erasure decoding."""

    __slots__ = ()
    kind = "pack"


class ShardKey:
    """One shard: a pack id and the shard's index (0 ≤ index < n ≤ 32)."""

    __slots__ = ("index", "pack")
    MAX_INDEX = 31

    def __init__(self, pack: PackId, index: int) -> None:
        if not isinstance(index, int) or not 0 <= index <= self.MAX_INDEX:
            raise InputError(f"shard index must be 0..{self.MAX_INDEX}, got {index!r}")
        self.pack = pack
        self.index = index

    @property
    def text(self) -> str:
        """``<pack hex>.<index>``: the shard's file name in a store."""
        return f"{self.pack.hex()}.{self.index}"

    @classmethod
    def from_text(cls, text: str) -> ShardKey:
        pack, sep, index = text.partition(".")
        if not sep or not index.isdigit() or len(index) > 2 or (len(index) > 1 and index[0] == "0"):
            raise InputError(f"not a shard name (<pack>.<index>): {repr(text)[:80]}")
        return cls(PackId.from_hex(pack), int(index))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShardKey) and (self.pack, self.index) == (other.pack, other.index)

    def __hash__(self) -> int:
        return hash((bytes(self.pack), self.index))

    def __lt__(self, other: ShardKey) -> bool:
        return (bytes(self.pack), self.index) < (bytes(other.pack), other.index)

    def __repr__(self) -> str:
        return f"ShardKey({self.pack.hex()[:16]}…, {self.index})"
