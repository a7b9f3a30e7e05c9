"""The node's ledger: one SQLite file (aiosqlite), the only place with SQL.

WAL mode with ``synchronous=NORMAL``: durable across a crash of the process; a power
cut may lose the last transactions, which are then re-learned from peers (the roster
is gossiped; the pool holds what the ledger caches). Migrations run in order, each in
one transaction; a ledger from a newer peerbak is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

import aiosqlite
import blake3

from peerbak.errors import LedgerError

T = TypeVar("T")

MIGRATIONS: Final[list[str]] = [
    # 1: the roster and invites
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE roster_records (
        digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
        record BLOB NOT NULL,
        received REAL NOT NULL
    );
    CREATE TABLE members (
        node_id BLOB PRIMARY KEY CHECK (length(node_id) = 32),
        first_seen REAL,
        last_seen REAL
    );
    CREATE TABLE invites (
        invite_id BLOB PRIMARY KEY CHECK (length(invite_id) = 16),
        verifier BLOB NOT NULL CHECK (length(verifier) = 32),
        created REAL NOT NULL,
        expires REAL NOT NULL,
        uses_left INTEGER NOT NULL,
        used_by BLOB
    );
    """,
]


class InviteStatus(enum.Enum):
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


class Ledger:
    """An open ledger. Use ``async with await Ledger.open(path)`` or call :meth:`close`."""

    def __init__(self, path: Path, db: aiosqlite.Connection) -> None:
        self.path = path
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> Ledger:
        try:
            db = await aiosqlite.connect(path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger at {path}: {exc}") from None
        ledger = cls(path, db)
        try:
            await ledger._setup()
        except BaseException:
            await db.close()
            raise
        return ledger

    async def _setup(self) -> None:
        async def setup() -> None:
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            async with self._db.execute("SELECT version FROM schema_version") as cur:
                row = await cur.fetchone()
            version = int(row[0]) if row else 0
            if version > len(MIGRATIONS):
                raise LedgerError(
                    f"the ledger at {self.path} was written by a newer peerbak "
                    f"(schema {version}, this one knows {len(MIGRATIONS)}): upgrade peerbak"
                )
            for number in range(version + 1, len(MIGRATIONS) + 1):
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    await self._db.executescript_in_tx(MIGRATIONS[number - 1])  # type: ignore[attr-defined]
                except AttributeError:
                    for statement in MIGRATIONS[number - 1].split(";"):
                        if statement.strip():
                            await self._db.execute(statement)
                await self._db.execute("DELETE FROM schema_version")
                await self._db.execute("INSERT INTO schema_version VALUES (?)", (number,))
                await self._db.execute("COMMIT")

        await self._guard(setup)

    async def _guard(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    await self._db.execute("ROLLBACK")
            raise LedgerError(f"ledger {self.path}: {exc}") from None

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- meta -----------------------------------------------------------------------------

    async def get_meta(self, key: str) -> bytes | None:
        async def get() -> bytes | None:
            async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
                row = await cur.fetchone()
            return None if row is None else bytes(row[0])

        return await self._guard(get)

    async def set_meta(self, key: str, value: bytes) -> None:
        await self._guard(
            lambda: self._db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?",
                (key, value, value),
            )
        )

    # -- roster records and members -----------------------------------------------------------

    async def add_records(self, blobs: list[bytes], now: float) -> int:
        """Keep signed roster records (the roster is replayed from all of them, see
        peerbak.pool); returns how many were new."""

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
                """INSERT INTO members VALUES (?, ?, ?)
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
