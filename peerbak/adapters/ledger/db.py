"""The ledger's file: opening, checking and migrating it, its connection and its meta.

WAL mode with ``synchronous=NORMAL``: durable across a crash of the process; a power
cut may lose the last transactions, which are then re-learned from peers (the roster
is gossiped; the pool holds what the ledger caches). Migrations run in order, each in
one transaction; a ledger from a newer peerbak is refused rather than guessed at.

"No ledger yet" (no file) and "a ledger that cannot be read" are told apart before
SQLite touches the file: SQLite takes an empty file for a new database and would write
a fresh one over the evidence, and the node would forget its pool. A damaged ledger is
refused (:class:`LedgerDamaged`) and never written to; only a new one is created.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiosqlite

from peerbak.core.errors import LedgerDamaged, LedgerError

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
    # 2: packs, shards, blobs, snapshots and the files cache
    """
    CREATE TABLE packs (
        pack_id BLOB PRIMARY KEY CHECK (length(pack_id) = 32),
        k INTEGER NOT NULL,
        n INTEGER NOT NULL,
        length INTEGER NOT NULL,
        roots BLOB NOT NULL,
        entries BLOB NOT NULL,
        kind INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('sealed', 'stored')),
        indexed INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    CREATE TABLE shards (
        pack_id BLOB NOT NULL REFERENCES packs(pack_id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        holder BLOB NOT NULL,
        stored INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (pack_id, idx)
    );
    CREATE INDEX shards_holder ON shards(holder);
    CREATE TABLE blobs (
        chunk_id BLOB PRIMARY KEY CHECK (length(chunk_id) = 32),
        pack_id BLOB NOT NULL REFERENCES packs(pack_id) ON DELETE CASCADE,
        plain_length INTEGER NOT NULL
    );
    CREATE INDEX blobs_pack ON blobs(pack_id);
    CREATE TABLE snapshots (
        id BLOB PRIMARY KEY CHECK (length(id) = 16),
        time REAL NOT NULL,
        body BLOB NOT NULL
    );
    CREATE TABLE files_cache (
        parent BLOB NOT NULL,
        name BLOB NOT NULL,
        device INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL,
        content BLOB NOT NULL,
        PRIMARY KEY (parent, name)
    );
    """,
    # 3: trust (probes, challenges), shard health and repair moves
    """
    ALTER TABLE shards ADD COLUMN state TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'bad'));
    ALTER TABLE members ADD COLUMN passed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN failing_since REAL;
    ALTER TABLE members ADD COLUMN probes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN probes_up INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN latency REAL;
    CREATE TABLE challenges (
        id INTEGER PRIMARY KEY,
        member BLOB NOT NULL,
        time REAL NOT NULL,
        pack_id BLOB NOT NULL,
        idx INTEGER NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('fail', 'timeout')),
        evidence TEXT NOT NULL
    );
    CREATE INDEX challenges_member ON challenges(member, time);
    CREATE TABLE contained (
        member BLOB PRIMARY KEY,
        pack_id BLOB NOT NULL,
        idx INTEGER NOT NULL,
        tries INTEGER NOT NULL,
        since REAL NOT NULL
    );
    CREATE TABLE moves (
        pack_id BLOB NOT NULL,
        idx INTEGER NOT NULL,
        holder BLOB NOT NULL,
        phase TEXT NOT NULL CHECK (phase IN ('upload', 'release')),
        created REAL NOT NULL,
        PRIMARY KEY (pack_id, idx, holder)
    );
    """,
    # 4: challenges passed in a row, to clear a failing mark on its own
    """
    ALTER TABLE members ADD COLUMN streak INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: what happened, for `peerbak log`, notifications and the status page
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        level TEXT NOT NULL CHECK (level IN ('info', 'warning', 'error')),
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        message TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE INDEX events_time ON events(time);
    CREATE INDEX events_kind ON events(kind, subject);
    """,
]


SQLITE_MAGIC: Final = b"SQLite format 3\x00"


def check_file(path: Path) -> None:
    """Raise :class:`LedgerDamaged` unless ``path`` starts as a SQLite database does and is
    as long as its header says (read only: SQLite is not let near a damaged file).

    The header's page count is compared with the size only when no ``-wal`` file is
    beside it: with one, the newest pages may be in the WAL, not yet in the file."""
    try:
        with path.open("rb") as f:
            head = f.read(100)
            size = f.seek(0, 2)
    except OSError as exc:
        raise LedgerError(f"cannot read the ledger at {path}: {exc.strerror}") from None
    if not head:
        raise LedgerDamaged(str(path), "it is empty (0 bytes)")
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        raise LedgerDamaged(str(path), "it is not a SQLite database")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise LedgerDamaged(str(path), f"its header names a page size of {page_size}")
    if size % page_size:
        raise LedgerDamaged(str(path), f"it is {size} bytes, not whole {page_size}-byte pages")
    pages = int.from_bytes(head[28:32], "big")
    counted = head[24:28] == head[92:96]  # SQLite's test that the page count is current
    wal = path.with_name(path.name + "-wal")
    if counted and pages * page_size > size and not wal.exists():
        raise LedgerDamaged(
            str(path), f"it is {size} bytes, its header says {pages * page_size}: truncated"
        )


#: The ledgers this process has open (real path → connections). SQLite's locks are
#: POSIX locks, which belong to the process: closing *any* descriptor of the file drops
#: them all. check_file opens and closes the file, so it runs only while this process
#: has no connection to it; else another process, seeing no lock, takes itself for the
#: last connection and checkpoints and deletes the WAL under the open ones (their later
#: writes are lost; their reads say "database disk image is malformed").
_OPEN: Final[collections.Counter[str]] = collections.Counter()


class Connection:
    """An open ledger file; the records of :mod:`peerbak.adapters.ledger` build on it."""

    def __init__(self, path: Path, db: aiosqlite.Connection) -> None:
        self.path = path
        self._db = db
        self._lock = asyncio.Lock()
        self._key = os.path.realpath(path)
        _OPEN[self._key] += 1

    @classmethod
    async def open(cls, path: Path, *, create: bool = False, verify: bool = False) -> Self:
        """Open the ledger at ``path``; a missing file is made only when ``create``.

        An existing file is checked before anything is written: its header and size at
        every open (cheap), SQLite's ``quick_check`` of every page when ``verify`` (the
        daemon's start: it reads the whole file, 0.8 s for 700 MB here and seconds on a
        Pi, too much for every command), and peerbak's schema."""
        new = not path.exists()
        if new and not create:
            raise LedgerError(
                f"there is no ledger at {path}: `peerbak init` makes a new node, and "
                "`peerbak recover --in-place --from HOST:PORT` rebuilds this one's from the pool"
            )
        if not new and not _OPEN[os.path.realpath(path)]:  # see _OPEN
            check_file(path)
        try:
            db = await aiosqlite.connect(path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger at {path}: {exc}") from None
        ledger = cls(path, db)
        try:
            if not new:
                await ledger._check(verify)
            await ledger._setup()
        except BaseException:
            await ledger.close()
            raise
        return ledger

    async def _check(self, verify: bool) -> None:
        """SQLite's own ``quick_check`` (when ``verify``) and peerbak's schema."""

        async def check() -> None:
            problems = ["ok"]
            try:
                if verify:
                    async with self._db.execute("PRAGMA quick_check") as cur:
                        problems = [str(row[0]) for row in await cur.fetchall()]
                async with self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                ) as cur:
                    known = await cur.fetchone() is not None
                version = None
                if known:
                    async with self._db.execute("SELECT version FROM schema_version") as cur:
                        row = await cur.fetchone()
                    version = int(row[0]) if row else None
            except sqlite3.DatabaseError as exc:
                raise LedgerDamaged(str(self.path), f"SQLite says {exc}") from None
            if problems != ["ok"]:
                raise LedgerDamaged(
                    str(self.path), f"SQLite's quick_check found {'; '.join(problems[:3])}"
                )
            if version is None:
                raise LedgerDamaged(str(self.path), "it holds no peerbak schema")

        await self._guard(check)

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
        """Run ``fn`` alone on the connection: coroutines of one process share it, and
        one's BEGIN ... COMMIT must not interleave with another's statements."""
        async with self._lock:
            try:
                return await fn()
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await self._db.execute("ROLLBACK")
                raise LedgerError(f"ledger {self.path}: {exc}") from None

    async def _run(self, sql: str, args: Sequence[Any] = ()) -> None:
        """One statement, alone on the connection."""

        async def run() -> None:
            await self._db.execute(sql, args)

        await self._guard(run)

    async def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """One query's rows, alone on the connection."""

        async def rows() -> list[Any]:
            async with self._db.execute(sql, args) as cur:
                return list(await cur.fetchall())

        return await self._guard(rows)

    async def close(self) -> None:
        try:
            await self._db.close()
        finally:
            _OPEN[self._key] -= 1
            if not _OPEN[self._key]:
                del _OPEN[self._key]

    async def __aenter__(self) -> Self:
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

    async def delete_meta(self, key: str) -> None:
        await self._guard(lambda: self._db.execute("DELETE FROM meta WHERE key = ?", (key,)))
