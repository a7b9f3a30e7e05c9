"""Roster records (protocol/pool.md §1): the signed format, its limits, and what a
hostile encoding gets."""

from __future__ import annotations

from typing import Any

import msgspec
import nacl.signing
import pytest

from peerbak.core import pool as P
from peerbak.core.errors import (
    InputError,
    IntegrityError,
    RemoteProtocolError,
)
from peerbak.core.pool import (
    RosterRecord,
    SignedRecord,
    open_record,
    sign_record,
    ssh_public_key,
)
from tests.unit.poolkit import (
    A,
    B,
    nid,
    raw_sign,
    rec,
)

# ------------------------------------------------------------------------ record format


def test_sign_and_open_round_trip() -> None:
    record = rec(A)
    blob = sign_record(record, A.identity)
    assert open_record(blob) == (record, nid(A))


def test_signature_covers_the_domain_and_the_body() -> None:
    blob = sign_record(rec(A), A.identity)
    signed = msgspec.msgpack.decode(blob, type=SignedRecord)
    nacl.signing.VerifyKey(signed.signer).verify(
        b"peerbak roster v1\x00" + signed.body, signed.signature
    )
    assert msgspec.msgpack.decode(signed.body, type=RosterRecord) == rec(A)


@pytest.mark.parametrize("where", ["signature", "body", "signer"])
def test_forged_or_damaged_records_are_refused(where: str) -> None:
    blob = sign_record(rec(A), A.identity)
    signed = msgspec.msgpack.decode(blob, type=SignedRecord)
    if where == "signature":
        bad = SignedRecord(signed.body, signed.signer, bytes(64))
    elif where == "body":
        forged = msgspec.msgpack.encode(msgspec.structs.replace(rec(A), name="mallory"))
        bad = SignedRecord(forged, signed.signer, signed.signature)
    else:
        bad = SignedRecord(signed.body, nid(B), signed.signature)
    with pytest.raises(IntegrityError):
        open_record(msgspec.msgpack.encode(bad))


def test_every_flipped_bit_is_refused() -> None:
    blob = sign_record(rec(A), A.identity)
    for bit in range(0, len(blob) * 8, 3):
        damaged = bytearray(blob)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((IntegrityError, RemoteProtocolError)):
            open_record(bytes(damaged))


def test_size_cap_is_checked_before_decoding() -> None:
    with pytest.raises(RemoteProtocolError, match="cap"):
        open_record(b"\x93" + b"\xff" * P.MAX_SIGNED_RECORD)


def test_the_largest_legal_record_fits_the_cap() -> None:
    big = rec(
        A,
        name="é" * 32,
        addresses=tuple("h" * 249 + ":65535" for _ in range(P.MAX_ADDRESSES)),
        version=P.MAX_VERSION,
    )
    blob = sign_record(big, A.identity)
    assert len(blob) == 4416 <= P.MAX_SIGNED_RECORD
    assert open_record(blob)[0] == big


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc0",
        b"\x93\xc4\x00\xc4\x00\xc4\x00",
        msgspec.msgpack.encode([1, 2, 3]),
    ],
)
def test_malformed_bytes_are_protocol_errors(blob: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        open_record(blob)


def test_non_canonical_encodings_are_refused() -> None:
    blob = sign_record(rec(A), A.identity)
    with pytest.raises(RemoteProtocolError):
        open_record(blob + b"\x00")  # trailing byte
    signed = msgspec.msgpack.decode(blob, type=SignedRecord)
    extra = msgspec.msgpack.encode([signed.body, signed.signer, signed.signature, 0])
    with pytest.raises(RemoteProtocolError, match="canonical"):
        open_record(extra)  # a fourth element msgspec would silently drop
    # version 1 written as uint8 (0xcc 0x01) instead of fixint: same value, other bytes
    body = signed.body
    assert body[-2:] == b"\x01\xc2"
    long_body = body[:-2] + b"\xcc\x01\xc2"
    sig = A.identity.sign(P.ROSTER_DOMAIN + long_body).signature
    with pytest.raises(RemoteProtocolError, match="canonical"):
        open_record(msgspec.msgpack.encode(SignedRecord(long_body, nid(A), sig)))


BAD_FIELDS: list[dict[str, Any]] = [
    {"pool": bytes(15)},
    {"node": bytes(31)},
    {"ssh_key": bytes(33)},
    {"added_by": b""},
    {"name": ""},
    {"name": "x" * 65},
    {"name": "é" * 33},
    {"name": "evil\x1b[2J"},
    {"name": "a\nb"},
    {"name": "abc\u202edcba"},
    {"addresses": ("10.0.0.1:22",) * 17},
    {"addresses": ("h" * 251 + ":4022",)},
    {"addresses": ("no-port",)},
    {"addresses": ("host:0",)},
    {"addresses": ("host:65536",)},
    {"addresses": ("::1:22",)},
    {"addresses": ("a b:22",)},
    {"addresses": ("-host:22",)},
    {"version": 0},
    {"version": P.MAX_VERSION + 1},
]


@pytest.mark.parametrize("fields", BAD_FIELDS, ids=lambda f: repr(f)[:40])
def test_field_limits_are_enforced_both_ways(fields: dict[str, Any]) -> None:
    record = msgspec.structs.replace(rec(A), **fields)
    with pytest.raises(InputError):
        sign_record(record, A.identity)
    with pytest.raises(RemoteProtocolError):
        open_record(raw_sign(record, A))


@pytest.mark.parametrize(
    "address", ["a:1", "example.com:22", "192.168.1.20:4022", "[2001:db8::1]:65535", "x_y.lan:22"]
)
def test_good_addresses(address: str) -> None:
    assert open_record(sign_record(rec(A, addresses=(address,)), A.identity))


def test_ssh_public_key_is_the_ssh_seed_key() -> None:
    assert ssh_public_key(A) == bytes(nacl.signing.SigningKey(A.ssh_seed).verify_key)
    assert ssh_public_key(A) != nid(A)
    assert len(ssh_public_key(A)) == 32
