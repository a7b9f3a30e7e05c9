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
import nacl.bindings as sodium
import nacl.exceptions
import nacl.signing

from peerbak.errors import InputError, IntegrityError
from peerbak.ids import ChunkId, NodeId

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


def encrypt(
    key: bytes, aad: bytes, plaintext: bytes | bytearray | memoryview, nonce: bytes
) -> bytes:
    """XChaCha20-Poly1305: ``nonce(24) ‖ ciphertext ‖ tag(16)``."""
    if len(nonce) != NONCE_LEN:
        raise InputError(f"nonce must be {NONCE_LEN} bytes")
    sealed: bytes = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext if isinstance(plaintext, bytes) else bytes(plaintext), aad, nonce, key
    )
    return nonce + sealed


def decrypt(
    key: bytes, aad: bytes, blob: bytes | bytearray | memoryview, *, what: str, ident: str
) -> bytes:
    """Inverse of :func:`encrypt`; any flipped bit or wrong key is an :class:`IntegrityError`."""
    if len(blob) < BLOB_OVERHEAD:
        raise IntegrityError(
            f"{what} {ident}: {len(blob)} bytes is shorter than any encrypted blob",
            obj=what,
            ident=ident,
            check="length",
        )
    view = memoryview(blob)
    try:
        plain: bytes = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            bytes(view[NONCE_LEN:]), aad, bytes(view[:NONCE_LEN]), key
        )
    except nacl.exceptions.CryptoError:
        raise IntegrityError(
            f"{what} {ident} failed authentication (corrupted, or not encrypted with this key)",
            obj=what,
            ident=ident,
            check="aead",
        ) from None
    return plain
