"""protocol/vectors/snapshots.json (protocol/snapshots.md), checked both ways.

The vectors were made from plain msgpack lists, blake3, libsodium (nacl.bindings) and
nacl.signing, never by peerbak.core.objects, so a bug in the objects' definitions cannot agree
with itself here. ENCODE: building each object from its fields and encoding it gives
exactly the recorded msgpack; sealing the recorded body with the recorded nonce gives
exactly the recorded envelope. DECODE: decoding the msgpack (or opening the envelope)
gives exactly the object; every invalid vector is refused with exactly the named error
and check, at the stated step. The field tables of snapshots.md are compared with the
code's field order, so the document and the code cannot drift apart.
"""

from __future__ import annotations

import enum
import json
import re
import struct
import typing
from pathlib import Path
from typing import Any

import blake3
import msgspec
import nacl.bindings
import nacl.signing
import pytest
import zstandard

from peerbak.core import crypto, errors, objects
from peerbak.core.crypto import BlobType, NodeKeys
from peerbak.core.errors import IntegrityError
from peerbak.core.objects import (
    Entry,
    Index,
    IndexBlob,
    IndexPack,
    ManifestBody,
    Snapshot,
    Summary,
    Tree,
)

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
SPEC = (PROTOCOL / "snapshots.md").read_text(encoding="utf-8")
DOC: dict[str, Any] = json.loads((PROTOCOL / "vectors" / "snapshots.json").read_text("utf-8"))
Case = dict[str, Any]
KINDS: dict[str, type[objects._Obj]] = {
    "Entry": Entry,
    "Tree": Tree,
    "Snapshot": Snapshot,
    "IndexPack": IndexPack,
    "Index": Index,
    "ManifestBody": ManifestBody,
}
SIG_DOMAIN = b"peerbak manifest signature v1\x00"
AAD_DOMAIN = b"peerbak manifest v1\x00"


def _group(kind: str, result: str) -> list[Case]:
    tests: list[Case] = next(g["tests"] for g in DOC["testGroups"] if g["type"] == kind)
    return [t for t in tests if t["result"] == result]


def _objects(result: str) -> list[tuple[str, Case]]:
    return [(kind, t) for kind in KINDS for t in _group(kind, result)]


def _id(param: object) -> str:
    if isinstance(param, dict):
        return f"tc{param['tcId']}"
    return str(param)


# --- building objects from a vector's fields (by name), independently of msgpack ---------


def _value(tp: Any, v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"hex"}:
        return bytes.fromhex(v["hex"])
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _build(tp, v)
    if typing.get_origin(tp) is list:
        (arg,) = typing.get_args(tp)
        return [_value(arg, x) for x in v]
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return tp(v)
    return v


