"""Keys, chunk ids and authenticated encryption, all derived from one 32-byte node secret.

The node secret is the only thing a user must keep (as the recovery key): every
other key derives from it with a blake3 ``derive_key`` context, one per purpose, so
a node rebuilt from its recovery key has the same identity, the same chunk ids and
can read its old packs. Randomness (nonces) is passed in, never drawn here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import blake3
import nacl.bindings
import nacl.signing
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib

from peerbak.core.errors import InputError, IntegrityError
from peerbak.core.ids import ChunkId, NodeId

#: Format version of everything this module writes; bound into every AAD.
FORMAT_VERSION: Final = 1
SECRET_LEN: Final = 32
KEY_LEN: Final = 32
NONCE_LEN: Final = 24
TAG_LEN: Final = 16
#: Bytes an encrypted blob adds to its plaintext: nonce before, tag after.
BLOB_OVERHEAD: Final = NONCE_LEN + TAG_LEN

#: One blake3 ``derive_key`` context per purpose. Listed in protocol/storage-format.md;
#: never change one (it would change every key derived with it).
CONTEXTS: Final[dict[str, str]] = {
    "chunk-id": "peerbak 2026-11-25 chunk-id key v1",
    "data": "peerbak 2026-11-25 data encryption key v1",
    "identity": "peerbak 2026-11-25 identity signing seed v1",
    "ssh": "peerbak 2026-11-25 ssh key seed v1",
}

#: Signature over arbitrary bytes; randomness source for nonces and secrets.
RandomBytes = Callable[[int], bytes]


class BlobType(IntEnum):
    """What an encrypted blob holds; bound into its AAD so one cannot pass for another."""

    DATA = 1  # file contents
    TREE = 2  # snapshot metadata (directory listings)
    INDEX = 4  # index objects: which pack holds which blobs (3 stays unassigned)
    PACK_HEADER = 16  # the encrypted list of a pack's blobs


class Compression(IntEnum):
    NONE = 0
    ZSTD = 1


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 32-byte subkey for ``purpose`` (a key of :data:`CONTEXTS`)."""
    if len(secret) != SECRET_LEN:
        raise InputError(f"node secret must be {SECRET_LEN} bytes, got {len(secret)}")
    digest: bytes = blake3.blake3(secret, derive_key_context=CONTEXTS[purpose]).digest()
    return digest


@dataclass(frozen=True, repr=False)
class NodeKeys:
    """Every key a node uses, derived from its secret. ``repr`` shows no key material."""

    secret: bytes
    chunk_id_key: bytes
    data_key: bytes
    identity: nacl.signing.SigningKey
    ssh_seed: bytes

    @classmethod
    def derive(cls, secret: bytes) -> NodeKeys:
        return cls(
            secret=secret,
            chunk_id_key=derive_key(secret, "chunk-id"),
            data_key=derive_key(secret, "data"),
            identity=nacl.signing.SigningKey(derive_key(secret, "identity")),
            ssh_seed=derive_key(secret, "ssh"),
        )

    @property
    def node_id(self) -> NodeId:
        """The node's id is its Ed25519 identity public key."""
        return NodeId(bytes(self.identity.verify_key))

    def __repr__(self) -> str:
        return f"NodeKeys(node={self.node_id.short})"


def chunk_id(chunk_id_key: bytes, plaintext: bytes | bytearray | memoryview) -> ChunkId:
    """Keyed blake3 of the plaintext: friends holding the packs cannot confirm a guess."""
    return ChunkId(blake3.blake3(plaintext, key=chunk_id_key).digest())


def blob_aad(blob_type: BlobType, compression: Compression, ident: bytes) -> bytes:
    """``"peerbak\\0" ‖ version ‖ type ‖ compression ‖ id(32)``: 43 bytes.

    Binding type, compression and id means a holder cannot swap two blobs, pass a tree
    for data, or make us decompress what was stored raw (borg's Horton principle).
    """
    return b"peerbak\x00" + bytes((FORMAT_VERSION, blob_type, compression)) + ident


Buffer = bytes | bytearray | memoryview


def encrypt_into(key: bytes, aad: bytes, plaintext: Buffer, nonce: bytes, out: memoryview) -> int:
    """XChaCha20-Poly1305 into ``out``: ``nonce(24) ‖ ciphertext ‖ tag(16)``; returns its length.

    Writing straight into the caller's (pack) buffer saves two copies of every chunk
    (pynacl's own allocation and the bytes it returns); libsodium runs without the GIL.
    """
    if len(nonce) != NONCE_LEN or len(key) != KEY_LEN:
        raise InputError("XChaCha20-Poly1305 needs a 24-byte nonce and a 32-byte key")
    total = len(plaintext) + BLOB_OVERHEAD
    if len(out) < total or out.readonly:
        raise InputError(f"output buffer holds {len(out)} bytes, {total} needed")
    out[:NONCE_LEN] = nonce
    clen = _ffi.new("unsigned long long *")
    rc = _lib.crypto_aead_xchacha20poly1305_ietf_encrypt(
        _ffi.from_buffer(out[NONCE_LEN:total], require_writable=True),
        clen,
        _ffi.from_buffer(plaintext),
        len(plaintext),
        aad,
        len(aad),
        _ffi.NULL,
        nonce,
        key,
    )
    if rc != 0 or clen[0] != total - NONCE_LEN:
        raise InputError("encryption failed")  # libsodium documents no failure for these sizes
    return total


def encrypt(key: bytes, aad: bytes, plaintext: Buffer, nonce: bytes) -> bytes:
    """XChaCha20-Poly1305 as new bytes: ``nonce(24) ‖ ciphertext ‖ tag(16)``."""
    out = bytearray(len(plaintext) + BLOB_OVERHEAD)
    encrypt_into(key, aad, plaintext, nonce, memoryview(out))
    return bytes(out)


def decrypt(key: bytes, aad: bytes, blob: Buffer, *, what: str, ident: str) -> bytes:
    """Inverse of :func:`encrypt`; any flipped bit or wrong key is an :class:`IntegrityError`."""
    if len(blob) < BLOB_OVERHEAD:
        raise IntegrityError(
            f"{what} {ident}: {len(blob)} bytes is shorter than any encrypted blob",
            obj=what,
            ident=ident,
            check="length",
        )
    view = memoryview(blob)
    plain = bytearray(len(view) - BLOB_OVERHEAD)
    mlen = _ffi.new("unsigned long long *")
    rc = _lib.crypto_aead_xchacha20poly1305_ietf_decrypt(
        _ffi.from_buffer(plain, require_writable=True),
        mlen,
        _ffi.NULL,
        _ffi.from_buffer(view[NONCE_LEN:]),
        len(view) - NONCE_LEN,
        aad,
        len(aad),
        bytes(view[:NONCE_LEN]),
        key,
    )
    if rc != 0:
        raise IntegrityError(
            f"{what} {ident} failed authentication (corrupted, or not encrypted with this key)",
            obj=what,
            ident=ident,
            check="aead",
        )
    return bytes(plain)
