"""Pool membership: signed roster records, the rules every member applies, invites and joins.

A pool's membership is a set of signed :class:`RosterRecord` s, gossiped between members;
every member derives the same roster from the same records. A friend joins with an invite
token and proves, bound to its own keys, that it knows the invite's secret. The byte
formats, the rules and the join protocol are specified in ``protocol/pool.md``.

One module per part, in the order they build on each other: :mod:`.records` (fields,
limits, canonical msgpack, signatures), :mod:`.roster` (the replay and its rules),
:mod:`.invites` (tokens and the join proof), :mod:`.join` (the joiner's claim and the
inviter's checks). Everything is importable from here.

Pure: no event loop, sockets, files or clock (time is a parameter); randomness is passed in.
"""

from __future__ import annotations

from peerbak.core.pool.invites import (
    INVITE_ID_LEN,
    INVITE_PROOF_CONTEXT,
    INVITE_SECRET_LEN,
    JOIN_PROOF_DOMAIN,
    MAX_INVITE_ADDRESSES,
    TOKEN_CHECK_CONTEXT,
    TOKEN_MAX_INPUT,
    TOKEN_MAX_PAYLOAD,
    TOKEN_PARITY,
    TOKEN_PREFIX,
    Invite,
    RandomBytes,
    check_join_proof,
    decode_token,
    encode_token,
    invite_verifier,
    is_expired,
    join_proof,
    new_invite,
)
from peerbak.core.pool.join import (
    MAX_JOIN_CLAIM,
    PROPOSAL_DOMAIN,
    JoinClaim,
    check_join_claim,
    decode_join_claim,
    encode_join_claim,
    join_claim,
    open_proposal,
    propose_join,
)
from peerbak.core.pool.records import (
    KEY_LEN,
    MAX_ADDRESS_LEN,
    MAX_ADDRESSES,
    MAX_NAME_BYTES,
    MAX_SIGNED_RECORD,
    MAX_VERSION,
    POOL_ID_LEN,
    ROSTER_DOMAIN,
    SIGNATURE_LEN,
    RosterRecord,
    SignedRecord,
    found_pool,
    open_record,
    sign_record,
    ssh_public_key,
)
from peerbak.core.pool.roster import PENDING_MAX, Roster

__all__ = [
    "INVITE_ID_LEN",
    "INVITE_PROOF_CONTEXT",
    "INVITE_SECRET_LEN",
    "JOIN_PROOF_DOMAIN",
    "KEY_LEN",
    "MAX_ADDRESSES",
    "MAX_ADDRESS_LEN",
    "MAX_INVITE_ADDRESSES",
    "MAX_JOIN_CLAIM",
    "MAX_NAME_BYTES",
    "MAX_SIGNED_RECORD",
    "MAX_VERSION",
    "PENDING_MAX",
    "POOL_ID_LEN",
    "PROPOSAL_DOMAIN",
    "ROSTER_DOMAIN",
    "SIGNATURE_LEN",
    "TOKEN_CHECK_CONTEXT",
    "TOKEN_MAX_INPUT",
    "TOKEN_MAX_PAYLOAD",
    "TOKEN_PARITY",
    "TOKEN_PREFIX",
    "Invite",
    "JoinClaim",
    "RandomBytes",
    "Roster",
    "RosterRecord",
    "SignedRecord",
    "check_join_claim",
    "check_join_proof",
    "decode_join_claim",
    "decode_token",
    "encode_join_claim",
    "encode_token",
    "found_pool",
    "invite_verifier",
    "is_expired",
    "join_claim",
    "join_proof",
    "new_invite",
    "open_proposal",
    "open_record",
    "propose_join",
    "sign_record",
    "ssh_public_key",
]
