"""``peerbak forget`` and ``peerbak prune``: retention, with memory bounded by design.

Forget applies restic's keep rules (``retention``) and publishes a manifest without the
forgotten snapshots; nothing is deleted. Prune then finds what no kept snapshot uses:

1. **Mark.** Walk every kept snapshot's trees; each tree and chunk id goes into a
   scratch SQLite table (on disk, so memory stays flat at millions of chunks). A tree
   already marked is not walked again: snapshots share most of their trees.
2. **Sweep.** A pack none of whose blobs is marked is unused. (Index packs are unused
   too: prune writes a fresh index.)
3. **Index, then publish.** Every pack that stays is indexed anew and a manifest lists
   only the new index packs. Until this point nothing was deleted, so a prune killed
   before it changed nothing.
4. **Delete.** Each unused pack's shards are moved to their holders' trash (a holder
   that is away is told at the next backup or prune) and the pack leaves the ledger. The
   holders free them after their own grace period; ``undelete`` brings them back
   until then.

Packs still partly used are kept whole (``unused`` in the report says how much that
costs); repacking them is left for later.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from peerbak import objects
from peerbak.errors import InputError
from peerbak.objects import Snapshot, Tree
from peerbak.repository import Repository
from peerbak.retention import Decision, KeepPolicy, apply_policy
from peerbak.snapshots import republish

log = logging.getLogger(__name__)


@dataclass
class PruneReport:
    snapshots: int = 0
    trees: int = 0
    chunks_used: int = 0
    packs: int = 0
    packs_unused: int = 0
    packs_partly_used: int = 0
    bytes_unused_kept: int = 0  # plaintext of unused blobs in packs that stay
    packs_deleted: int = 0  # shards all in the holders' trash; the rest when they answer
    manifest_copies: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)


async def forget(
    repo: Repository, policy: KeepPolicy, *, dry_run: bool = False
) -> list[Decision[Snapshot]]:
    """Decide with restic's rules; unless ``dry_run``, publish without the forgotten."""
    if policy.empty():
        raise InputError(
            "no keep rule given: nothing would be kept. Use --keep-last, --keep-daily, …"
        )
    snaps = await repo.snapshots()
    decisions = apply_policy(snaps, policy, key=lambda s: (s.time, s.tags))
    if not any(d.kept for d in decisions) and snaps:
        raise InputError("these rules keep no snapshot at all: refusing to forget every one")
    gone = [d.snapshot.id for d in decisions if not d.kept]
    if gone and not dry_run:
        kept = sorted((d.snapshot for d in decisions if d.kept), key=lambda s: s.time)
        await repo.ledger.remove_snapshots(gone)
        await republish(repo, kept)
    return decisions


class _Marks:
    """The set of used ids, in a scratch SQLite file deleted on close."""

    def __init__(self, directory: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix="prune-", suffix=".sqlite", dir=directory)
        os.close(fd)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE used (id BLOB PRIMARY KEY) WITHOUT ROWID")

    def add(self, ident: bytes) -> bool:
        """Mark; False if it was marked already."""
        return self.db.execute("INSERT OR IGNORE INTO used VALUES (?)", (ident,)).rowcount == 1

    def add_many(self, idents: list[bytes]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO used VALUES (?)", [(i,) for i in idents])

    def used(self, idents: list[bytes]) -> int:
        """How many of ``idents`` are marked."""
        found = 0
        for start in range(0, len(idents), 500):
            part = idents[start : start + 500]
            marks = ",".join("?" * len(part))
            row = self.db.execute(
                f"SELECT count(*) FROM used WHERE id IN ({marks})",  # noqa: S608 - only ?s
                part,
            ).fetchone()
            found += int(row[0])
        return found

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM used").fetchone()[0])

    def close(self) -> None:
        self.db.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


async def _mark(
    repo: Repository, snaps: list[Snapshot], marks: _Marks, report: PruneReport
) -> None:
    stack: list[bytes] = []
    for snap in snaps:
        if marks.add(snap.tree):
            stack.append(snap.tree)
    while stack:
        tree_id = stack.pop()
        raw = await repo.read_blob(tree_id)
        tree = objects.decode(raw, Tree, "tree", tree_id.hex()[:12])
        report.trees += 1
        chunks: list[bytes] = []
        for entry in tree.entries:
            if entry.subtree and marks.add(entry.subtree):
                stack.append(entry.subtree)
            c = entry.content
            chunks += [c[i : i + 32] for i in range(0, len(c), 32)]
        if chunks:
            marks.add_many(chunks)


def _pages(ids: list[bytes], size: int) -> Iterator[list[bytes]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


async def prune(repo: Repository, *, dry_run: bool = False) -> dict[str, Any]:
    """Delete the packs no kept snapshot uses (see the module docstring for the order)."""
    report = PruneReport(dry_run=dry_run)
    await repo.probe()
    snaps = await repo.snapshots()
    report.snapshots = len(snaps)
    marks = _Marks(str(repo.home.run_dir))  # small blocking calls: this command alone
    try:
        await _mark(repo, snaps, marks, report)
        report.chunks_used = marks.count()
        unused: list[bytes] = []
        async for page in repo.ledger.stored_pack_ids():
            for pack_id in page:
                found = await repo.ledger.pack(pack_id)
                if found is None:
                    continue
                record = found[0]
                report.packs += 1
                ids = [bytes(e.ident) for e in record.entries]
                used = marks.used(ids)
                if used == 0:
                    unused.append(pack_id)
                elif used < len(ids):
                    report.packs_partly_used += 1
                    report.bytes_unused_kept += sum(
                        e.plain_length for e in record.entries if not marks.used([bytes(e.ident)])
                    )
        report.packs_unused = len(unused)
    finally:
        marks.close()
    if dry_run or not unused:
        return _summary(report)
    # Doomed packs leave the index (and the known chunks) now; their shards go once a
    # manifest without them is out. Killed in between, the next backup or prune
    # reclaims them: a doomed pack is a sealed one, as a killed backup leaves.
    for pack_id in unused:
        await repo.ledger.doom_pack(pack_id)
    await repo.ledger.reindex_all()
    await repo.ledger.set_meta("index_packs", objects.encode(objects.Index(packs=[])))
    report.manifest_copies = await republish(repo, snaps)
    report.packs_deleted = await repo.reclaim()
    return _summary(report)


def _summary(r: PruneReport) -> dict[str, Any]:
    return {k: v for k, v in r.__dict__.items()}
