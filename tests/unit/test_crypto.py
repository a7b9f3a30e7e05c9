import random

import pytest

from peerbak.core import crypto
from peerbak.core.crypto import BlobType, Compression, NodeKeys
from peerbak.core.errors import InputError, IntegrityError

SECRET = bytes(range(32))


def test_every_purpose_gets_its_own_key() -> None:
    keys = {purpose: crypto.derive_key(SECRET, purpose) for purpose in crypto.CONTEXTS}
    assert len(set(keys.values())) == len(keys)
    assert all(len(k) == 32 for k in keys.values())


def test_keys_are_a_function_of_the_secret_alone() -> None:
    a, b = NodeKeys.derive(SECRET), NodeKeys.derive(SECRET)
    assert a.node_id == b.node_id
    assert a.data_key == b.data_key
    assert NodeKeys.derive(bytes(32)).node_id != a.node_id


def test_repr_shows_no_key_material() -> None:
    keys = NodeKeys.derive(SECRET)
    text = repr(keys)
    assert keys.data_key.hex() not in text
    assert SECRET.hex() not in text


def test_secret_of_wrong_length_is_refused() -> None:
    with pytest.raises(InputError):
        NodeKeys.derive(b"x" * 31)


def test_chunk_id_is_keyed() -> None:
    a = crypto.chunk_id(NodeKeys.derive(SECRET).chunk_id_key, b"hello")
    b = crypto.chunk_id(NodeKeys.derive(bytes(32)).chunk_id_key, b"hello")
    assert a != b


def _sealed() -> tuple[bytes, bytes, bytes]:
    key = crypto.derive_key(SECRET, "data")
    aad = crypto.blob_aad(BlobType.DATA, Compression.NONE, bytes(32))
    nonce = random.Random(1).randbytes(crypto.NONCE_LEN)
    return key, aad, crypto.encrypt(key, aad, b"attack at dawn", nonce)


def test_encrypt_round_trip() -> None:
    key, aad, blob = _sealed()
    assert len(blob) == len(b"attack at dawn") + crypto.BLOB_OVERHEAD
    assert crypto.decrypt(key, aad, blob, what="chunk", ident="x") == b"attack at dawn"


@pytest.mark.parametrize("bit", range(0, (14 + 40) * 8, 7))
def test_any_flipped_bit_in_the_blob_is_an_integrity_error(bit: int) -> None:
    key, aad, blob = _sealed()
    damaged = bytearray(blob)
    damaged[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError) as info:
        crypto.decrypt(key, aad, bytes(damaged), what="chunk", ident="x")
    assert info.value.check == "aead"


@pytest.mark.parametrize("field", ["type", "compression", "id"])
def test_aad_binds_type_compression_and_id(field: str) -> None:
    key, _, blob = _sealed()
    other = {
        "type": crypto.blob_aad(BlobType.TREE, Compression.NONE, bytes(32)),
        "compression": crypto.blob_aad(BlobType.DATA, Compression.ZSTD, bytes(32)),
        "id": crypto.blob_aad(BlobType.DATA, Compression.NONE, bytes(31) + b"\x01"),
    }[field]
    with pytest.raises(IntegrityError):
        crypto.decrypt(key, other, blob, what="chunk", ident="x")


def test_wrong_key_and_short_blob_are_integrity_errors() -> None:
    _, aad, blob = _sealed()
    with pytest.raises(IntegrityError):
        crypto.decrypt(crypto.derive_key(bytes(32), "data"), aad, blob, what="chunk", ident="x")
    with pytest.raises(IntegrityError):
        crypto.decrypt(crypto.derive_key(SECRET, "data"), aad, blob[:39], what="chunk", ident="x")
