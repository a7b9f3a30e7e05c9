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

Packs used less than half (by plaintext bytes) are repacked: their used blobs are copied
into new packs, which the ledger then points at, and the old packs are deleted with the
unused ones. Packs used more are kept whole (``bytes_unused_kept`` says what that costs).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from peerbak.core import objects
from peerbak.core.crypto import BlobType
from peerbak.core.errors import InputError
from peerbak.core.objects import Snapshot
from peerbak.core.pack import PackRecord
from peerbak.core.retention import GROUP_BY_DEFAULT, Decision, KeepPolicy, apply_policy, group
from peerbak.core.selection import EVERY, Selection
from peerbak.ports.ledger import IdSet
from peerbak.services.fetch import read_blobs
from peerbak.services.index import META_PACK, republish
from peerbak.services.packer import KnownChunks, Packer
from peerbak.services.repository import DATA, META, Repository, crash_point

log = logging.getLogger(__name__)

#: Packs whose used share (by plaintext bytes) is below this are repacked by default:
#: their used blobs are copied into new packs and the old ones deleted.
REPACK_BELOW: Final = 0.5


@dataclass
class PruneReport:
    snapshots: int = 0
    trees: int = 0
    chunks_used: int = 0
    packs: int = 0
    packs_unused: int = 0
    packs_partly_used: int = 0
    bytes_unused_kept: int = 0  # plaintext of unused blobs in packs that stay
    packs_repacked: int = 0  # used less than the threshold: used blobs copied, then deleted
    bytes_repacked: int = 0
    packs_deleted: int = 0  # shards all in the holders' trash; the rest when they answer
    manifest_copies: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)


async def forget(
    repo: Repository,
    policy: KeepPolicy,
    *,
    group_by: frozenset[str] = GROUP_BY_DEFAULT,
    only: Selection = EVERY,
    ids: Sequence[str] = (),
    dry_run: bool = False,
) -> list[Decision[Snapshot]]:
    """Decide with restic's rules, group by group (by host and path set unless
    ``group_by`` says otherwise), among the snapshots ``only`` selects; or, given
    ``ids`` and no rule, forget exactly those. Unless ``dry_run``, publish a manifest
    without the forgotten. A group its rules would empty is refused, as restic does."""
    snaps = await repo.snapshots()
    if ids:
        if not policy.empty():
            raise InputError("give snapshot ids or --keep-* rules, not both")
        named = {(await repo.find_snapshot(text)).id for text in ids}
        decisions = [Decision(s, False, ()) for s in snaps if s.id in named]
    else:
        if policy.empty():
            raise InputError(
                "no keep rule given: nothing would be kept. Use --keep-last, --keep-daily, …"
            )
        decisions = []
        considered = [s for s in snaps if s in only]
        for key, members in group(
            considered, group_by, key=lambda s: (s.hostname, s.paths, s.tags)
        ):
            judged = apply_policy(members, policy, key=lambda s: (s.time, s.tags))
            if not any(d.kept for d in judged):
                raise InputError(
                    f"these rules keep no snapshot of {key}: refusing to forget every one"
                )
            decisions += [replace(d, group=key) for d in judged]
    gone = [d.snapshot.id for d in decisions if not d.kept]
    if gone and not dry_run:
        # The pool first, then the ledger: when no member takes the new manifest, the
        # ledger still lists every snapshot, as the members' manifests do.
        left = set(gone)
        kept = sorted((s for s in snaps if s.id not in left), key=lambda s: s.time)
        await republish(repo, kept, unless="nothing was forgotten")
        crash_point("forget-published")
        await repo.ledger.remove_snapshots(gone)
    return decisions


async def _mark(repo: Repository, snaps: list[Snapshot], marks: IdSet, report: PruneReport) -> None:
    stack: list[bytes] = []
    for snap in snaps:
        if marks.add(snap.tree):
            stack.append(snap.tree)
    while stack:
        tree_id = stack.pop()
        tree = await repo.read_tree(tree_id)
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


