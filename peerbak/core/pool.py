"""Pool membership: signed roster records, the rules every member applies, invites and joins.

A pool's membership is a set of signed :class:`RosterRecord` s, gossiped between members.
Every member keeps the records it has accepted and derives the roster from them by one
deterministic *replay* (records in ascending ``(version, bytes)`` order, each judged by the
rules against the roster formed by the records before it), so two members holding the same
records hold the same roster whatever order the records arrived in. The byte formats, the
rules and the join protocol are specified in ``protocol/pool.md``.

A friend joins with an invite token (:func:`encode_token`): the inviter's pinned SSH host
key, a single-use invite id and a 32-byte secret of which the inviter keeps only a public
*verifier*. The joiner proves knowledge of the secret with a signature bound to its own keys
(:func:`join_proof`), so a sniffed proof admits nobody else.

Pure: no event loop, sockets, files or clock (time is a parameter); randomness is passed in.
"""

from __future__ import annotations

import hmac
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import blake3
import msgspec
import nacl.exceptions
import nacl.signing

from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import (
    InputError,
    IntegrityError,
    NotFoundError,
    PeerbakError,
    RemoteProtocolError,
)
from peerbak.core.textcode import decode_text, encode_text

__all__ = [
    "INVITE_PROOF_CONTEXT",
    "JOIN_PROOF_DOMAIN",
    "MAX_ADDRESSES",
    "MAX_ADDRESS_LEN",
    "MAX_INVITE_ADDRESSES",
    "MAX_JOIN_REQUEST",
    "MAX_NAME_BYTES",
    "MAX_SIGNED_RECORD",
    "MAX_VERSION",
    "PENDING_MAX",
    "POOL_ID_LEN",
    "PROPOSAL_DOMAIN",
    "ROSTER_DOMAIN",
    "TOKEN_CHECK_CONTEXT",
    "TOKEN_MAX_INPUT",
    "TOKEN_MAX_PAYLOAD",
    "TOKEN_PARITY",
    "TOKEN_PREFIX",
    "Invite",
    "JoinRequest",
    "Roster",
    "RosterRecord",
    "SignedRecord",
    "check_join_proof",
    "check_join_request",
    "decode_join_request",
    "decode_token",
    "encode_join_request",
    "encode_token",
    "found_pool",
    "invite_verifier",
    "is_expired",
    "join_proof",
    "join_request",
    "new_invite",
    "open_proposal",
    "open_record",
    "propose_join",
    "sign_record",
    "ssh_public_key",
]

# ------------------------------------------------------------------------------ constants

POOL_ID_LEN: Final = 16
KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
INVITE_ID_LEN: Final = 16
INVITE_SECRET_LEN: Final = 32
#: A member's name: 1..64 bytes of UTF-8, no control or bidi-override characters.
MAX_NAME_BYTES: Final = 64
MAX_ADDRESSES: Final = 16
MAX_ADDRESS_LEN: Final = 255
MAX_INVITE_ADDRESSES: Final = 8
#: Versions are 1..2^63-1 (a signed 64-bit integer, for every implementation's sake).
MAX_VERSION: Final = (1 << 63) - 1
#: Cap on an encoded SignedRecord, checked before decoding. The largest record the field
#: limits allow encodes to 4,416 bytes, so the cap is 8 KiB (not 4 KiB): every legal
#: record must fit.
MAX_SIGNED_RECORD: Final = 8192
MAX_JOIN_REQUEST: Final = MAX_SIGNED_RECORD + 256
#: Refused records kept for a later replay (their signer's admission may still arrive).
PENDING_MAX: Final = 1024

#: Domain separation: what an Ed25519 signature covers is ``domain ‖ body``.
ROSTER_DOMAIN: Final = b"peerbak roster v1\x00"
PROPOSAL_DOMAIN: Final = b"peerbak join proposal v1\x00"
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

