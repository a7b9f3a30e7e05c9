"""protocol/vectors/{keys,blob,pack,shard,merkle}.json (protocol/storage-format.md), both ways.

BUILD: from a vector's inputs (secret, plaintext, body, nonces, pack) the code makes exactly
the vector's bytes. PARSE: from the vector's bytes the code reads back exactly its values,
and refuses every invalid vector with exactly the named peerbak error class.

The vectors were generated once by peerbak itself, with fixed nonces. So that a bug cannot
simply agree with itself, every object is also checked here without peerbak's code: keys
with blake3 and the context strings read out of storage-format.md, blobs with libsodium,
packs and shard containers with struct, parity with reedsolo, Merkle roots, audit paths and
proof verification with a separate recursive RFC 9162 implementation.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import nacl.bindings
import nacl.signing
import pytest
import reedsolo
import zstandard

from peerbak.core import chunker, crypto, errors, merkle, pack
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import BlobType, Compression, NodeKeys
from peerbak.core.ids import ChunkId, PackId
from peerbak.core.pack import (
    BlobEntry,
    PackWriter,
    PlainBlob,
    ShardHeader,
    build_shard_header,
    make_shards,
    open_blob,
    pack_id_of,
    prepare_blob,
    read_pack_header,
    verify_shard,
)

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
SPEC = (PROTOCOL / "storage-format.md").read_text(encoding="utf-8")
NAMES = ("keys", "blob", "pack", "shard", "merkle")
Case = dict[str, Any]


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((PROTOCOL / "vectors" / f"{name}.json").read_text())
    return doc


DOCS = {name: _load(name) for name in NAMES}


def _cases(name: str, result: str, flag: str | None = None) -> list[Case]:
    return [
        t
        for t in DOCS[name]["tests"]
        if t["result"] == result and (flag is None or flag in t["flags"])
    ]


def _id(case: Case) -> str:
    return f"tc{case['tcId']}-{'-'.join(case['flags']) or 'plain'}"


def _expect_error(case: Case, fn: Callable[[], object]) -> None:
    """``fn`` raises exactly the class ``case["error"]`` names (and the check, if given)."""
    cls = getattr(errors, case["error"])
    assert issubclass(cls, errors.PeerbakError)
    with pytest.raises(errors.PeerbakError) as info:
        fn()
    assert type(info.value) is cls, info.value
    if "check" in case:
        assert getattr(info.value, "check", None) == case["check"], info.value


def _keys(case: Case) -> NodeKeys:
    return NodeKeys.derive(bytes.fromhex(case["secret"]))


# --- the files themselves ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_vector_file_shape(name: str) -> None:
    doc = DOCS[name]
    tests = doc["tests"]
    assert doc["algorithm"].startswith("peerbak-")
    assert doc["numberOfTests"] == len(tests)
    assert [t["tcId"] for t in tests] == list(range(1, len(tests) + 1))
    assert {f for t in tests for f in t["flags"]} <= set(doc["notes"])
    assert {t["result"] for t in tests} == {"valid", "invalid"}
    for t in tests:
        assert t["comment"]
        if t["result"] == "invalid" and name != "merkle":  # verify_proof returns False
            assert issubclass(getattr(errors, t["error"]), errors.PeerbakError)
    assert (PROTOCOL / "vectors" / f"{name}.json").stat().st_size < 60_000


# --- the spec cannot drift from the code -----------------------------------------------------

_CONTEXT_ROW = re.compile(r"^\| `([a-z-]+)` \| `(peerbak [^`]+)` \|", re.MULTILINE)
_MERKLE_KEY = re.compile(r'^(LEAF|NODE)_KEY = DK\("(peerbak [^"]+)", ""\)', re.MULTILINE)
_ANY_CONTEXT = re.compile(r"peerbak \d{4}-\d\d-\d\d [a-z -]+ v\d+")


def _spec_contexts() -> dict[str, str]:
    return dict(_CONTEXT_ROW.findall(SPEC))


def test_spec_context_strings_are_the_code_s() -> None:
    assert _spec_contexts() == crypto.CONTEXTS
    assert DOCS["keys"]["contexts"] == crypto.CONTEXTS
    merkle_contexts = dict(_MERKLE_KEY.findall(SPEC))
    assert set(merkle_contexts) == {"LEAF", "NODE"}
    assert blake3.blake3(derive_key_context=merkle_contexts["LEAF"]).digest() == merkle.LEAF_KEY
    assert blake3.blake3(derive_key_context=merkle_contexts["NODE"]).digest() == merkle.NODE_KEY
    # no other context string anywhere in the document
    known = set(crypto.CONTEXTS.values()) | set(merkle_contexts.values())
    assert set(_ANY_CONTEXT.findall(SPEC)) == known


def test_format_constants_are_the_spec_s() -> None:
    assert (chunker.MIN_SIZE, chunker.AVG_SIZE, chunker.MAX_SIZE) == (262_144, 786_432, 4 << 20)
    assert crypto.FORMAT_VERSION == 1
    assert (crypto.NONCE_LEN, crypto.TAG_LEN, crypto.BLOB_OVERHEAD) == (24, 16, 40)
    assert len(crypto.blob_aad(BlobType.DATA, Compression.NONE, bytes(32))) == 43
    assert {int(t) for t in BlobType} == {1, 2, 4, 16}
    assert {int(c) for c in Compression} == {0, 1}
    assert (pack.TRAILER.format, pack.TRAILER.size) == ("<I4sB", 9)
    assert (pack.HEADER_PREFIX.format, pack.HEADER_PREFIX.size) == ("<BI", 5)
    assert (pack.ENTRY.format, pack.ENTRY.size) == ("<BB32sII", 42)
    assert pack.PACK_MAGIC == b"PBPK"
    assert (pack.MAX_PACK, pack.MAX_BLOB_PLAIN) == (64 << 20, 16 << 20)
    assert pack.SHARD_MAGIC == b"PBSH"
    assert (pack.SHARD_HEADER_LEN, pack.SHARD_CHECK_LEN, pack.MAX_N) == (100, 16, 32)
    assert merkle.LEAF_SIZE == DOCS["merkle"]["parameters"]["leaf_size"] == 4096
    assert merkle.LEAF_KEY.hex() == DOCS["merkle"]["parameters"]["leaf_key"]
    assert merkle.NODE_KEY.hex() == DOCS["merkle"]["parameters"]["node_key"]


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("keys", "valid"), ids=_id)
def test_keys_build(case: Case) -> None:
    secret = bytes.fromhex(case["secret"])
    keys = NodeKeys.derive(secret)
    assert keys.chunk_id_key.hex() == case["chunk_id_key"]
    assert keys.data_key.hex() == case["data_key"]
    assert crypto.derive_key(secret, "identity").hex() == case["identity_seed"]
    assert keys.node_id.hex() == case["node_id"]
    assert keys.ssh_seed.hex() == case["ssh_seed"]


@pytest.mark.parametrize("case", _cases("keys", "valid"), ids=_id)
def test_keys_independently(case: Case) -> None:
    """blake3 derive_key with the contexts as storage-format.md lists them; Ed25519 by pynacl."""
    secret = bytes.fromhex(case["secret"])
    field = {"chunk-id": "chunk_id_key", "data": "data_key", "identity": "identity_seed"}
    field["ssh"] = "ssh_seed"
    for purpose, context in _spec_contexts().items():
        derived = blake3.blake3(secret, derive_key_context=context).digest()
        assert derived.hex() == case[field[purpose]], purpose
    for seed, public in (("identity_seed", "node_id"), ("ssh_seed", "ssh_public_key")):
        verify_key = nacl.signing.SigningKey(bytes.fromhex(case[seed])).verify_key
        assert bytes(verify_key).hex() == case[public]


@pytest.mark.parametrize("case", _cases("keys", "invalid"), ids=_id)
def test_keys_invalid(case: Case) -> None:
    _expect_error(case, lambda: NodeKeys.derive(bytes.fromhex(case["secret"])))


# --- blobs ---------------------------------------------------------------------------------


def _spec_aad(blob_type: int, compression: int, ident: bytes) -> bytes:
    """The AAD laid out as the table in storage-format.md §4 says."""
    return b"peerbak\x00" + struct.pack("<BBB", 1, blob_type, compression) + ident


def _blob_entry(case: Case) -> BlobEntry:
    return BlobEntry(
        BlobType(case["type"]),
        Compression(case["compression"]),
        ChunkId(bytes.fromhex(case["id"])),
        0,
        case["stored_length"],
        case["plain_length"],
    )


@pytest.mark.parametrize("case", _cases("blob", "valid"), ids=_id)
def test_blob_build(case: Case) -> None:
    keys = _keys(case)
    plaintext, body = bytes.fromhex(case["plaintext"]), bytes.fromhex(case["body"])
    ident = bytes.fromhex(case["id"])
    assert crypto.chunk_id(keys.chunk_id_key, plaintext).hex() == case["id"]
    aad = crypto.blob_aad(BlobType(case["type"]), Compression(case["compression"]), ident)
    assert aad.hex() == case["aad"]
    blob = crypto.encrypt(keys.data_key, aad, body, bytes.fromhex(case["nonce"]))
    assert blob.hex() == case["blob"]
    assert len(blob) == case["stored_length"] == len(body) + 40
    # The writer's choice (a writer's policy: zstd level 3, kept if it saves over 1/32).
    # The compressed bytes themselves may differ between zstd versions and are not pinned.
    prepared = prepare_blob(
        BlobType(case["type"]), ChunkId(ident), plaintext, zstandard.ZstdCompressor(level=3)
    )
    assert prepared.compression == case["compression"]
    if case["compression"] == Compression.NONE:
        assert body == plaintext
    else:
        assert zstandard.ZstdDecompressor().decompress(body) == plaintext
        assert len(body) < len(plaintext) * 31 / 32


@pytest.mark.parametrize("case", _cases("blob", "valid"), ids=_id)
def test_blob_independently(case: Case) -> None:
    keys = _keys(case)
    blob, ident = bytes.fromhex(case["blob"]), bytes.fromhex(case["id"])
    aad = _spec_aad(case["type"], case["compression"], ident)
    assert aad.hex() == case["aad"]
    assert blake3.blake3(bytes.fromhex(case["plaintext"]), key=keys.chunk_id_key).digest() == ident
    body = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        blob[24:], aad, blob[:24], keys.data_key
    )
    assert body.hex() == case["body"]
    sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        body, aad, bytes.fromhex(case["nonce"]), keys.data_key
    )
    assert case["nonce"] + sealed.hex() == case["blob"]


@pytest.mark.parametrize("case", _cases("blob", "valid"), ids=_id)
def test_blob_parse(case: Case) -> None:
    keys = _keys(case)
    plain = open_blob(
        keys.data_key, keys.chunk_id_key, _blob_entry(case), bytes.fromhex(case["blob"])
    )
    assert plain.hex() == case["plaintext"]


@pytest.mark.parametrize("case", _cases("blob", "invalid"), ids=_id)
def test_blob_invalid(case: Case) -> None:
    keys = _keys(case)
    blob = bytes.fromhex(case["blob"])
    _expect_error(
        case, lambda: open_blob(keys.data_key, keys.chunk_id_key, _blob_entry(case), blob)
    )


# --- packs ---------------------------------------------------------------------------------


def _entry_dicts(entries: list[BlobEntry]) -> list[dict[str, int | str]]:
    return [
        {
            "type": int(e.blob_type),
            "compression": int(e.compression),
            "id": e.ident.hex(),
            "offset": e.offset,
            "length": e.length,
            "plain_length": e.plain_length,
        }
        for e in entries
    ]


@pytest.mark.parametrize("case", _cases("pack", "valid"), ids=_id)
def test_pack_build(case: Case) -> None:
    keys = _keys(case)
    writer = PackWriter(keys.data_key, 1 << 20)
    for b in case["blobs"]:
        plain = PlainBlob(
            BlobType(b["type"]),
            Compression(b["compression"]),
            ChunkId(bytes.fromhex(b["id"])),
            len(bytes.fromhex(b["plaintext"])),
            bytes.fromhex(b["body"]),
        )
        writer.add(plain, bytes.fromhex(b["nonce"]))
    pack_id, view, entries = writer.seal(bytes.fromhex(case["header_nonce"]))
    assert bytes(view).hex() == case["pack"]
    assert pack_id.hex() == case["pack_id"]
    assert _entry_dicts(entries) == case["entries"]


@pytest.mark.parametrize("case", _cases("pack", "valid"), ids=_id)
def test_pack_parse(case: Case) -> None:
    keys = _keys(case)
    raw = bytes.fromhex(case["pack"])
    assert pack_id_of(raw).hex() == case["pack_id"]
    entries = read_pack_header(keys.data_key, raw)
    assert _entry_dicts(entries) == case["entries"]
    plains = [
        open_blob(keys.data_key, keys.chunk_id_key, e, raw[e.offset : e.offset + e.length])
        for e in entries
    ]
    assert [p.hex() for p in plains] == [b["plaintext"] for b in case["blobs"]]


@pytest.mark.parametrize("case", _cases("pack", "valid"), ids=_id)
def test_pack_independently(case: Case) -> None:
    """Trailer, header blob and entries read with struct and libsodium, as §5 lays them out."""
    keys = _keys(case)
    raw = bytes.fromhex(case["pack"])
    assert blake3.blake3(raw).hexdigest() == case["pack_id"]
    header_len, magic, version = struct.unpack("<I4sB", raw[-9:])
    assert (header_len, magic, version) == (case["header_blob_length"], b"PBPK", 1)
    sealed = raw[len(raw) - 9 - header_len : len(raw) - 9]
    assert sealed[:24].hex() == case["header_nonce"]
    header = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        sealed[24:], _spec_aad(16, 0, bytes(32)), sealed[:24], keys.data_key
    )
    assert header.hex() == case["header_plaintext"]
    version, count = struct.unpack_from("<BI", header)
    assert (version, len(header)) == (1, 5 + 42 * count)
    offset = 0
    for i, b in enumerate(case["blobs"]):
        kind, comp, ident, length, plain = struct.unpack_from("<BB32sII", header, 5 + 42 * i)
        assert (kind, comp, ident.hex()) == (b["type"], b["compression"], b["id"])
        assert (length, plain) == (len(b["body"]) // 2 + 40, len(b["plaintext"]) // 2)
        blob = raw[offset : offset + length]
        assert blob[:24].hex() == b["nonce"]
        body = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            blob[24:], _spec_aad(kind, comp, ident), blob[:24], keys.data_key
        )
        assert body.hex() == b["body"]
        offset += length
    assert offset == len(raw) - 9 - header_len


@pytest.mark.parametrize("case", _cases("pack", "invalid"), ids=_id)
def test_pack_invalid(case: Case) -> None:
    keys = _keys(case)
    raw = bytes.fromhex(case["pack"])
    if "DamagedBlob" not in case["flags"]:
        _expect_error(case, lambda: read_pack_header(keys.data_key, raw))
        return
    # blast radius of a damaged blob: the header and every other blob are still read
    entries = read_pack_header(keys.data_key, raw)
    assert _entry_dicts(entries) == case["entries"]
    bad = entries[case["damaged"]]
    bad_blob = raw[bad.offset : bad.offset + bad.length]
    _expect_error(case, lambda: open_blob(keys.data_key, keys.chunk_id_key, bad, bad_blob))
    for i, e in enumerate(entries):
        if i != case["damaged"]:
            stored = raw[e.offset : e.offset + e.length]
            assert open_blob(keys.data_key, keys.chunk_id_key, e, stored).hex() == case["chunks"][i]


# --- shard containers ------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("shard", "valid"), ids=_id)
def test_shard_build(case: Case) -> None:
    raw = bytes.fromhex(case["pack"])
    k, n = case["k"], case["n"]
    record, shards = make_shards(ErasureCode(k, n), pack_id_of(raw), memoryview(raw), [])
    assert record.pack_id.hex() == case["pack_id"]
    assert [r.hex() for r in record.roots] == case["roots"]
    assert [s.to_bytes().hex() for s in shards] == case["containers"]
    for index, container in enumerate(case["containers"]):
        data = bytes.fromhex(container)[100:]
        header = build_shard_header(
            PackId(bytes.fromhex(case["pack_id"])), index, k, n, len(raw), data
        )
        assert header.to_bytes().hex() == container[:200]


@pytest.mark.parametrize("case", _cases("shard", "valid"), ids=_id)
def test_shard_parse(case: Case) -> None:
    for index, container in enumerate(case["containers"]):
        header, data = verify_shard(bytes.fromhex(container))
        assert header == ShardHeader(
            PackId(bytes.fromhex(case["pack_id"])),
            index,
            case["k"],
            case["n"],
            len(case["pack"]) // 2,
            case["shard_length"],
            bytes.fromhex(case["roots"][index]),
        )
        assert bytes(data).hex() == container[200:]


@pytest.mark.parametrize("case", _cases("shard", "valid"), ids=_id)
def test_shard_independently(case: Case) -> None:
    """§6 and §7 by hand: contiguous padded data shards, reedsolo parity, struct, blake3."""
    raw = bytes.fromhex(case["pack"])
    k, n = case["k"], case["n"]
    size = -(-len(raw) // k)
    assert size == case["shard_length"]
    padded = raw + bytes(k * size - len(raw))
    datas = [padded[i * size : (i + 1) * size] for i in range(k)]
    codec = reedsolo.RSCodec(n - k)
    columns = [bytes(codec.encode(bytes(d[j] for d in datas)))[k:] for j in range(size)]
    shards = datas + [bytes(col[p] for col in columns) for p in range(n - k)]
    for index, container in enumerate(case["containers"]):
        c = bytes.fromhex(container)
        fields = struct.unpack("<4sBBBB32sQI32s", c[:84])
        assert fields == (
            b"PBSH",
            1,
            k,
            n,
            index,
            bytes.fromhex(case["pack_id"]),
            len(raw),
            size,
            bytes.fromhex(case["roots"][index]),
        )
        assert c[84:100] == blake3.blake3(c[:84]).digest(length=16)
        assert c[100:] == shards[index]
        assert _mth(_leaves(shards[index])).hex() == case["roots"][index]


@pytest.mark.parametrize("case", _cases("shard", "invalid"), ids=_id)
def test_shard_invalid(case: Case) -> None:
    _expect_error(case, lambda: verify_shard(bytes.fromhex(case["container"])))


# --- Merkle tree: an independent RFC 9162 §2.1 implementation --------------------------------


def _leaves(data: bytes) -> list[bytes]:
    return [data[i : i + 4096] for i in range(0, len(data), 4096)]


def _leaf(d: bytes) -> bytes:
    key = blake3.blake3(derive_key_context="peerbak 2026-11-25 merkle leaf v1").digest()
    return blake3.blake3(d, key=key).digest()


def _node(left: bytes, right: bytes) -> bytes:
    key = blake3.blake3(derive_key_context="peerbak 2026-11-25 merkle node v1").digest()
    return blake3.blake3(left + right, key=key).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(d: list[bytes]) -> bytes:
    if len(d) == 1:
        return _leaf(d[0])
    k = _split(len(d))
    return _node(_mth(d[:k]), _mth(d[k:]))


def _path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1: nearest sibling first."""
    if len(d) == 1:
        return []
    k = _split(len(d))
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def _verify(root: bytes, index: int, count: int, leaf: bytes, path: list[bytes]) -> bool:
    """RFC 9162 §2.1.3.2 with the size rules of storage-format.md §8."""
    if not 0 <= index < count or len(leaf) > 4096 or any(len(p) != 32 for p in path):
        return False
    fn, sn, r = index, count - 1, _leaf(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def _merkle_data(case: Case) -> bytes:
    return bytes(i % 251 for i in range(case["length"]))


@pytest.mark.parametrize("case", _cases("merkle", "valid"), ids=_id)
def test_merkle_build(case: Case) -> None:
    data = _merkle_data(case)
    tree = merkle.MerkleTree.from_data(data)
    assert tree.leaf_count == case["leaves"]
    assert [h.hex() for h in tree.levels[0]] == case["leaf_hashes"]
    assert tree.root.hex() == case["root"]
    assert merkle.root_of(data).hex() == case["root"]
    streamed = merkle.LeafHasher()
    for start in range(0, len(data), 1000):  # pieces that straddle leaves, as a holder gets them
        streamed.update(data[start : start + 1000])
    assert streamed.root().hex() == case["root"]
    assert [
        {"index": i, "path": [p.hex() for p in tree.proof(i)]} for i in range(tree.leaf_count)
    ] == case["proofs"]


@pytest.mark.parametrize("case", _cases("merkle", "valid"), ids=_id)
def test_merkle_independently(case: Case) -> None:
    leaves = _leaves(_merkle_data(case))
    assert [_leaf(d).hex() for d in leaves] == case["leaf_hashes"]
    assert _mth(leaves).hex() == case["root"]
    for proof in case["proofs"]:
        assert [p.hex() for p in _path(proof["index"], leaves)] == proof["path"]


@pytest.mark.parametrize("case", _cases("merkle", "valid"), ids=_id)
def test_merkle_proofs_verify(case: Case) -> None:
    leaves = _leaves(_merkle_data(case))
    root = bytes.fromhex(case["root"])
    for proof in case["proofs"]:
        i, path = proof["index"], [bytes.fromhex(p) for p in proof["path"]]
        assert merkle.verify_proof(root, i, len(leaves), leaves[i], path)
        assert _verify(root, i, len(leaves), leaves[i], path)


@pytest.mark.parametrize("case", _cases("merkle", "invalid"), ids=_id)
def test_merkle_invalid(case: Case) -> None:
    args = (
        bytes.fromhex(case["root"]),
        case["index"],
        case["count"],
        bytes.fromhex(case["leaf"]),
        [bytes.fromhex(p) for p in case["path"]],
    )
    assert merkle.verify_proof(*args) is False
    assert _verify(*args) is False