async def prune(
    repo: Repository, *, dry_run: bool = False, repack_below: float = REPACK_BELOW
) -> dict[str, Any]:
    """Delete the packs no kept snapshot uses, and repack those used less than
    ``repack_below`` (by plaintext bytes); see the module docstring for the order."""
    report = PruneReport(dry_run=dry_run)
    await repo.probe()
    snaps = await repo.snapshots()
    report.snapshots = len(snaps)
    # Small blocking calls: this command runs alone.
    marks = repo.ledger.id_set(str(repo.home.scratch_dir))
    try:
        await _mark(repo, snaps, marks, report)
        report.chunks_used = marks.count()
        unused: list[bytes] = []
        sparse: list[bytes] = []
        async for page in repo.ledger.stored_pack_ids():
            for pack_id in page:
                found = await repo.ledger.pack(pack_id)
                if found is None:
                    continue
                record = found[0]
                report.packs += 1
                used = marks.present([bytes(e.ident) for e in record.entries])
                total = sum(e.plain_length for e in record.entries) or 1
                if not used:
                    unused.append(pack_id)
                elif len(used) < len(record.entries):
                    live = sum(e.plain_length for e in record.entries if e.ident in used)
                    if live / total < repack_below:
                        sparse.append(pack_id)
                    else:
                        report.packs_partly_used += 1
                        report.bytes_unused_kept += total - live
        report.packs_unused = len(unused)
        report.packs_repacked = len(sparse)
        if dry_run or not (unused or sparse):
            return _summary(report)
        await _repack(repo, sparse, marks, snaps, report)
    finally:
        marks.close()
    crash_point("prune-repacked")
    # Doomed packs leave the index (and the known chunks) now, in one transaction; their
    # shards go once a manifest without them is out. Killed in between, the next publish
    # (a backup's, a prune's) lists every other pack, and only then may a reclaim delete
    # them: a doomed pack is a sealed one, as a killed backup leaves.
    await repo.ledger.doom_packs(unused + sparse, objects.encode(objects.Index(packs=[])))
    crash_point("prune-doomed")
    report.manifest_copies = await republish(repo, snaps)
    crash_point("prune-published")
    report.packs_deleted = await repo.reclaim()
    return _summary(report)


async def _repack(
    repo: Repository,
    sparse: list[bytes],
    marks: IdSet,
    snaps: list[Snapshot],
    report: PruneReport,
) -> None:
    """Copy the used blobs of ``sparse`` packs into new packs, one old pack in memory at
    a time; once the new packs are stored, the ledger finds those blobs there."""
    if not sparse:
        return
    latest = max(snaps, key=lambda x: x.time, default=None)
    code = repo.code((latest.k, latest.n) if latest else None)
    loop = asyncio.get_running_loop()
    made: list[bytes] = []

    def packer(kind: int, target: int) -> Packer:
        return Packer(
            repo.keys,
            code,
            functools.partial(repo.store_pack, kind=kind),
            loop,
            random_bytes=repo.random_bytes,
            on_pack=lambda record: made.append(bytes(record.pack_id)),
            known=copied,  # 16 bytes a chunk, not a set's 90
            target_size=target,
        )

    copied = KnownChunks()
    data, meta = packer(DATA, 16 << 20), packer(META, META_PACK)
    try:
        for pack_id in sparse:
            found = await repo.ledger.pack(pack_id)
            if found is None:
                continue
            record, holders = found
            used = marks.present([bytes(e.ident) for e in record.entries])
            raw = await repo.fetch_record(record, holders)

            def copy(raw: bytes = raw, record: PackRecord = record, used: set[bytes] = used) -> int:
                """Used blobs into the new packs, one at a time (no list of them all)."""
                copied = 0
                for entry, plain in read_blobs(repo.keys, raw, record):
                    if entry.ident in used:
                        target = data if entry.blob_type is BlobType.DATA else meta
                        target.add_chunk(plain, entry.blob_type)
                        copied += len(plain)
                return copied

            report.bytes_repacked += await asyncio.to_thread(copy)
            del raw
        await asyncio.to_thread(data.flush)
        await asyncio.to_thread(meta.flush)
    finally:
        data.close()
        meta.close()
    for new in made:
        found = await repo.ledger.pack(new)
        if found is not None:
            await repo.ledger.relink_blobs(found[0])


def _summary(r: PruneReport) -> dict[str, Any]:
    return {k: v for k, v in r.__dict__.items()}