_ADDRESS_RE: Final = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?):([1-9][0-9]{0,4})"
)
#: Bidi controls ("Trojan Source"): a hostile name must not reorder what a terminal shows.
_BIDI: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_TOKEN_PREFIX_RE: Final = re.compile(
    r"\s*pb([0-9]{1,3})(?:[-\u2010\u2011\u2012\u2013\u2014\u2212]|\s)+", re.IGNORECASE
)

RandomBytes = Callable[[int], bytes]

# -------------------------------------------------------------------------------- records


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


class JoinRequest(msgspec.Struct, array_like=True, frozen=True):
    """Sent by the joiner over SSH: which invite, the proof, its self-signed proposal."""

    invite_id: bytes  # 16
    proof: bytes  # 64: join_proof(...)
    proposal: bytes  # a SignedRecord under PROPOSAL_DOMAIN, signed by the joiner


_T = TypeVar("_T")

_ENCODER: Final = msgspec.msgpack.Encoder()
_RECORD_DECODER: Final = msgspec.msgpack.Decoder(RosterRecord)
_SIGNED_DECODER: Final = msgspec.msgpack.Decoder(SignedRecord)
_INVITE_DECODER: Final = msgspec.msgpack.Decoder(Invite)
_JOIN_DECODER: Final = msgspec.msgpack.Decoder(JoinRequest)


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


# --------------------------------------------------------------------------------- roster


@dataclass(frozen=True, slots=True)
class _Entry:
    record: RosterRecord
    signer: bytes
    blob: bytes

    @property
    def key(self) -> tuple[int, bytes]:
        """Replay order; ties between two records of one version go to the greater bytes."""
        return (self.record.version, self.blob)


