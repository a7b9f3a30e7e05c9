"""Invites: the token a friend types or scans, and the proof that it knows the secret.

An invite token (:func:`encode_token`) carries the inviter's pinned SSH host key, a
single-use invite id and a 32-byte secret of which the inviter keeps only a public
*verifier*. The joiner proves knowledge of the secret with a signature bound to its own keys
(:func:`join_proof`), so a sniffed proof admits nobody else (protocol/pool.md sections 5
and 6.1).
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Callable, Sequence
from typing import Final

import blake3
import msgspec
import nacl.exceptions
import nacl.signing

from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import InputError, PeerbakError
from peerbak.core.pool.records import (
    _ENCODER,
    KEY_LEN,
    MAX_VERSION,
    POOL_ID_LEN,
    SIGNATURE_LEN,
    _check_addresses,
    _check_len,
    _decode_canonical,
)
from peerbak.core.textcode import decode_text, encode_text

__all__ = [
    "INVITE_ID_LEN",
    "INVITE_PROOF_CONTEXT",
    "INVITE_SECRET_LEN",
    "JOIN_PROOF_DOMAIN",
    "MAX_INVITE_ADDRESSES",
    "TOKEN_CHECK_CONTEXT",
    "TOKEN_MAX_INPUT",
    "TOKEN_MAX_PAYLOAD",
    "TOKEN_PARITY",
    "TOKEN_PREFIX",
    "Invite",
    "RandomBytes",
    "check_join_proof",
    "decode_token",
    "encode_token",
    "invite_verifier",
    "is_expired",
    "join_proof",
    "new_invite",
]

INVITE_ID_LEN: Final = 16
INVITE_SECRET_LEN: Final = 32
MAX_INVITE_ADDRESSES: Final = 8
#: Domain separation for the join proof, as for records (pool.md section 6.1).
JOIN_PROOF_DOMAIN: Final = b"peerbak join v1\x00"
#: blake3 ``derive_key`` contexts (same naming as :data:`peerbak.core.crypto.CONTEXTS`).
INVITE_PROOF_CONTEXT: Final = "peerbak 2026-11-25 invite proof key v1"
TOKEN_CHECK_CONTEXT: Final = "peerbak 2026-11-25 invite token check v1"  # noqa: S105 (a label)

TOKEN_PREFIX: Final = "pb1-"  # noqa: S105 (a label, not a secret)
TOKEN_VERSION: Final = 1
#: Reed-Solomon parity bytes of a token: 8 unknown byte errors or 16 erased bytes, i.e.
#: any 4 mistyped characters, or any 8 unreadable ('?') ones.
TOKEN_PARITY: Final = 16
_TOKEN_CHECK_LEN: Final = 4
#: One RS codeword is at most 255 bytes: msgpack(invite) may use 255 - 16 - 4 of them.
TOKEN_MAX_PAYLOAD: Final = 255 - TOKEN_PARITY - _TOKEN_CHECK_LEN
#: Raw token input cap, checked first (a full token is at most 493 characters).
TOKEN_MAX_INPUT: Final = 1024
_TOKEN_PREFIX_RE: Final = re.compile(
    r"\s*pb([0-9]{1,3})(?:[-\u2010\u2011\u2012\u2013\u2014\u2212]|\s)+", re.IGNORECASE
)

RandomBytes = Callable[[int], bytes]


class Invite(msgspec.Struct, array_like=True, frozen=True):
    """What an invite token carries. ``repr`` leaves the secret out, so logs never hold it."""

    pool: bytes  # 16
    inviter: bytes  # 32: inviter node id
    host_key: bytes  # 32: inviter's raw Ed25519 SSH host key, pinned by the joiner
    invite_id: bytes  # 16
    secret: bytes  # 32, random
    expires: int  # unix seconds
    addresses: tuple[str, ...]  # <= 8 "host:port"

    def __repr__(self) -> str:
        return (
            f"Invite(pool={self.pool.hex()}, inviter={self.inviter.hex()[:12]}…, "
            f"invite_id={self.invite_id.hex()}, expires={self.expires}, "
            f"addresses={self.addresses!r})"
        )


_INVITE_DECODER: Final = msgspec.msgpack.Decoder(Invite)


def _proof_key(secret: bytes) -> nacl.signing.SigningKey:
    if not isinstance(secret, bytes) or len(secret) != INVITE_SECRET_LEN:
        raise InputError(f"an invite secret is {INVITE_SECRET_LEN} bytes")
    seed: bytes = blake3.blake3(secret, derive_key_context=INVITE_PROOF_CONTEXT).digest()
    return nacl.signing.SigningKey(seed)


def invite_verifier(secret: bytes) -> bytes:
    """The public key the inviter stores instead of the secret (32 bytes)."""
    return bytes(_proof_key(secret).verify_key)


def _proof_message(pool: bytes, invite_id: bytes, node: bytes, ssh_key: bytes) -> bytes:
    return JOIN_PROOF_DOMAIN + pool + invite_id + node + ssh_key


def _proof_inputs_ok(pool: bytes, invite_id: bytes, node: bytes, ssh_key: bytes) -> bool:
    sizes = ((pool, POOL_ID_LEN), (invite_id, INVITE_ID_LEN), (node, KEY_LEN), (ssh_key, KEY_LEN))
    return all(isinstance(v, bytes) and len(v) == n for v, n in sizes)


def join_proof(
    secret: bytes, pool: bytes, invite_id: bytes, joiner_node: bytes, joiner_ssh_key: bytes
) -> bytes:
    """64-byte Ed25519 signature by the secret's derived key, bound to the joiner's keys."""
    if not _proof_inputs_ok(pool, invite_id, joiner_node, joiner_ssh_key):
        raise InputError("join proof inputs have the wrong sizes")
    message = _proof_message(pool, invite_id, joiner_node, joiner_ssh_key)
    return _proof_key(secret).sign(message).signature


def check_join_proof(
    verifier: bytes,
    pool: bytes,
    invite_id: bytes,
    joiner_node: bytes,
    joiner_ssh_key: bytes,
    proof: bytes,
) -> bool:
    """Whether ``proof`` was made with the invite's secret for exactly these keys."""
    if not _proof_inputs_ok(pool, invite_id, joiner_node, joiner_ssh_key):
        return False
    if not isinstance(verifier, bytes) or len(verifier) != KEY_LEN:
        return False
    if not isinstance(proof, bytes) or len(proof) != SIGNATURE_LEN:
        return False
    message = _proof_message(pool, invite_id, joiner_node, joiner_ssh_key)
    try:
        nacl.signing.VerifyKey(verifier).verify(message, proof)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def _check_invite(invite: Invite, error: type[PeerbakError]) -> bytes:
    """Field limits of an invite; returns its msgpack (which must fit in a token)."""
    _check_len(error, "pool id", invite.pool, POOL_ID_LEN)
    _check_len(error, "inviter", invite.inviter, KEY_LEN)
    _check_len(error, "host key", invite.host_key, KEY_LEN)
    _check_len(error, "invite id", invite.invite_id, INVITE_ID_LEN)
    _check_len(error, "invite secret", invite.secret, INVITE_SECRET_LEN)
    if not 0 <= invite.expires <= MAX_VERSION:
        raise error(f"invite expiry out of range: {invite.expires}")
    _check_addresses(error, invite.addresses, MAX_INVITE_ADDRESSES)
    body = _ENCODER.encode(invite)
    if len(body) > TOKEN_MAX_PAYLOAD:
        raise error(
            f"invite of {len(body)} bytes does not fit in a token ({TOKEN_MAX_PAYLOAD} at most): "
            "give fewer or shorter addresses"
        )
    return body


