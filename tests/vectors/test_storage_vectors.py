"""protocol/vectors/{keys,blob,pack,shard,merkle}.json, checked in both directions."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import blake3
import nacl.bindings
import nacl.signing
import pytest

from peerbak import crypto, merkle
from peerbak.codec import ErasureCode
from peerbak.crypto import BlobType, Compression, NodeKeys
from peerbak.errors import InputError, IntegrityError
from peerbak.ids import ChunkId
from peerbak.pack import (
    BlobEntry,
    PackWriter,
    PlainBlob,
    make_shards,
    open_blob,
    pack_id_of,
    read_pack_header,
    verify_shard,
)

PROTOCOL = Path(__file__).parents[2] / "protocol"


def _load(name: str) -> list[dict[str, Any]]:
    doc = json.loads((PROTOCOL / "vectors" / f"{name}.json").read_text())
    assert doc["numberOfTests"] == len(doc["tests"])
    return list(doc["tests"])


def _cases(name: str, result: str) -> list[dict[str, Any]]:
    return [t for t in _load(name) if t["result"] == result]


def _id(case: dict[str, Any]) -> str:
    return f"{case['tcId']}-{case['comment']}"


KEYS = NodeKeys.derive(bytes(range(32)))

# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("keys", "valid"), ids=_id)
def test_keys_derive_as_listed(case: dict[str, Any]) -> None:
    secret = bytes.fromhex(case["secret"])
    keys = NodeKeys.derive(secret)
    assert keys.chunk_id_key.hex() == case["chunk_id_key"]
    assert keys.data_key.hex() == case["data_key"]
    assert crypto.derive_key(secret, "identity").hex() == case["identity_seed"]
    assert keys.node_id.hex() == case["node_id"]
    assert keys.ssh_seed.hex() == case["ssh_seed"]
    public = nacl.signing.SigningKey(bytes.fromhex(case["ssh_seed"])).verify_key
    assert bytes(public).hex() == case["ssh_public_key"]
    # and the node id is the identity seed's public key, as the spec says
    identity = nacl.signing.SigningKey(bytes.fromhex(case["identity_seed"])).verify_key
    assert bytes(identity).hex() == case["node_id"]


@pytest.mark.parametrize("case", _cases("keys", "invalid"), ids=_id)
def test_bad_secrets_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        NodeKeys.derive(bytes.fromhex(case["secret"]))


def test_every_context_in_the_spec_is_the_code_s() -> None:
    text = (PROTOCOL / "storage-format.md").read_text()
    listed = set(re.findall(r'"(peerbak 2026-11-25 [^"]+)"', text))
    used = set(crypto.CONTEXTS.values()) | {
        "peerbak 2026-11-25 merkle leaf v1",
        "peerbak 2026-11-25 merkle node v1",
    }
    assert listed == used
    leaf = blake3.blake3(derive_key_context="peerbak 2026-11-25 merkle leaf v1").digest()
    assert leaf == merkle.LEAF_KEY


# --- blobs -----------------------------------------------------------------------------------


def _entry(case: dict[str, Any], stored: bytes) -> BlobEntry:
    return BlobEntry(
        BlobType(case["type"]),
        Compression(case["compression"]),
        ChunkId(bytes.fromhex(case["id"])),
        0,
        len(stored),
        len(bytes.fromhex(case["plaintext"])),
    )


@pytest.mark.parametrize("case", _cases("blob", "valid"), ids=_id)
def test_blob_built_from_its_inputs(case: dict[str, Any]) -> None:
    aad = crypto.blob_aad(
        BlobType(case["type"]), Compression(case["compression"]), bytes.fromhex(case["id"])
    )
    assert len(aad) == 43
    built = crypto.encrypt(
        KEYS.data_key, aad, bytes.fromhex(case["body"]), bytes.fromhex(case["nonce"])
    )
    assert built.hex() == case["blob"]
    assert crypto.chunk_id(KEYS.chunk_id_key, bytes.fromhex(case["plaintext"])).hex() == case["id"]


@pytest.mark.parametrize("case", _cases("blob", "valid"), ids=_id)
def test_blob_opens_to_its_plaintext(case: dict[str, Any]) -> None:
    blob = bytes.fromhex(case["blob"])
    assert (
        open_blob(KEYS.data_key, KEYS.chunk_id_key, _entry(case, blob), blob).hex()
        == case["plaintext"]
    )
    # independently of peerbak: libsodium directly, with the AAD as the spec lays it out
    aad = b"peerbak\x00" + bytes((1, case["type"], case["compression"])) + bytes.fromhex(case["id"])
    body = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        blob[24:], aad, blob[:24], KEYS.data_key
    )
    assert body.hex() == case["body"]


@pytest.mark.parametrize("case", _cases("blob", "invalid"), ids=_id)
def test_damaged_blobs_are_integrity_errors(case: dict[str, Any]) -> None:
    assert case["error"] == "IntegrityError"
    blob = bytes.fromhex(case["blob"])
    with pytest.raises(IntegrityError):
        open_blob(KEYS.data_key, KEYS.chunk_id_key, _entry(case, blob), blob)


# --- packs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("pack", "valid"), ids=_id)
def test_pack_parses_to_its_entries_and_chunks(case: dict[str, Any]) -> None:
    pack = bytes.fromhex(case["pack"])
    assert pack_id_of(pack).hex() == case["pack_id"]
    entries = read_pack_header(KEYS.data_key, pack)
    assert [
        {
            "type": int(e.blob_type),
            "compression": int(e.compression),
            "id": e.ident.hex(),
            "offset": e.offset,
            "length": e.length,
            "plain_length": e.plain_length,
        }
        for e in entries
    ] == case["entries"]
    plains = [
        open_blob(KEYS.data_key, KEYS.chunk_id_key, e, pack[e.offset : e.offset + e.length])
        for e in entries
    ]
    assert [p.hex() for p in plains] == case["chunks"]


@pytest.mark.parametrize("case", _cases("pack", "valid"), ids=_id)
def test_pack_built_from_its_blobs(case: dict[str, Any]) -> None:
    """The writer's layout: the blobs' bodies (compression aside) and nonces give these bytes."""
    pack = bytes.fromhex(case["pack"])
    writer = PackWriter(KEYS.data_key, 1 << 20)
    for e, nonce in zip(read_pack_header(KEYS.data_key, pack), case["nonces"], strict=True):
        aad = crypto.blob_aad(e.blob_type, e.compression, e.ident)
        body = crypto.decrypt(
            KEYS.data_key, aad, pack[e.offset : e.offset + e.length], what="chunk", ident=""
        )
        writer.add(
            PlainBlob(e.blob_type, e.compression, e.ident, e.plain_length, body),
            bytes.fromhex(nonce),
        )
    pack_id, view, _ = writer.seal(bytes.fromhex(case["header_nonce"]))
    assert bytes(view) == pack
    assert pack_id.hex() == case["pack_id"]


@pytest.mark.parametrize("case", _cases("pack", "invalid"), ids=_id)
def test_damaged_packs_are_integrity_errors(case: dict[str, Any]) -> None:
    with pytest.raises(IntegrityError):
        read_pack_header(KEYS.data_key, bytes.fromhex(case["pack"]))


# --- shards ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("shard", "valid"), ids=_id)
def test_shards_built_and_parsed(case: dict[str, Any]) -> None:
    pack = bytes.fromhex(case["pack"])
    record, shards = make_shards(
        ErasureCode(case["k"], case["n"]), pack_id_of(pack), memoryview(pack), []
    )
    assert [s.to_bytes().hex() for s in shards] == case["shards"]
    assert [r.hex() for r in record.roots] == case["roots"]
    for index, raw in enumerate(case["shards"]):
        header, data = verify_shard(bytes.fromhex(raw))
        assert (header.index, header.k, header.n, header.pack_length) == (
            index,
            case["k"],
            case["n"],
            len(pack),
        )
        assert merkle.root_of(data).hex() == case["roots"][index]


@pytest.mark.parametrize("case", _cases("shard", "invalid"), ids=_id)
def test_damaged_shards_are_integrity_errors(case: dict[str, Any]) -> None:
    with pytest.raises(IntegrityError):
        verify_shard(bytes.fromhex(case["shard"]))


# --- Merkle ----------------------------------------------------------------------------------


def _rfc9162_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return merkle.leaf_hash(leaves[0])
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return merkle.node_hash(_rfc9162_root(leaves[:split]), _rfc9162_root(leaves[split:]))


def _data(case: dict[str, Any]) -> bytes:
    return random.Random(case["data_seed"]).randbytes(case["length"])


@pytest.mark.parametrize("case", _cases("merkle", "valid"), ids=_id)
def test_merkle_roots_and_proofs(case: dict[str, Any]) -> None:
    data = _data(case)
    leaves = [data[i : i + merkle.LEAF_SIZE] for i in range(0, len(data), merkle.LEAF_SIZE)]
    assert len(leaves) == case["leaves"]
    assert _rfc9162_root(leaves).hex() == case["root"]
    tree = merkle.MerkleTree.from_data(data)
    root = bytes.fromhex(case["root"])
    for proof in case["proofs"]:
        path = [bytes.fromhex(p) for p in proof["path"]]
        assert [p.hex() for p in tree.proof(proof["index"])] == proof["path"]
        assert merkle.verify_proof(root, proof["index"], len(leaves), leaves[proof["index"]], path)


@pytest.mark.parametrize("case", _cases("merkle", "invalid"), ids=_id)
def test_bad_merkle_proofs_fail(case: dict[str, Any]) -> None:
    data = _data(case)
    leaves = [data[i : i + merkle.LEAF_SIZE] for i in range(0, len(data), merkle.LEAF_SIZE)]
    root = bytes.fromhex(case["root"])
    for proof in case["proofs"]:
        path = [bytes.fromhex(p) for p in proof["path"]]
        assert not merkle.verify_proof(
            root, proof["index"], len(leaves), leaves[proof["index"]], path
        )