class Roster:
    """Pure state: the records a member holds and the roster they define.

    :meth:`apply` never raises: gossip feeds it hostile bytes. It returns whether the
    roster changed and leaves the reason for a refusal in :attr:`last_rejection`.
    """

    def __init__(self, pool: bytes, founder: bytes | None = None) -> None:
        _check_len(InputError, "pool id", pool, POOL_ID_LEN)
        if founder is not None:
            _check_len(InputError, "founder", founder, KEY_LEN)
        self.pool: Final = bytes(pool)
        self._founder = founder
        #: Every record held: the accepted ones and the pending (refused) ones.
        self._held: dict[bytes, _Entry] = {}
        #: Refused records in arrival order, for eviction beyond PENDING_MAX.
        self._pending: dict[bytes, None] = {}
        #: The newest held self-update of each (node, ssh_key, added_by): older ones are
        #: dropped on sight, as they can never matter again (protocol/pool.md section 3.4).
        self._updates: dict[tuple[bytes, bytes, bytes], bytes] = {}
        self._current: dict[bytes, _Entry] = {}
        #: Version of the record that began each live member's current membership.
        self._start: dict[bytes, int] = {}
        #: The records accepted by the last replay, in replay order.
        self._accepted: list[_Entry] = []
        self._reasons: dict[bytes, str] = {}
        #: Why the last :meth:`apply` refused its record ("" when it was accepted).
        self.last_rejection = ""

    # ---------------------------------------------------------------- reading

    @property
    def founder(self) -> bytes | None:
        """The founder's node id, fixed by the first founding record applied."""
        return self._founder

    def members(self) -> list[RosterRecord]:
        """Current, non-removed records, sorted by node id."""
        live = (e.record for e in self._current.values() if not e.record.removed)
        return sorted(live, key=lambda r: r.node)

    def record(self, node: bytes) -> RosterRecord | None:
        """The current record of ``node`` (a tombstone if it was removed), or None."""
        entry = self._current.get(bytes(node))
        return None if entry is None else entry.record

    def blobs(self) -> list[bytes]:
        """The records a peer needs to rebuild this roster, in replay order.

        Every accepted record: each member's current record (tombstones too, so removals
        spread), the admissions and removals bounding each membership (the evidence that
        lets a newcomer check a self-signed record, or an admission signed by a
        since-removed member), a member's last update before a removal (should the removal
        be undone by an older one arriving late).

        Two members holding the same records return the same list. Gossip converges on the
        roster (current records) even where they differ: a member may have dropped an older
        update that another still holds, when it also holds a newer one that is refused for
        now (section 3.4); neither is anyone's current record.
        """
        return [e.blob for e in self._accepted]

    def is_member(self, node: bytes) -> bool:
        entry = self._current.get(bytes(node))
        return entry is not None and not entry.record.removed

    def ssh_keys(self) -> dict[bytes, bytes]:
        """Node id -> SSH public key of every current member."""
        return {r.node: r.ssh_key for r in self.members()}

    @property
    def pending(self) -> int:
        """How many refused records are held in case their dependencies arrive."""
        return len(self._pending)

    # ---------------------------------------------------------------- applying

    def apply(self, blob: bytes) -> bool:
        """Take a signed record from anyone; return True if it was accepted.

        The roster changes exactly when a record is accepted; held records that waited for
        it may be accepted with it, so a member pushes what is new in :meth:`blobs`.
        Malformed, forged, foreign-pool, duplicate, stale and unauthorised records all
        return False (the reason is in :attr:`last_rejection`); never raises. A refused
        record is held (up to :data:`PENDING_MAX`) in case what it needs arrives later.
        """
        try:
            record, signer = open_record(blob)
        except PeerbakError as exc:
            self.last_rejection = str(exc)
            return False
        if record.pool != self.pool:
            self.last_rejection = "record for another pool"
            return False
        if blob in self._held:
            self.last_rejection = "record already held"
            return False
        entry = _Entry(record, signer, blob)
        lineage = _lineage(entry)
        newest = None if lineage is None else self._updates.get(lineage)
        if newest is not None:
            if self._held[newest].key > entry.key:
                self.last_rejection = "superseded by a newer update of the same member"
                return False
            self._forget(newest)
        if lineage is not None:
            self._updates[lineage] = blob
        if self._founder is None and _is_founding(record, signer):
            self._founder = record.node
        self._held[blob] = entry
        self._replay()
        accepted = blob not in self._reasons
        self.last_rejection = "" if accepted else self._reasons[blob]
        return accepted

    def _forget(self, blob: bytes) -> None:
        entry = self._held.pop(blob)
        self._pending.pop(blob, None)
        lineage = _lineage(entry)
        if lineage is not None and self._updates.get(lineage) == blob:
            del self._updates[lineage]

    def _replay(self) -> None:
        """Rebuild the roster from the held records; see protocol/pool.md section 3."""
        current: dict[bytes, _Entry] = {}
        start: dict[bytes, int] = {}
        accepted: list[_Entry] = []
        reasons: dict[bytes, str] = {}
        for entry in sorted(self._held.values(), key=lambda e: e.key):
            reason = self._judge(entry, current)
            if reason:
                reasons[entry.blob] = reason
                continue
            node = entry.record.node
            previous = current.get(node)
            if previous is None or previous.record.removed:
                start[node] = entry.record.version  # (re-)admission: a membership begins
            current[node] = entry
            accepted.append(entry)
        for entry in accepted:
            self._pending.pop(entry.blob, None)
        for blob in reasons:
            self._pending.setdefault(blob, None)
        # Refused records do not shape the roster, so evicting them is safe, except the
        # newest update of a lineage some accepted record belongs to: it may have displaced
        # an older update that becomes current if a removal is undone (section 3.4).
        lineages = {(e.record.node, e.record.ssh_key, e.record.added_by) for e in accepted}
        evictable = [
            blob
            for blob in self._pending
            if (lineage := _lineage(self._held[blob])) is None
            or lineage not in lineages
            or self._updates.get(lineage) != blob
        ]
        for blob in evictable[: max(0, len(evictable) - PENDING_MAX)]:
            self._forget(blob)
        self._current = current
        self._start = {n: v for n, v in start.items() if not current[n].record.removed}
        self._accepted = accepted
        self._reasons = reasons

    def _judge(self, entry: _Entry, current: dict[bytes, _Entry]) -> str:
        """Why the record is refused after the records in ``current`` ("" if accepted)."""
        cur = current.get(entry.record.node)
        signer = current.get(entry.signer)
        signer_live = signer is not None and not signer.record.removed
        if cur is None or cur.record.removed:
            return self._judge_admission(entry, cur, signer_live)
        return _judge_change(entry, cur, signer_live)

    def _judge_admission(self, entry: _Entry, cur: _Entry | None, signer_live: bool) -> str:
        """Rules 1-3 and 7: a record for a node that is not a member now."""
        record, signer = entry.record, entry.signer
        if record.removed:
            return "removal of a node that is not a member"
        if signer == record.node:
            if cur is not None:
                return "a removed member stays removed: rejoining needs a new admission"
            if _is_founding(record, signer) and record.node == self._founder:
                return ""
            return "a new member must be admitted by a current member"
        if record.added_by != signer:
            return "an admission must name its signer in added_by"
        return "" if signer_live else "the signer is not a current member"

    # ---------------------------------------------------------------- making records

    def next_version(self, node: bytes, signer: bytes, *, removal: bool = False) -> int:
        """The version ``signer`` should give its next record about ``node``.

        Greater than every held record the new one must follow in replay (protocol/pool.md
        section 3.3). A removal follows the member's admission and every record it signed
        about others (so its admissions stand), but not its own updates: however high it
        pushed its version, it can be removed, and a removal wins over a concurrent update.
        """
        node, signer = bytes(node), bytes(signer)
        cur = self._current.get(node)
        after: list[int] = []
        if cur is None or cur.record.removed:  # (re-)admission
            after.append(self._start.get(signer, 0))
            if cur is not None:
                after.append(cur.record.version)
        elif not removal:  # an update, by the member itself
            after.append(cur.record.version)
        else:
            after += [self._start[node], self._start.get(signer, 0)]
            after += (
                e.record.version
                for e in self._accepted
                if e.signer == node and e.record.node != node and e.record.version < MAX_VERSION
            )
        version = max(after) + 1
        if version > MAX_VERSION:
            raise InputError("version space exhausted: a record claims a version near 2^63")
        return version

    def _require_member(self, keys: NodeKeys) -> bytes:
        me = bytes(keys.node_id)
        if not self.is_member(me):
            raise InputError("this node is not a current member of the pool")
        return me

    def admit(self, keys: NodeKeys, proposal: RosterRecord) -> bytes:
        """The admission record for a checked proposal: ``added_by`` = us, signed by us."""
        me = self._require_member(keys)
        if proposal.pool != self.pool:
            raise InputError("the proposal is for another pool")
        if self.is_member(proposal.node):
            raise InputError("the joiner is already a member")
        record = msgspec.structs.replace(
            proposal, added_by=me, version=self.next_version(proposal.node, me), removed=False
        )
        return sign_record(record, keys.identity)

    def remove(self, keys: NodeKeys, node: bytes) -> bytes:
        """A tombstone for ``node`` (ourselves: leaving the pool), signed by us."""
        me = self._require_member(keys)
        entry = self._current.get(bytes(node))
        if entry is None or entry.record.removed:
            raise NotFoundError(f"no current member {bytes(node).hex()[:12]}")
        record = msgspec.structs.replace(
            entry.record, version=self.next_version(node, me, removal=True), removed=True
        )
        return sign_record(record, keys.identity)

    def update(
        self, keys: NodeKeys, *, name: str | None = None, addresses: Sequence[str] | None = None
    ) -> bytes:
        """Our own record with a new name and/or addresses, one version up."""
        me = self._require_member(keys)
        cur = self._current[me].record
        record = msgspec.structs.replace(
            cur,
            name=cur.name if name is None else name,
            addresses=cur.addresses if addresses is None else tuple(addresses),
            version=self.next_version(me, me),
        )
        return sign_record(record, keys.identity)


