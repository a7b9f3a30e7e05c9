"""The node's ledger: one SQLite file (aiosqlite); with peerbak.adapters.plan, the only SQL.

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
import enum
import os
import sqlite3
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import aiosqlite
import blake3

from peerbak.adapters.ledger_health import HealthRecords
from peerbak.core.crypto import BlobType, Compression
from peerbak.core.errors import LedgerDamaged, LedgerError
from peerbak.core.ids import ChunkId, PackId
from peerbak.core.pack import BlobEntry, PackRecord
from peerbak.ports import CachedFile

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


class Ledger(HealthRecords):
    """An open ledger. Use ``async with await Ledger.open(path)`` or call :meth:`close`."""

    def __init__(self, path: Path, db: aiosqlite.Connection) -> None:
        self.path = path
        self._db = db
        self._lock = asyncio.Lock()
        self._key = os.path.realpath(path)
        _OPEN[self._key] += 1

    @classmethod
    async def open(cls, path: Path, *, create: bool = False, verify: bool = False) -> Ledger:
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

    async def close(self) -> None:
        try:
            await self._db.close()
        finally:
            _OPEN[self._key] -= 1
            if not _OPEN[self._key]:
                del _OPEN[self._key]

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

    async def delete_meta(self, key: str) -> None:
        await self._guard(lambda: self._db.execute("DELETE FROM meta WHERE key = ?", (key,)))

    # -- roster records and members -----------------------------------------------------------

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

    # -- packs and blobs ------------------------------------------------------------------

    async def add_pack(
        self, record: PackRecord, kind: int, holders: Sequence[bytes], now: float
    ) -> None:
        """Record a sealed pack and where its shards go, before any is uploaded: a crash
        later leaves a row that says which members may hold leftovers to reclaim."""

        async def add() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.execute(
                "INSERT OR IGNORE INTO packs "
                "(pack_id, k, n, length, roots, entries, kind, state, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'sealed', ?)",
                (
                    bytes(record.pack_id),
                    record.k,
                    record.n,
                    record.length,
                    b"".join(record.roots),
                    _encode_entries(record.entries),
                    kind,
                    now,
                ),
            )
            await self._db.executemany(
                "INSERT OR REPLACE INTO shards (pack_id, idx, holder, stored) VALUES (?, ?, ?, 0)",
                [(bytes(record.pack_id), i, h) for i, h in enumerate(holders) if h],
            )
            await self._db.execute("COMMIT")

        await self._guard(add)

    async def pack_stored(self, record: PackRecord, acked: Sequence[int]) -> None:
        """≥ k holders acknowledged: the pack's chunks may now be referenced."""
        pack = bytes(record.pack_id)

        async def mark() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.executemany(
                "UPDATE shards SET stored = 1 WHERE pack_id = ? AND idx = ?",
                [(pack, i) for i in acked],
            )
            await self._db.execute("DELETE FROM shards WHERE pack_id = ? AND stored = 0", (pack,))
            await self._db.execute("UPDATE packs SET state = 'stored' WHERE pack_id = ?", (pack,))
            await self._db.executemany(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?)",
                [(bytes(e.ident), pack, e.plain_length) for e in record.entries],
            )
            await self._db.execute("COMMIT")

        await self._guard(mark)

    async def import_pack(
        self, record: PackRecord, kind: int, holders: Sequence[bytes], indexed: bool, now: float
    ) -> None:
        """A pack learned from an index object (recovery): stored, with its holders."""
        await self.add_pack(record, kind, holders, now)
        await self.pack_stored(record, [i for i, h in enumerate(holders) if h])
        if indexed:
            await self.mark_indexed([record.pack_id])

    async def sealed_packs(self) -> list[tuple[PackId, dict[int, bytes]]]:
        """Packs sealed but never marked stored (a backup died): their placements."""

        async def rows() -> list[tuple[PackId, dict[int, bytes]]]:
            out: dict[bytes, dict[int, bytes]] = {}
            async with self._db.execute(
                "SELECT p.pack_id, s.idx, s.holder FROM packs p LEFT JOIN shards s "
                "ON s.pack_id = p.pack_id WHERE p.state = 'sealed'"
            ) as cur:
                for pack, idx, holder in await cur.fetchall():
                    placed = out.setdefault(bytes(pack), {})
                    if idx is not None:
                        placed[int(idx)] = bytes(holder)
            return [(PackId(p), h) for p, h in out.items()]

        return await self._guard(rows)

    async def drop_pack(self, pack_id: bytes) -> None:
        await self._guard(
            lambda: self._db.execute("DELETE FROM packs WHERE pack_id = ?", (bytes(pack_id),))
        )

    async def chunk_ids(self, batch: int = 65536) -> AsyncIterator[list[bytes]]:
        """Every stored chunk id, in order, in batches (for the set of known chunks)."""
        async for rows in self._id_pages(
            "SELECT chunk_id FROM blobs WHERE chunk_id > ? ORDER BY chunk_id LIMIT ?", batch
        ):
            yield rows

    async def _id_pages(self, sql: str, batch: int) -> AsyncIterator[list[bytes]]:
        """Pages of a one-column, ordered query, by keyset (``sql`` takes after, limit)."""
        last = b""
        while True:

            async def page(after: bytes = last) -> list[bytes]:
                async with self._db.execute(sql, (after, batch)) as cur:
                    return [bytes(r[0]) for r in await cur.fetchall()]

            rows = await self._guard(page)
            if not rows:
                return
            yield rows
            last = rows[-1]

    async def locate(self, chunk_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """chunk id → pack id, for those stored (one query per 500 ids)."""
        return {c: pack for c, (pack, _) in (await self.locate_sized(chunk_ids)).items()}

    async def locate_sized(self, chunk_ids: Sequence[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """chunk id → (pack id, plaintext length), for those stored."""

        async def find() -> dict[bytes, tuple[bytes, int]]:
            found: dict[bytes, tuple[bytes, int]] = {}
            ids = list(dict.fromkeys(bytes(c) for c in chunk_ids))
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                async with self._db.execute(
                    "SELECT chunk_id, pack_id, plain_length FROM blobs "  # noqa: S608
                    f"WHERE chunk_id IN ({marks})",
                    part,
                ) as cur:
                    for c, p, n in await cur.fetchall():
                        found[bytes(c)] = (bytes(p), int(n))
            return found

        return await self._guard(find)

    async def pack(self, pack_id: bytes) -> tuple[PackRecord, dict[int, bytes]] | None:
        """A stored pack's record and the holder of each stored shard."""

        async def get() -> tuple[PackRecord, dict[int, bytes]] | None:
            async with self._db.execute(
                "SELECT k, n, length, roots, entries FROM packs "
                "WHERE pack_id = ? AND state = 'stored'",
                (bytes(pack_id),),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            async with self._db.execute(
                "SELECT idx, holder FROM shards WHERE pack_id = ? AND stored = 1",
                (bytes(pack_id),),
            ) as cur:
                holders = {int(i): bytes(h) for i, h in await cur.fetchall()}
            return _record(bytes(pack_id), row), holders

        return await self._guard(get)

    async def stored_pack_ids(self, batch: int = 1000) -> AsyncIterator[list[bytes]]:
        """Every stored pack's id, in order, a page at a time."""
        async for rows in self._id_pages(
            "SELECT pack_id FROM packs WHERE state = 'stored' AND pack_id > ? "
            "ORDER BY pack_id LIMIT ?",
            batch,
        ):
            yield rows

    async def shards_held_by(
        self, holder: bytes, batch: int = 10_000
    ) -> AsyncIterator[list[tuple[bytes, int]]]:
        """(pack id, index) of every stored shard ``holder`` acknowledged, in byte order
        of pack id ‖ index (the order a holder lists them in)."""
        last: tuple[bytes, int] = (b"", -1)
        while True:

            async def page(after: tuple[bytes, int] = last) -> list[tuple[bytes, int]]:
                async with self._db.execute(
                    "SELECT s.pack_id, s.idx FROM shards s JOIN packs p ON p.pack_id = s.pack_id "
                    "WHERE s.holder = ? AND s.stored = 1 AND p.state = 'stored' "
                    "AND (s.pack_id, s.idx) > (?, ?) ORDER BY s.pack_id, s.idx LIMIT ?",
                    (holder, after[0], after[1], batch),
                ) as cur:
                    return [(bytes(r[0]), int(r[1])) for r in await cur.fetchall()]

            rows = await self._guard(page)
            if not rows:
                return
            yield rows
            last = rows[-1]

    async def unindexed_packs(
        self, batch: int = 64
    ) -> AsyncIterator[list[tuple[PackRecord, dict[int, bytes]]]]:
        """Stored packs no index object lists yet, with their holders, a page at a time
        (a pack's record holds every blob entry: millions in all, so never at once)."""
        last = b""
        while True:

            async def page(after: bytes = last) -> list[tuple[PackRecord, dict[int, bytes]]]:
                async with self._db.execute(
                    "SELECT pack_id, k, n, length, roots, entries FROM packs "
                    "WHERE state = 'stored' AND indexed = 0 AND pack_id > ? "
                    "ORDER BY pack_id LIMIT ?",
                    (after, batch),
                ) as cur:
                    rows = await cur.fetchall()
                out = []
                for row in rows:
                    async with self._db.execute(
                        "SELECT idx, holder FROM shards WHERE pack_id = ? AND stored = 1",
                        (row[0],),
                    ) as cur:
                        holders = {int(i): bytes(h) for i, h in await cur.fetchall()}
                    out.append((_record(bytes(row[0]), row[1:6]), holders))
                return out

            rows = await self._guard(page)
            if not rows:
                return
            yield rows
            last = bytes(rows[-1][0].pack_id)

    async def mark_indexed(self, pack_ids: Sequence[bytes]) -> None:
        await self._guard(
            lambda: self._db.executemany(
                "UPDATE packs SET indexed = 1 WHERE pack_id = ?", [(bytes(p),) for p in pack_ids]
            )
        )

    async def held_by_member(self) -> dict[bytes, tuple[int, int]]:
        """member → (shards, bytes) of this node's stored shards it holds."""

        async def get() -> dict[bytes, tuple[int, int]]:
            async with self._db.execute(
                "SELECT s.holder, COUNT(*), SUM((p.length + p.k - 1) / p.k + 100) "
                "FROM shards s JOIN packs p ON p.pack_id = s.pack_id "
                "WHERE s.stored = 1 AND p.state = 'stored' GROUP BY s.holder"
            ) as cur:
                return {bytes(h): (int(c), int(b)) for h, c, b in await cur.fetchall()}

        return await self._guard(get)

    async def pack_sizes(self, pack_ids: Sequence[bytes]) -> dict[bytes, tuple[int, int, int]]:
        """pack id → (length, k, n) for the given packs."""

        async def get() -> dict[bytes, tuple[int, int, int]]:
            out: dict[bytes, tuple[int, int, int]] = {}
            ids = list(pack_ids)
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                async with self._db.execute(
                    f"SELECT pack_id, length, k, n FROM packs WHERE pack_id IN ({marks})",  # noqa: S608
                    part,
                ) as cur:
                    for p, length, k, n in await cur.fetchall():
                        out[bytes(p)] = (int(length), int(k), int(n))
            return out

        return await self._guard(get)

    async def chunk_sizes(self, chunk_ids: set[bytes]) -> tuple[int, int]:
        """(plaintext bytes of these distinct chunks, shard bytes of the packs holding
        them, as stored: redundancy included)."""
        located = await self.locate(list(chunk_ids))

        async def sizes() -> tuple[int, int]:
            plain = stored = 0
            for pack in set(located.values()):
                async with self._db.execute(
                    "SELECT p.k, p.n, p.length, p.roots, p.entries, "
                    "(SELECT COUNT(*) FROM shards s WHERE s.pack_id = p.pack_id AND s.stored) "
                    "FROM packs p WHERE p.pack_id = ?",
                    (pack,),
                ) as cur:
                    row = await cur.fetchone()
                if row is None:
                    continue
                record = _record(pack, row[:5])
                plain += sum(
                    e.plain_length for e in record.entries if located.get(bytes(e.ident)) == pack
                )
                stored += int(row[5]) * (-(-record.length // record.k) + 100)
            return plain, stored

        return await self._guard(sizes)

    async def totals(self) -> tuple[int, int]:
        """(plaintext bytes of every distinct stored chunk, shard bytes stored)."""

        async def sums() -> tuple[int, int]:
            plain = 0
            async with self._db.execute(
                "SELECT pack_id, k, n, length, roots, entries FROM packs WHERE state = 'stored'"
            ) as cur:
                async for row in cur:
                    plain += sum(e.plain_length for e in _record(bytes(row[0]), row[1:6]).entries)
            async with self._db.execute(
                "SELECT COALESCE(SUM((p.length + p.k - 1) / p.k + 100), 0) FROM shards s "
                "JOIN packs p ON p.pack_id = s.pack_id WHERE s.stored = 1 AND p.state = 'stored'"
            ) as cur:
                total = await cur.fetchone()
            return plain, int(total[0]) if total else 0

        return await self._guard(sums)

    # -- snapshots ------------------------------------------------------------------------

    async def add_snapshot(self, ident: bytes, when: float, body: bytes) -> None:
        await self._guard(
            lambda: self._db.execute(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (ident, when, body)
            )
        )

    async def snapshots(self) -> list[bytes]:
        """Every snapshot's encoded body, oldest first."""

        async def get() -> list[bytes]:
            async with self._db.execute("SELECT body FROM snapshots ORDER BY time, id") as cur:
                return [bytes(r[0]) for r in await cur.fetchall()]

        return await self._guard(get)

    # -- the files cache ------------------------------------------------------------------

    async def cached_files(self, parent: bytes) -> dict[bytes, CachedFile]:
        """What the last backups saw in directory ``parent``: name → cached file."""

        async def get() -> dict[bytes, CachedFile]:
            async with self._db.execute(
                "SELECT name, device, inode, size, mtime_ns, ctime_ns, content "
                "FROM files_cache WHERE parent = ?",
                (parent,),
            ) as cur:
                return {
                    bytes(r[0]): CachedFile(
                        int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), bytes(r[6])
                    )
                    for r in await cur.fetchall()
                }

        return await self._guard(get)

    async def cache_files(self, parent: bytes, files: dict[bytes, CachedFile]) -> None:
        """Replace what the cache knows of directory ``parent``."""

        async def put() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.execute("DELETE FROM files_cache WHERE parent = ?", (parent,))
            await self._db.executemany(
                "INSERT INTO files_cache VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (parent, name, f.device, f.inode, f.size, f.mtime_ns, f.ctime_ns, f.content)
                    for name, f in files.items()
                ],
            )
            await self._db.execute("COMMIT")

        await self._guard(put)


_ENTRY: Final = struct.Struct("<BB32sIII")


def _encode_entries(entries: Sequence[BlobEntry]) -> bytes:
    return b"".join(
        _ENTRY.pack(e.blob_type, e.compression, e.ident, e.offset, e.length, e.plain_length)
        for e in entries
    )


def _record(pack_id: bytes, row: Sequence[Any]) -> PackRecord:
    k, n, length, roots, entries = int(row[0]), int(row[1]), int(row[2]), bytes(row[3]), row[4]
    return PackRecord(
        PackId(pack_id),
        k,
        n,
        length,
        tuple(roots[i : i + 32] for i in range(0, len(roots), 32)),
        tuple(
            BlobEntry(BlobType(t), Compression(c), ChunkId(i), o, ln, p)
            for t, c, i, o, ln, p in _ENTRY.iter_unpack(bytes(entries))
        ),
    )


class FilesCacheDb:
    """The files cache for the walker thread: its own blocking connection to the ledger.

    The walk asks once per directory; going through the event loop (busy sending
    shards) would cost a loop turn each time, seconds over a tree. Writes are batched
    into one transaction per ``BATCH`` directories or ``BATCH_FILES`` files, whichever
    comes first (big directories must not keep a whole tree's entries in memory), and
    only for directories whose files changed. Use from one thread; :meth:`close`
    commits what is pending.
    """

    BATCH: Final = 256
    BATCH_FILES: Final = 16_384

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger at {path}: {exc}") from None
        self._pending: list[tuple[bytes, dict[bytes, CachedFile]]] = []
        self._pending_files = 0
        try:  # a first backup asks nothing: one query instead of one per directory
            self._empty = self._db.execute("SELECT 1 FROM files_cache LIMIT 1").fetchone() is None
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {self.path}: {exc}") from None

    def lookup(self, parent: bytes) -> dict[bytes, CachedFile]:
        if self._empty:
            return {}
        try:
            rows = self._db.execute(
                "SELECT name, device, inode, size, mtime_ns, ctime_ns, content "
                "FROM files_cache WHERE parent = ?",
                (parent,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {self.path}: {exc}") from None
        return {
            bytes(r[0]): CachedFile(
                int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), bytes(r[6])
            )
            for r in rows
        }

    def store(self, parent: bytes, files: dict[bytes, CachedFile]) -> None:
        self._pending.append((parent, files))
        self._pending_files += len(files)
        if len(self._pending) >= self.BATCH or self._pending_files >= self.BATCH_FILES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for parent, files in self._pending:
                self._db.execute("DELETE FROM files_cache WHERE parent = ?", (parent,))
                self._db.executemany(
                    "INSERT INTO files_cache VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (parent, name, f.device, f.inode, f.size, f.mtime_ns, f.ctime_ns, f.content)
                        for name, f in files.items()
                    ],
                )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise LedgerError(f"ledger {self.path}: {exc}") from None
        self._pending.clear()
        self._pending_files = 0

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._db.close()
