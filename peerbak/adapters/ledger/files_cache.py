"""The files cache: what the last backups saw of each directory, kept in the ledger.

Read and written by the walker thread on a blocking connection of its own (see
:class:`FilesCacheDb`), not through the event loop the ledger's other records use.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Final

from peerbak.core.errors import LedgerError
from peerbak.ports import CachedFile


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