def _judge_change(entry: _Entry, cur: _Entry, signer_live: bool) -> str:
    """Rules 4-6 and 8: a newer record for a current member (an update or a removal)."""
    record, signer = entry.record, entry.signer
    if record.removed:
        if signer != record.node and not signer_live:
            return "the signer is not a current member"
    elif signer != record.node:
        return "only the member itself may update its record; others may only remove it"
    if record.ssh_key != cur.record.ssh_key:
        return "a member's ssh_key cannot change"
    if record.added_by != cur.record.added_by:
        return "a member's added_by cannot change"
    return ""


def _lineage(entry: _Entry) -> tuple[bytes, bytes, bytes] | None:
    """(node, ssh_key, added_by) of a self-update (self-signed, live, version >= 2), else None.

    Such a record is only ever accepted as an update of a current member, never as the start
    of a membership, so the newest one of a lineage makes the older ones irrelevant.
    """
    record = entry.record
    if entry.signer != record.node or record.removed or record.version < 2:
        return None
    return (record.node, record.ssh_key, record.added_by)


def _is_founding(record: RosterRecord, signer: bytes) -> bool:
    return record.node == record.added_by == signer and record.version == 1 and not record.removed


# ---------------------------------------------------------------------- invites and proofs


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


# ---------------------------------------------------------------------------- joining


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


