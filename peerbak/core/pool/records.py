"""Roster records: their fields and limits, the canonical msgpack, signing and opening.

A :class:`RosterRecord` is one member's entry; it travels as a :class:`SignedRecord`
(protocol/pool.md section 1). Opening checks, in order, the size cap, the shape, the
canonical encoding, the field limits and the signature, so a record that opens is one every
member reads the same way. Which signer may sign which record is :mod:`.roster`'s question.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Final, TypeVar

import msgspec
import nacl.exceptions
import nacl.signing

from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import (
    InputError,
    IntegrityError,
    PeerbakError,
    RemoteProtocolError,
)

__all__ = [
    "KEY_LEN",
    "MAX_ADDRESSES",
    "MAX_ADDRESS_LEN",
    "MAX_NAME_BYTES",
    "MAX_SIGNED_RECORD",
    "MAX_VERSION",
    "POOL_ID_LEN",
    "ROSTER_DOMAIN",
    "SIGNATURE_LEN",
    "RosterRecord",
    "SignedRecord",
    "found_pool",
    "open_record",
    "sign_record",
    "ssh_public_key",
]

POOL_ID_LEN: Final = 16
KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
#: A member's name: 1..64 bytes of UTF-8, no control or bidi-override characters.
MAX_NAME_BYTES: Final = 64
MAX_ADDRESSES: Final = 16
MAX_ADDRESS_LEN: Final = 255
#: Versions are 1..2^63-1 (a signed 64-bit integer, for every implementation's sake).
MAX_VERSION: Final = (1 << 63) - 1
#: Cap on an encoded SignedRecord, checked before decoding. The largest record the field
#: limits allow encodes to 4,416 bytes, so the cap is 8 KiB (not 4 KiB): every legal
#: record must fit.
MAX_SIGNED_RECORD: Final = 8192
#: Domain separation: what an Ed25519 signature covers is ``domain ‖ body``.
ROSTER_DOMAIN: Final = b"peerbak roster v1\x00"

_ADDRESS_RE: Final = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?):([1-9][0-9]{0,4})"
)
#: Bidi controls ("Trojan Source"): a hostile name must not reorder what a terminal shows.
_BIDI: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class RosterRecord(msgspec.Struct, array_like=True, frozen=True):
    """One member's record; a pool holds one current record per member."""

    pool: bytes  # 16: the pool id
    node: bytes  # 32: the member's Ed25519 identity public key (its NodeId)
    ssh_key: bytes  # 32: the member's Ed25519 SSH public key (host key and client key)
    name: str  # 1..64 UTF-8 bytes, shown to people
    addresses: tuple[str, ...]  # <= 16 "host:port", each <= 255 characters
    added_by: bytes  # 32: who admitted it (== node for the pool's founder)
    version: int  # 1..2^63-1, see protocol/pool.md section 3
    removed: bool  # tombstone: the member left or was removed


class SignedRecord(msgspec.Struct, array_like=True, frozen=True):
    """The wire form: the record's msgpack, who signed it and the Ed25519 signature."""

    body: bytes
    signer: bytes
    signature: bytes


_T = TypeVar("_T")

_ENCODER: Final = msgspec.msgpack.Encoder()
_RECORD_DECODER: Final = msgspec.msgpack.Decoder(RosterRecord)
_SIGNED_DECODER: Final = msgspec.msgpack.Decoder(SignedRecord)


