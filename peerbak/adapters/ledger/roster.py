"""The roster's signed records, when members were last heard from, and invites.

The roster itself is replayed from its records (peerbak.core.pool); the ledger keeps
them so a node restarts knowing its pool. An invite's uses are counted here, in single
statements, so that racing joiners cannot share its last use.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import blake3

from peerbak.adapters.ledger.db import Connection


class InviteStatus(enum.Enum):
    """What became of an attempt to use an invite."""

    OK = "ok"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED_UP = "used-up"


@dataclass(frozen=True, slots=True)
class MemberRow:
    """When this node first and last heard from a member."""

    node_id: bytes
    first_seen: float | None
    last_seen: float | None


class RosterRecords(Connection):
    """Roster records, member sightings and invites (see the module docstring)."""

    async def add_records(self, blobs: list[bytes], now: float) -> int:
        """Keep signed roster records (the roster is replayed from all of them, see
        peerbak.core.pool); returns how many were new."""

        async def add() -> int:
            added = 0
            await self._db.execute("BEGIN IMMEDIATE")
            for blob in blobs:
                cur = await self._db.execute(
                    "INSERT OR IGNORE INTO roster_records VALUES (?, ?, ?)",
                    (blake3.blake3(blob).digest(), blob, now),
                )
                added += cur.rowcount
            await self._db.execute("COMMIT")
            return added

        return await self._guard(add)

    async def records(self) -> list[bytes]:
        async def rows() -> list[bytes]:
            async with self._db.execute("SELECT record FROM roster_records") as cur:
                return [bytes(r[0]) for r in await cur.fetchall()]

        return await self._guard(rows)

    async def forget_records(self, keep: list[bytes]) -> None:
        """Drop records the roster no longer needs (superseded updates)."""
        digests = {blake3.blake3(b).digest() for b in keep}

        async def prune() -> None:
            async with self._db.execute("SELECT digest FROM roster_records") as cur:
                stale = [r[0] for r in await cur.fetchall() if bytes(r[0]) not in digests]
            await self._db.executemany(
                "DELETE FROM roster_records WHERE digest = ?", [(d,) for d in stale]
            )

        await self._guard(prune)

    async def touch_member(self, node_id: bytes, now: float) -> None:
        await self._guard(
            lambda: self._db.execute(
                """INSERT INTO members (node_id, first_seen, last_seen) VALUES (?, ?, ?)
                   ON CONFLICT(node_id) DO UPDATE SET last_seen = excluded.last_seen""",
                (node_id, now, now),
            )
        )

    async def member(self, node_id: bytes) -> MemberRow | None:
        async def row() -> MemberRow | None:
            async with self._db.execute(
                "SELECT node_id, first_seen, last_seen FROM members WHERE node_id = ?",
                (node_id,),
            ) as cur:
                found = await cur.fetchone()
            if found is None:
                return None
            return MemberRow(bytes(found[0]), found[1], found[2])

        return await self._guard(row)

    # -- invites --------------------------------------------------------------------------

    async def add_invite(
        self, invite_id: bytes, verifier: bytes, now: float, expires: float, uses: int
    ) -> None:
        await self._guard(
            lambda: self._db.execute(
                "INSERT INTO invites (invite_id, verifier, created, expires, uses_left) "
                "VALUES (?, ?, ?, ?, ?)",
                (invite_id, verifier, now, expires, uses),
            )
        )

    async def invite_verifier(self, invite_id: bytes) -> bytes | None:
        async def get() -> bytes | None:
            async with self._db.execute(
                "SELECT verifier FROM invites WHERE invite_id = ?", (invite_id,)
            ) as cur:
                row = await cur.fetchone()
            return None if row is None else bytes(row[0])

        return await self._guard(get)

    async def use_invite(
        self, invite_id: bytes, now: float, used_by: bytes
    ) -> tuple[InviteStatus, bytes | None]:
        """Check and consume one use in one statement: of racing callers for the last use,
        exactly one gets OK (SQLite serialises writers)."""

        async def use() -> tuple[InviteStatus, bytes | None]:
            async with self._db.execute(
                """UPDATE invites SET uses_left = uses_left - 1, used_by = ?
                   WHERE invite_id = ? AND uses_left > 0 AND expires > ?
                   RETURNING verifier""",
                (used_by, invite_id, now),
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                return InviteStatus.OK, bytes(row[0])
            async with self._db.execute(
                "SELECT expires, uses_left FROM invites WHERE invite_id = ?", (invite_id,)
            ) as cur:
                found = await cur.fetchone()
            if found is None:
                return InviteStatus.UNKNOWN, None
            if found[1] <= 0:
                return InviteStatus.USED_UP, None
            return InviteStatus.EXPIRED, None

        return await self._guard(use)

    async def refund_invite(self, invite_id: bytes) -> None:
        await self._guard(
            lambda: self._db.execute(
                "UPDATE invites SET uses_left = uses_left + 1 WHERE invite_id = ?", (invite_id,)
            )
        )

    async def has_open_invites(self, now: float) -> bool:
        async def any_open() -> bool:
            async with self._db.execute(
                "SELECT 1 FROM invites WHERE uses_left > 0 AND expires > ? LIMIT 1", (now,)
            ) as cur:
                return await cur.fetchone() is not None

        return await self._guard(any_open)
