"""Scratch SQLite files: structures too large for memory that die with one command.

No journal, no fsync: a crash loses nothing that is not rebuilt by running the command
again. :class:`RestorePlanDb` is a restore's plan (which chunk of which pack goes to
which file at which offset), so a restore of millions of files holds a few packs in
memory, never its whole plan; :class:`IdSetDb` is prune's set of used ids.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from peerbak.core.errors import StorageError
from peerbak.ports.ledger import FileRow

_SCHEMA: Final = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL,
    entry BLOB NOT NULL,
    chunks INTEGER NOT NULL,  -- as planned: 0 for a file with no contents
    remaining INTEGER NOT NULL  -- chunks not yet written
);
CREATE TABLE inodes (device INTEGER, inode INTEGER, file_id INTEGER, PRIMARY KEY (device, inode));
CREATE TABLE links (file_id INTEGER NOT NULL, path BLOB NOT NULL);
CREATE TABLE targets (pack BLOB NOT NULL, chunk BLOB NOT NULL, file_id INTEGER, offset INTEGER);
CREATE TABLE dirs (path BLOB NOT NULL, depth INTEGER NOT NULL, entry BLOB NOT NULL);
CREATE INDEX dirs_depth ON dirs (depth);
CREATE TABLE later (path BLOB NOT NULL, entry BLOB NOT NULL);
"""


class RestorePlanDb:
    """A restore's plan (:class:`peerbak.ports.ledger.RestorePlan`) in a temporary
    directory of its own. One connection shared by the event loop and the writer
    threads, under a lock; every statement is short."""

    def __init__(self, directory: Path | None = None) -> None:
        try:
            self._dir = Path(tempfile.mkdtemp(prefix="peerbak-restore-", dir=directory))
        except OSError as exc:
            raise StorageError(f"cannot make a restore plan: {exc}") from None
        try:
            self._db = sqlite3.connect(
                self._dir / "plan.sqlite", isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise StorageError(f"cannot make a restore plan in {self._dir}: {exc}") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- planning ---------------------------------------------------------------------------

    def add_file(
        self, path: bytes, entry: bytes, chunks: int, inode: tuple[int, int] | None
    ) -> int | None:
        """A file to write; None when it is another name of a file already planned
        (``inode`` is given for files with more than one link)."""
        with self._lock:
            if inode is not None:
                row = self._db.execute(
                    "SELECT file_id FROM inodes WHERE device = ? AND inode = ?", inode
                ).fetchone()
                if row is not None:
                    self._db.execute("INSERT INTO links VALUES (?, ?)", (row[0], path))
                    return None
            cur = self._db.execute(
                "INSERT INTO files (path, entry, chunks, remaining) VALUES (?, ?, ?, ?)",
                (path, entry, chunks, chunks),
            )
            ident = int(cur.lastrowid or 0)
            if inode is not None:
                self._db.execute("INSERT INTO inodes VALUES (?, ?, ?)", (*inode, ident))
            return ident

    def add_targets(self, rows: Sequence[tuple[bytes, bytes, int, int]]) -> None:
        """(pack, chunk, file id, offset) rows."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO targets VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def add_dir(self, path: bytes, depth: int, entry: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT INTO dirs VALUES (?, ?, ?)", (path, depth, entry))

    def add_later(self, path: bytes, entry: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT INTO later VALUES (?, ?)", (path, entry))

    def planned(self) -> None:
        """Planning is over: index the targets by pack for the writers."""
        with self._lock:
            self._db.execute("CREATE INDEX targets_pack ON targets (pack)")

    # -- writing --------------------------------------------------------------------------

    def packs(self) -> Iterator[bytes]:
        """Every pack the plan needs, a page at a time."""
        last = b""
        while True:
            with self._lock:
                page = self._db.execute(
                    "SELECT DISTINCT pack FROM targets WHERE pack > ? ORDER BY pack LIMIT 1000",
                    (last,),
                ).fetchall()
            if not page:
                return
            for (pack,) in page:
                yield bytes(pack)
            last = bytes(page[-1][0])

    def targets(self, pack: bytes) -> tuple[list[tuple[bytes, int, int]], dict[int, bytes]]:
        """(chunk, file id, offset) for one pack, and the paths of those files."""
        with self._lock:
            rows = self._db.execute(
                "SELECT chunk, file_id, offset FROM targets WHERE pack = ?", (pack,)
            ).fetchall()
            ids = sorted({int(r[1]) for r in rows})
            paths: dict[int, bytes] = {}
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                for ident, path in self._db.execute(
                    f"SELECT id, path FROM files WHERE id IN ({marks})",  # noqa: S608
                    part,
                ):
                    paths[int(ident)] = bytes(path)
        return [(bytes(c), int(f), int(o)) for c, f, o in rows], paths

    def written(self, counts: dict[int, int]) -> list[FileRow]:
        """Count chunks written per file; the files now complete."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE files SET remaining = remaining - ? WHERE id = ?",
                [(n, ident) for ident, n in counts.items()],
            )
            done: list[FileRow] = []
            ids = list(counts)
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                done += [
                    (int(i), bytes(p), bytes(e))
                    for i, p, e in self._db.execute(
                        "SELECT id, path, entry FROM files "  # noqa: S608
                        f"WHERE remaining = 0 AND id IN ({marks})",
                        part,
                    )
                ]
            self._db.execute("COMMIT")
        return done

    def links(self, file_id: int) -> list[bytes]:
        with self._lock:
            return [
                bytes(r[0])
                for r in self._db.execute("SELECT path FROM links WHERE file_id = ?", (file_id,))
            ]

    def _pages(self, sql: str) -> Iterator[tuple[bytes, bytes]]:
        last = 0
        while True:
            with self._lock:
                page = self._db.execute(sql, (last,)).fetchall()
            if not page:
                return
            for row in page:
                yield bytes(row[1]), bytes(row[2])
            last = int(page[-1][0])

    def finished_files(self) -> Iterator[FileRow]:
        """Files with contents whose every chunk was written."""
        return self._files_where("chunks > 0 AND remaining = 0")

    def empty_files(self) -> Iterator[FileRow]:
        """Files planned with no chunks. Not ``remaining = 0``: packs written meanwhile
        bring files there too, and those are finished already (with their contents)."""
        return self._files_where("chunks = 0")

    def _files_where(self, condition: str) -> Iterator[FileRow]:
        last = 0
        while True:
            with self._lock:
                page = self._db.execute(
                    f"SELECT id, path, entry FROM files WHERE {condition} AND id > ? "  # noqa: S608 - our own conditions
                    "ORDER BY id LIMIT 1000",
                    (last,),
                ).fetchall()
            if not page:
                return
            for i, p, e in page:
                yield int(i), bytes(p), bytes(e)
            last = int(page[-1][0])

    def unfinished(self) -> tuple[int, bytes]:
        with self._lock:
            count, path = self._db.execute(
                "SELECT COUNT(*), MIN(path) FROM files WHERE remaining > 0"
            ).fetchone()
        return int(count), bytes(path or b"")

    def dirs(self, deepest_first: bool) -> Iterator[tuple[bytes, bytes]]:
        """Directories, parents first (to make them) or deepest first (to date them)."""
        if deepest_first:
            sql = (
                "SELECT depth, rowid, path, entry FROM dirs WHERE (depth, rowid) < (?, ?) "
                "ORDER BY depth DESC, rowid DESC LIMIT 1000"
            )
            key: tuple[int, int] = (1 << 62, 1 << 62)
        else:
            sql = (
                "SELECT depth, rowid, path, entry FROM dirs WHERE (depth, rowid) > (?, ?) "
                "ORDER BY depth, rowid LIMIT 1000"
            )
            key = (-1, -1)
        while True:
            with self._lock:
                page = self._db.execute(sql, key).fetchall()
            if not page:
                return
            for _, _, path, entry in page:
                yield bytes(path), bytes(entry)
            key = (int(page[-1][0]), int(page[-1][1]))

    def later(self) -> Iterator[tuple[bytes, bytes]]:
        return self._pages(
            "SELECT rowid, path, entry FROM later WHERE rowid > ? ORDER BY rowid LIMIT 1000"
        )