def _check_len(error: type[PeerbakError], what: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise error(f"{what} must be {size} bytes, got {len(value)}")


def _check_name(error: type[PeerbakError], name: str) -> None:
    size = len(name.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_NAME_BYTES:
        raise error(f"a member name is 1..{MAX_NAME_BYTES} bytes of UTF-8, got {size}")
    for ch in name:
        if ch in _BIDI or unicodedata.category(ch) in {"Cc", "Cs", "Zl", "Zp"}:
            raise error(f"a member name may not contain {ch!r} (control character)")


def _check_addresses(error: type[PeerbakError], addresses: Sequence[str], limit: int) -> None:
    if len(addresses) > limit:
        raise error(f"at most {limit} addresses, got {len(addresses)}")
    for address in addresses:
        if len(address) > MAX_ADDRESS_LEN:
            raise error(f"an address is at most {MAX_ADDRESS_LEN} characters, got {len(address)}")
        match = _ADDRESS_RE.fullmatch(address)
        if match is None or int(match.group(1)) > 65535:
            raise error(f"not a host:port address: {address[:80]!r}")


def _check_record(record: RosterRecord, error: type[PeerbakError]) -> None:
    """Every field limit of protocol/pool.md section 1."""
    _check_len(error, "pool id", record.pool, POOL_ID_LEN)
    _check_len(error, "node id", record.node, KEY_LEN)
    _check_len(error, "ssh key", record.ssh_key, KEY_LEN)
    _check_len(error, "added_by", record.added_by, KEY_LEN)
    _check_name(error, record.name)
    _check_addresses(error, record.addresses, MAX_ADDRESSES)
    if not 1 <= record.version <= MAX_VERSION:
        raise error(f"version must be in 1..{MAX_VERSION}, got {record.version}")


def _sign(record: RosterRecord, signer: nacl.signing.SigningKey, domain: bytes) -> bytes:
    _check_record(record, InputError)
    body = _ENCODER.encode(record)
    signature = signer.sign(domain + body).signature
    return _ENCODER.encode(SignedRecord(body, bytes(signer.verify_key), signature))


def _decode_canonical(
    decoder: msgspec.msgpack.Decoder[_T], blob: bytes, error: type[PeerbakError], what: str
) -> _T:
    """Decode, then require the one canonical encoding: msgspec drops extra array elements
    and accepts non-minimal integers, so one value could otherwise travel as many different
    byte strings."""
    try:
        value = decoder.decode(blob)
    except (msgspec.MsgspecError, ValueError) as exc:  # ValueError: bad UTF-8
        raise error(f"malformed {what}: {exc}") from exc
    if _ENCODER.encode(value) != blob:
        raise error(f"{what} is not in canonical msgpack form")
    return value


def _open(blob: bytes, domain: bytes) -> tuple[RosterRecord, bytes]:
    if not isinstance(blob, bytes):
        raise RemoteProtocolError(f"a signed record is bytes, not {type(blob).__name__}")
    if len(blob) > MAX_SIGNED_RECORD:
        raise RemoteProtocolError(
            f"signed record of {len(blob)} bytes exceeds the {MAX_SIGNED_RECORD}-byte cap"
        )
    signed = _decode_canonical(_SIGNED_DECODER, blob, RemoteProtocolError, "signed record")
    record = _decode_canonical(_RECORD_DECODER, signed.body, RemoteProtocolError, "signed record")
    _check_len(RemoteProtocolError, "signer", signed.signer, KEY_LEN)
    _check_len(RemoteProtocolError, "signature", signed.signature, SIGNATURE_LEN)
    _check_record(record, RemoteProtocolError)
    try:
        nacl.signing.VerifyKey(signed.signer).verify(domain + signed.body, signed.signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError) as exc:
        raise IntegrityError(
            "roster record signature does not verify",
            obj="roster-record",
            ident=signed.signer.hex(),
            check="signature",
        ) from exc
    return record, signed.signer


def sign_record(record: RosterRecord, signer: nacl.signing.SigningKey) -> bytes:
    """Encoded :class:`SignedRecord`: Ed25519 over ``ROSTER_DOMAIN ‖ msgpack(record)``.

    A record breaking a field limit is an :class:`InputError` (it could never be accepted).
    """
    return _sign(record, signer, ROSTER_DOMAIN)


def open_record(blob: bytes) -> tuple[RosterRecord, bytes]:
    """``(record, signer)`` from an encoded :class:`SignedRecord`.

    Checks, in order: the size cap (before decoding), the msgpack shape, canonical
    encoding, field limits (all :class:`RemoteProtocolError`), then the signature
    (:class:`IntegrityError`). It does not judge whether the signer may sign the record:
    that is :class:`Roster`'s job.
    """
    return _open(blob, ROSTER_DOMAIN)


def ssh_public_key(keys: NodeKeys) -> bytes:
    """The node's raw 32-byte Ed25519 SSH public key (from ``keys.ssh_seed``)."""
    return bytes(nacl.signing.SigningKey(keys.ssh_seed).verify_key)


def found_pool(
    keys: NodeKeys, pool: bytes, name: str, addresses: Sequence[str], ssh_key: bytes
) -> bytes:
    """The founder's first record (``added_by == node``, version 1), signed."""
    node = bytes(keys.node_id)
    record = RosterRecord(pool, node, ssh_key, name, tuple(addresses), node, 1, False)
    return sign_record(record, keys.identity)