def new_invite(
    keys: NodeKeys,
    pool: bytes,
    host_key: bytes,
    addresses: Sequence[str],
    now: float,
    ttl: float,
    random_bytes: RandomBytes,
) -> tuple[Invite, bytes]:
    """A fresh invite and its verifier; the inviter stores (invite_id, verifier, expires)."""
    if not (math.isfinite(now) and math.isfinite(ttl)) or ttl <= 0:
        raise InputError(f"an invite needs a positive lifetime, got {ttl!r}")
    invite = Invite(
        pool=pool,
        inviter=bytes(keys.node_id),
        host_key=host_key,
        invite_id=random_bytes(INVITE_ID_LEN),
        secret=random_bytes(INVITE_SECRET_LEN),
        expires=math.floor(now + ttl),
        addresses=tuple(addresses),
    )
    _check_invite(invite, InputError)
    return invite, invite_verifier(invite.secret)


def is_expired(invite: Invite, now: float) -> bool:
    """True from second ``invite.expires`` on; joiner and inviter both refuse then."""
    return now >= invite.expires


def _token_check(body: bytes) -> bytes:
    digest: bytes = blake3.blake3(body, derive_key_context=TOKEN_CHECK_CONTEXT).digest()
    return digest[:_TOKEN_CHECK_LEN]


def encode_token(invite: Invite) -> str:
    """``pb1-`` + text code of ``msgpack(invite) ‖ check(4)`` with 16 parity bytes."""
    body = _check_invite(invite, InputError)
    return TOKEN_PREFIX + encode_text(body + _token_check(body), parity=TOKEN_PARITY)


def decode_token(text: str) -> Invite:
    """Read an invite token as typed or pasted, repairing typos; every failure is InputError."""
    if not isinstance(text, str):
        raise InputError(f"an invite token is text, not {type(text).__name__}")
    if len(text) > TOKEN_MAX_INPUT:
        raise InputError(
            f"input too long: {len(text)} characters, at most {TOKEN_MAX_INPUT} accepted"
        )
    match = _TOKEN_PREFIX_RE.match(text)
    if match is None:
        raise InputError(f"not a peerbak invite token (it starts with {TOKEN_PREFIX!r})")
    if int(match.group(1)) != TOKEN_VERSION:
        raise InputError(
            f"invite token format {int(match.group(1))} is not known to this version of peerbak"
        )
    decoded = decode_text(text[match.end() :], parity=TOKEN_PARITY, max_chars=TOKEN_MAX_INPUT)
    body, check = decoded.payload[:-_TOKEN_CHECK_LEN], decoded.payload[-_TOKEN_CHECK_LEN:]
    if not body or not hmac.compare_digest(check, _token_check(body)):
        raise InputError("too many typos: the invite token fails its check after correction")
    invite = _decode_canonical(_INVITE_DECODER, body, InputError, "invite token")
    _check_invite(invite, InputError)
    return invite