def _build(kind: type[msgspec.Struct], fields: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(kind)
    assert set(fields) == {f.name for f in msgspec.structs.fields(kind)}, "a field is missing"
    return kind(**{name: _value(hints[name], v) for name, v in fields.items()})


def _keys(hex_secret: str) -> NodeKeys:
    return NodeKeys.derive(bytes.fromhex(hex_secret))


# --- the file itself ---------------------------------------------------------------------


def test_vector_file_shape() -> None:
    assert DOC["algorithm"] == "peerbak-snapshots-v1"
    assert DOC["specification"] == "protocol/snapshots.md"
    tests = [t for g in DOC["testGroups"] for t in g["tests"]]
    assert {g["type"] for g in DOC["testGroups"]} == {*KINDS, "ManifestEnvelope"}
    assert DOC["numberOfTests"] == len(tests)
    assert [t["tcId"] for t in tests] == list(range(1, len(tests) + 1))
    assert {f for t in tests for f in t["flags"]} == set(DOC["notes"])
    for g in DOC["testGroups"]:
        assert {t["result"] for t in g["tests"]} == {"valid", "invalid"} or g["type"] == "Index"
    for t in tests:
        assert t["comment"]
        if t["result"] == "invalid":
            assert issubclass(getattr(errors, t["error"]), errors.PeerbakError)


@pytest.mark.parametrize("name", ["A", "B"])
def test_the_keys_are_storage_format_s(name: str) -> None:
    k = DOC["keys"][name]
    keys = _keys(k["secret"])
    assert bytes(keys.node_id).hex() == k["node"]
    assert keys.data_key.hex() == k["data_key"]
    assert keys.chunk_id_key.hex() == k["chunk_id_key"]


# --- the spec cannot drift from the code ---------------------------------------------------

_TABLE = re.compile(r"^Fields of `(\w+)`.*\n\n((?:\|.*\n)+)", re.MULTILINE)
_ROW = re.compile(r"^\| (\d+) \| `(\w+)` \|", re.MULTILINE)
_STRUCTS: dict[str, type[msgspec.Struct]] = {
    **KINDS,
    "Summary": Summary,
    "IndexBlob": IndexBlob,
}


def test_spec_field_tables_are_the_code_s() -> None:
    tables = {name: _ROW.findall(rows) for name, rows in _TABLE.findall(SPEC)}
    assert set(tables) == set(_STRUCTS)
    for name, rows in tables.items():
        assert [int(i) for i, _ in rows] == list(range(len(rows))), name
        assert [f for _, f in rows] == [f.name for f in msgspec.structs.fields(_STRUCTS[name])], (
            name
        )


def test_constants_are_the_spec_s() -> None:
    assert int(BlobType.INDEX) == 4
    assert {int(t) for t in BlobType} == {1, 2, 4, 16}
    assert [(t.name, int(t)) for t in objects.NodeType] == [
        ("FILE", 1),
        ("DIR", 2),
        ("SYMLINK", 3),
        ("FIFO", 4),
        ("CHARDEV", 5),
        ("BLOCKDEV", 6),
    ]
    assert (objects.MANIFEST_MAGIC, objects.MANIFEST_FORMAT) == (b"PBMF", 1)
    assert objects.MANIFEST_MAX == 1 << 20
    assert objects._ENVELOPE.format == "<4sB32sQ"
    assert objects._ENVELOPE.size == 45
    assert (objects._SIG_DOMAIN, objects._AAD_DOMAIN) == (SIG_DOMAIN, AAD_DOMAIN)
    assert f'"{SIG_DOMAIN[:-1].decode()}\\0"' in SPEC
    assert f'"{AAD_DOMAIN[:-1].decode()}\\0"' in SPEC


# --- objects -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "case"), _objects("valid"), ids=_id)
def test_encoding_gives_the_msgpack(kind: str, case: Case) -> None:
    obj = _build(KINDS[kind], case["fields"])
    assert objects.encode(obj).hex() == case["msgpack"]


@pytest.mark.parametrize(("kind", "case"), _objects("valid"), ids=_id)
def test_decoding_gives_the_object(kind: str, case: Case) -> None:
    obj = objects.decode(bytes.fromhex(case["msgpack"]), KINDS[kind], kind)
    assert obj == _build(KINDS[kind], case["fields"])
    assert objects.encode(obj).hex() == case["msgpack"]


@pytest.mark.parametrize(("kind", "case"), _objects("invalid"), ids=_id)
def test_invalid_objects_are_refused(kind: str, case: Case) -> None:
    with pytest.raises(IntegrityError) as info:
        objects.decode(bytes.fromhex(case["msgpack"]), KINDS[kind], kind)
    assert type(info.value).__name__ == case["error"]
    assert info.value.check == case["check"]


@pytest.mark.parametrize("case", _group("Tree", "valid") + _group("Index", "valid"), ids=_id)
def test_object_ids_are_keyed_hashes_of_the_msgpack(case: Case) -> None:
    """A tree's id (and an index object's) is the chunk id of its encoding (§2, §4)."""
    keys = _keys(case["secret"])
    data = bytes.fromhex(case["msgpack"])
    expected = case.get("tree_id") or case["chunk_id"]
    assert bytes(crypto.chunk_id(keys.chunk_id_key, data)).hex() == expected
    assert blake3.blake3(data, key=keys.chunk_id_key).hexdigest() == expected


def test_snapshot_short_ids() -> None:
    for case in _group("Snapshot", "valid"):
        snap = _build(Snapshot, case["fields"])
        assert snap.short == case["short"] == case["fields"]["id"]["hex"][:8]


def test_entry_chunks_and_index_records() -> None:
    case = next(c for c in _group("Entry", "valid") if "HardLink" in c["flags"])
    entry = _build(Entry, case["fields"])
    content = bytes.fromhex(case["fields"]["content"]["hex"])
    assert [bytes(c) for c in entry.chunks] == [content[:32], content[32:]]
    for case in _group("IndexPack", "valid"):
        ipack = _build(IndexPack, case["fields"])
        record = ipack.record()
        assert IndexPack.of(record, ipack.holders) == ipack
        assert [e.offset for e in record.entries] == [b.offset for b in ipack.blobs]


# --- the manifest ------------------------------------------------------------------------


def _fixed(nonce: bytes) -> crypto.RandomBytes:
    def draw(n: int) -> bytes:
        assert n == len(nonce)
        return nonce

    return draw


@pytest.mark.parametrize("case", _group("ManifestEnvelope", "valid"), ids=_id)
def test_manifest_envelope_independently(case: Case) -> None:
    """The recorded envelope, rebuilt byte by byte with struct, libsodium and nacl."""
    keys = _keys(case["secret"])
    owner = bytes.fromhex(case["owner"])
    nonce = bytes.fromhex(case["nonce"])
    plain = bytes.fromhex(case["plaintext"])
    head = struct.pack("<4sB32sQ", b"PBMF", 1, owner, case["sequence"])
    sealed = (
        head
        + nonce
        + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plain, AAD_DOMAIN + head, nonce, keys.data_key
        )
    )
    signer = nacl.signing.SigningKey(crypto.derive_key(keys.secret, "identity"))
    assert (sealed + signer.sign(SIG_DOMAIN + sealed).signature).hex() == case["envelope"]
    raw = zstandard.ZstdDecompressor().decompress(plain)
    assert raw.hex() == case["body_msgpack"]


