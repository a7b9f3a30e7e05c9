"""The node's ledger: one SQLite file (aiosqlite), and the only SQL in peerbak.

:class:`Ledger` implements :class:`peerbak.ports.ledger.Ledger`. Its records are split
by subject, each on the same connection and lock: the file itself and its meta
(:mod:`.db`), the roster and invites (:mod:`.roster`), packs, chunks and snapshots
(:mod:`.packs`), members' behaviour and shard health (:mod:`.health`). The walker's
files cache (:mod:`.files_cache`) and the scratch files of restore and prune
(:mod:`.scratch`) are SQLite too, handed out by the ledger so that services never
open a database themselves.
"""

from __future__ import annotations

from pathlib import Path

from peerbak.adapters.ledger.db import MIGRATIONS, SQLITE_MAGIC, check_file
from peerbak.adapters.ledger.events import EventRecords
from peerbak.adapters.ledger.files_cache import FilesCacheDb
from peerbak.adapters.ledger.health import CLEAR_AFTER, LATENCY_WEIGHT, HealthRecords
from peerbak.adapters.ledger.packs import PackRecords
from peerbak.adapters.ledger.roster import InviteStatus, MemberRow, RosterRecords
from peerbak.adapters.ledger.scratch import IdSetDb, RestorePlanDb

__all__ = [
    "CLEAR_AFTER",
    "LATENCY_WEIGHT",
    "MIGRATIONS",
    "SQLITE_MAGIC",
    "FilesCacheDb",
    "IdSetDb",
    "InviteStatus",
    "Ledger",
    "MemberRow",
    "RestorePlanDb",
    "check_file",
]


class Ledger(RosterRecords, PackRecords, HealthRecords, EventRecords):
    """An open ledger. Use ``async with await Ledger.open(path)`` or call :meth:`close`."""

    def files_cache(self) -> FilesCacheDb:
        """The files cache on a blocking connection of its own, for the walker thread."""
        return FilesCacheDb(self.path)

    def restore_plan(self, directory: str | None = None) -> RestorePlanDb:
        """A new, empty restore plan in ``directory`` (the system's temporary one if None)."""
        return RestorePlanDb(None if directory is None else Path(directory))

    def id_set(self, directory: str) -> IdSetDb:
        """A new, empty id set in ``directory``."""
        return IdSetDb(Path(directory))