class IdSetDb:
    """A set of ids (:class:`peerbak.ports.ledger.IdSet`) in a scratch file deleted on
    close. Blocking calls, from one thread."""

    def __init__(self, directory: Path) -> None:
        try:
            fd, name = tempfile.mkstemp(prefix="prune-", suffix=".sqlite", dir=directory)
        except OSError as exc:
            raise StorageError(f"cannot make a scratch file in {directory}: {exc}") from None
        os.close(fd)
        self.path = Path(name)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("CREATE TABLE used (id BLOB PRIMARY KEY) WITHOUT ROWID")
        except sqlite3.Error as exc:
            self.path.unlink(missing_ok=True)
            raise StorageError(f"cannot make a scratch file in {directory}: {exc}") from None

    def add(self, ident: bytes) -> bool:
        return self._db.execute("INSERT OR IGNORE INTO used VALUES (?)", (ident,)).rowcount == 1

    def add_many(self, idents: Sequence[bytes]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO used VALUES (?)", [(i,) for i in idents])

    def present(self, idents: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for start in range(0, len(idents), 500):
            part = list(idents[start : start + 500])
            marks = ",".join("?" * len(part))
            found.update(
                bytes(ident)
                for (ident,) in self._db.execute(
                    f"SELECT id FROM used WHERE id IN ({marks})",  # noqa: S608 - only ?s
                    part,
                )
            )
        return found

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM used").fetchone()[0])

    def close(self) -> None:
        self._db.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