@pytest.mark.parametrize("case", _group("ManifestEnvelope", "valid"), ids=_id)
def test_sealing_gives_the_envelope(case: Case) -> None:
    keys = _keys(case["secret"])
    body = _build(ManifestBody, case["body"])
    assert objects.encode(body).hex() == case["body_msgpack"]
    blob = objects.seal_manifest(keys, case["sequence"], body, _fixed(bytes.fromhex(case["nonce"])))
    frame = zstandard.ZstdCompressor(level=10).compress(bytes.fromhex(case["body_msgpack"]))
    if frame.hex() == case["plaintext"]:
        assert blob.hex() == case["envelope"]
    else:  # another zstd version: the frame differs, the format does not
        assert blob[:69].hex() == case["envelope"][: 69 * 2]
        assert objects.open_manifest(keys, blob).body == body


@pytest.mark.parametrize("case", _group("ManifestEnvelope", "valid"), ids=_id)
def test_opening_gives_owner_sequence_and_body(case: Case) -> None:
    keys = _keys(case["secret"])
    blob = bytes.fromhex(case["envelope"])
    assert objects.manifest_header(blob) == (bytes.fromhex(case["owner"]), case["sequence"])
    manifest = objects.open_manifest(keys, blob)
    assert manifest.owner.hex() == case["owner"]
    assert manifest.sequence == case["sequence"]
    assert manifest.body == _build(ManifestBody, case["body"])


@pytest.mark.parametrize("case", _group("ManifestEnvelope", "invalid"), ids=_id)
def test_invalid_manifests_are_refused_where_stated(case: Case) -> None:
    keys = _keys(case["secret"])
    blob = bytes.fromhex(case["envelope"])
    if case["failsAt"] == "header":
        with pytest.raises(IntegrityError) as info:
            objects.manifest_header(blob)
        assert info.value.check == case["check"]
    else:
        objects.manifest_header(blob)  # what a holder checks passes
    with pytest.raises(IntegrityError) as info:
        objects.open_manifest(keys, blob)
    assert type(info.value).__name__ == case["error"]
    assert info.value.check == case["check"]
