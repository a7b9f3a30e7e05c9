"""Joining: the joiner's signed proposal and its claim on an invite, checked by the inviter.

The joiner sends a :class:`JoinClaim` (which invite, the proof that it knows the invite's
secret, and the record it asks for, self-signed as a *proposal*); it travels as the fields
of the wire's ``JoinRequest`` message. The inviter checks it with :func:`check_join_claim`
and issues the admission record itself (protocol/pool.md section 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import IntegrityError, RemoteProtocolError
from peerbak.core.pool.invites import INVITE_ID_LEN, Invite, check_join_proof, join_proof
from peerbak.core.pool.records import (
    _ENCODER,
    MAX_SIGNED_RECORD,
    SIGNATURE_LEN,
    RosterRecord,
    _check_len,
    _decode_canonical,
    _open,
    _sign,
    ssh_public_key,
)

__all__ = [
    "MAX_JOIN_CLAIM",
    "PROPOSAL_DOMAIN",
    "JoinClaim",
    "check_join_claim",
    "decode_join_claim",
    "encode_join_claim",
    "join_claim",
    "open_proposal",
    "propose_join",
]

PROPOSAL_DOMAIN: Final = b"peerbak join proposal v1\x00"
MAX_JOIN_CLAIM: Final = MAX_SIGNED_RECORD + 256


class JoinClaim(msgspec.Struct, array_like=True, frozen=True):
    """The joiner's claim on an invite: which invite, the proof, its self-signed proposal.

    Not a wire message: the wire's ``JoinRequest`` carries these three fields.
    """

    invite_id: bytes  # 16
    proof: bytes  # 64: join_proof(...)
    proposal: bytes  # a SignedRecord under PROPOSAL_DOMAIN, signed by the joiner


_JOIN_DECODER: Final = msgspec.msgpack.Decoder(JoinClaim)


def propose_join(
    keys: NodeKeys, pool: bytes, inviter: bytes, name: str, addresses: Sequence[str]
) -> bytes:
    """The joiner's proposed record, signed by the joiner under :data:`PROPOSAL_DOMAIN`.

    It proves possession of the identity key and names the inviter (``added_by``); it can
    never enter a roster (other domain). The inviter issues the admission record.
    """
    record = RosterRecord(
        pool, bytes(keys.node_id), ssh_public_key(keys), name, tuple(addresses), inviter, 1, False
    )
    return _sign(record, keys.identity, PROPOSAL_DOMAIN)


def open_proposal(blob: bytes) -> RosterRecord:
    """A proposal's record, checked: canonical, limits, self-signed, not a tombstone."""
    record, signer = _open(blob, PROPOSAL_DOMAIN)
    if signer != record.node or record.removed or record.version != 1:
        raise RemoteProtocolError("a join proposal is a live version-1 record signed by the joiner")
    return record


def join_claim(keys: NodeKeys, invite: Invite, name: str, addresses: Sequence[str]) -> JoinClaim:
    """What the joiner claims: the invite id, the proof bound to its keys, its proposal."""
    proof = join_proof(
        invite.secret, invite.pool, invite.invite_id, bytes(keys.node_id), ssh_public_key(keys)
    )
    proposal = propose_join(keys, invite.pool, invite.inviter, name, addresses)
    return JoinClaim(invite.invite_id, proof, proposal)


def encode_join_claim(claim: JoinClaim) -> bytes:
    """The canonical msgpack array of protocol/pool.md section 6.2."""
    return _ENCODER.encode(claim)


def decode_join_claim(blob: bytes) -> JoinClaim:
    """Size cap first, then shape; RemoteProtocolError if malformed."""
    if not isinstance(blob, bytes) or len(blob) > MAX_JOIN_CLAIM:
        raise RemoteProtocolError(f"join claim over {MAX_JOIN_CLAIM} bytes or not bytes")
    claim = _decode_canonical(_JOIN_DECODER, blob, RemoteProtocolError, "join claim")
    _check_len(RemoteProtocolError, "invite id", claim.invite_id, INVITE_ID_LEN)
    _check_len(RemoteProtocolError, "join proof", claim.proof, SIGNATURE_LEN)
    return claim


def check_join_claim(
    claim: JoinClaim, *, pool: bytes, inviter: bytes, verifier: bytes
) -> RosterRecord:
    """The inviter's checks (after finding ``verifier`` by ``claim.invite_id``).

    Returns the proposed record to admit. A malformed or mis-addressed proposal is a
    :class:`RemoteProtocolError`; a bad signature or proof an :class:`IntegrityError`.
    The caller must also check that the SSH client key equals ``record.ssh_key``, that
    the invite is unexpired and unused, and consume it atomically before admitting.
    """
    record = open_proposal(claim.proposal)
    if record.pool != pool:
        raise RemoteProtocolError("the proposal is for another pool")
    if record.added_by != inviter:
        raise RemoteProtocolError("the proposal names another inviter")
    if not check_join_proof(
        verifier, pool, claim.invite_id, record.node, record.ssh_key, claim.proof
    ):
        raise IntegrityError(
            "join proof does not verify: wrong invite secret, or made for other keys",
            obj="join-proof",
            ident=claim.invite_id.hex(),
            check="signature",
        )
    return record