def join_request(
    keys: NodeKeys, invite: Invite, name: str, addresses: Sequence[str]
) -> JoinRequest:
    """What the joiner sends: the invite id, the proof bound to its keys, its proposal."""
    proof = join_proof(
        invite.secret, invite.pool, invite.invite_id, bytes(keys.node_id), ssh_public_key(keys)
    )
    proposal = propose_join(keys, invite.pool, invite.inviter, name, addresses)
    return JoinRequest(invite.invite_id, proof, proposal)


def encode_join_request(request: JoinRequest) -> bytes:
    return _ENCODER.encode(request)


def decode_join_request(blob: bytes) -> JoinRequest:
    """Size cap first, then shape; RemoteProtocolError if malformed."""
    if not isinstance(blob, bytes) or len(blob) > MAX_JOIN_REQUEST:
        raise RemoteProtocolError(f"join request over {MAX_JOIN_REQUEST} bytes or not bytes")
    request = _decode_canonical(_JOIN_DECODER, blob, RemoteProtocolError, "join request")
    _check_len(RemoteProtocolError, "invite id", request.invite_id, INVITE_ID_LEN)
    _check_len(RemoteProtocolError, "join proof", request.proof, SIGNATURE_LEN)
    return request


def check_join_request(
    request: JoinRequest, *, pool: bytes, inviter: bytes, verifier: bytes
) -> RosterRecord:
    """The inviter's checks (after finding ``verifier`` by ``request.invite_id``).

    Returns the proposed record to admit. A malformed or mis-addressed proposal is a
    :class:`RemoteProtocolError`; a bad signature or proof an :class:`IntegrityError`.
    The caller must also check that the SSH client key equals ``record.ssh_key``, that
    the invite is unexpired and unused, and consume it atomically before admitting.
    """
    record = open_proposal(request.proposal)
    if record.pool != pool:
        raise RemoteProtocolError("the proposal is for another pool")
    if record.added_by != inviter:
        raise RemoteProtocolError("the proposal names another inviter")
    if not check_join_proof(
        verifier, pool, request.invite_id, record.node, record.ssh_key, request.proof
    ):
        raise IntegrityError(
            "join proof does not verify: wrong invite secret, or made for other keys",
            obj="join-proof",
            ident=request.invite_id.hex(),
            check="signature",
        )
    return record
