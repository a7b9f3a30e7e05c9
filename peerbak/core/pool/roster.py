"""The roster: the records a member holds and the membership they define.

Every member derives the roster from the records it holds by one deterministic *replay*
(records in ascending ``(version, bytes)`` order, each judged by the rules against the
roster formed by the records before it), so two members holding the same records hold the
same roster whatever order the records arrived in (protocol/pool.md sections 2 and 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import InputError, NotFoundError, PeerbakError
from peerbak.core.pool.records import (
    KEY_LEN,
    MAX_VERSION,
    POOL_ID_LEN,
    RosterRecord,
    _check_len,
    open_record,
    sign_record,
)

__all__ = ["PENDING_MAX", "Roster"]

#: Refused records kept for a later replay (their signer's admission may still arrive).
PENDING_MAX: Final = 1024


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
