"""``peerbak backup``: paths in, a snapshot in the pool out, in the order that keeps every
crash harmless (protocol/snapshots.md §7):

1. one backup per node at a time (the workspace's writer lock, which the caller takes
   and which dies with its process);
2. every member asked for room; fewer than k + 1 up and the backup refuses;
3. packs a killed backup left half done are reclaimed;
4. the walk fills the data and metadata packers; each sealed pack is recorded with its
   placement, uploaded in parallel, and marked stored after ≥ k durable acks;
5. index objects for the packs not yet indexed, in packs of their own;
6. the snapshot, and the signed manifest given to every member up, last.

Until step 6 no snapshot refers to anything, so a crash anywhere before it loses
nothing that was safe before; the chunks already stored are reused next time.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from peerbak.core import objects
from peerbak.core.chunker import Readable
from peerbak.core.errors import InputError, NotFoundError
from peerbak.core.ids import ChunkId
from peerbak.core.objects import Snapshot, Summary
from peerbak.core.pack import PackRecord, Shard
from peerbak.ports import CachedFile
from peerbak.services.archiver import (
    CACHEDIR_TAG,
    Archiver,
    Excludes,
    ScanTotals,
    exclude_spec,
    parse_if_present,
    scan,
)
from peerbak.services.index import META_PACK, Made, store, write_index
from peerbak.services.packer import KnownChunks, Packer
from peerbak.services.repository import DATA, META, Repository, crash_point

#: Seconds a backup waits for the daemon's repair to let go of the lock.
LOCK_WAIT: Final = 600.0


class _LedgerCache:
    """The archiver's files cache, kept in the ledger through the walker's own
    connection; a directory whose files did not change is not written again."""

    def __init__(self, repo: Repository) -> None:
        self._db = repo.ledger.files_cache()
        self._last: dict[bytes, dict[bytes, CachedFile]] = {}

    def lookup(self, parent: bytes) -> dict[bytes, CachedFile]:
        found = self._db.lookup(parent)
        self._last[parent] = found
        return found

    def store(self, parent: bytes, files: dict[bytes, CachedFile]) -> None:
        if self._last.pop(parent, None) != files:
            self._db.store(parent, files)

    def close(self) -> None:
        self._db.close()


async def run_backup(
    repo: Repository,
    paths: list[Path],
    *,
    excludes: Sequence[str] = (),
    iexcludes: Sequence[str] = (),
    exclude_if_present: Sequence[str] = (),
    exclude_caches: bool = False,
    exclude_larger_than: int = 0,
    one_file_system: bool = False,
    tags: Sequence[str] = (),
    host: str = "",
    dry_run: bool = False,
    code: tuple[int, int] | None = None,
    pack_size: int = 16 << 20,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    warn: Callable[[str], None] = lambda _: None,
    status_interval: float = 1.0,
    stdin: tuple[str, Readable] | None = None,
) -> dict[str, Any]:
    """Back ``paths`` up (or, with ``stdin``, one file of that name read from that
    stream); returns restic's summary fields and ours. The caller holds the writer's
    lock (``repo.home.lock("backup")``); the snapshot's time is the repository's clock,
    its host ``host`` or else the repository's."""
    started = time.monotonic()
    sources: list[Path] = []
    missing: list[Path] = []
    for p in paths:
        path = Path(os.path.abspath(p))
        (sources if os.path.lexists(path) else missing).append(path)
    if stdin is not None:
        if paths:
            raise InputError("--stdin backs up what it reads, not PATHS as well")
        sources = [Path("/") / stdin[0]]
    if not sources:
        raise NotFoundError(
            "nothing to back up: " + ", ".join(f"{m}: no such file or directory" for m in missing)
        )
    present = [parse_if_present(s) for s in exclude_if_present]
    spec = exclude_spec(
        list(excludes),
        ipatterns=list(iexcludes),
        if_present=present + ([CACHEDIR_TAG] if exclude_caches else []),
        larger_than=exclude_larger_than,
    )
    skipped = [f"{m}: no such file or directory, skipped" for m in missing]
    for message in skipped:  # as restic does: the rest is backed up, and the exit is 3
        warn(message)
    return await _backup(
        stdin,
        skipped,
        repo,
        sources,
        spec,
        one_file_system,
        list(tags),
        host or repo.hostname,
        dry_run,
        code,
        on_status,
        warn,
        status_interval,
        started,
        pack_size,
    )


async def _backup(  # noqa: PLR0915 - the steps above, in order
    stdin: tuple[str, Readable] | None,
    skipped: list[str],
    repo: Repository,
    sources: list[Path],
    spec: Excludes | None,
    one_file_system: bool,
    tags: list[str],
    hostname: str,
    dry_run: bool,
    code_override: tuple[int, int] | None,
    on_status: Callable[[dict[str, Any]], None] | None,
    warn: Callable[[str], None],
    interval: float,
    started: float,
    pack_size: int,
) -> dict[str, Any]:
    await repo.probe()
    code = repo.code(code_override)
    repo.require_reachable(code)
    reclaimed = 0 if dry_run else await repo.reclaim()
    known = KnownChunks.from_sorted(
        [KnownChunks.prefixes(batch) async for batch in repo.ledger.chunk_ids()]
    )
    loop = asyncio.get_running_loop()
    made: list[Made] = []

    def storer(kind: int) -> Callable[[PackRecord, list[Shard]], Any]:
        if dry_run:

            async def nothing(record: PackRecord, shards: list[Shard]) -> None:
                return None

            return nothing
        return functools.partial(store, repo, kind=kind)

    def packer(kind: int, target: int) -> Packer:
        return Packer(
            repo.keys,
            code,
            storer(kind),
            loop,
            random_bytes=repo.random_bytes,
            on_pack=lambda record: made.append(Made.of(record, kind)),
            known=known,
            target_size=target,
        )

    data = packer(DATA, pack_size)
    meta = packer(META, META_PACK)
    cancelled = threading.Event()
    cache = None if dry_run else _LedgerCache(repo)
    archiver = Archiver(
        data,
        meta,
        cache=cache,
        known=known.__contains__,
        excludes=spec,
        one_file_system=one_file_system,
        dry_run=dry_run,
        warn=warn,
        cancelled=cancelled,
    )
    archiver.progress.errors += len(skipped)
    archiver.progress.warnings += skipped

    def walk() -> ChunkId:
        try:
            if stdin is not None:
                root = archiver.archive_stream(stdin[0], stdin[1], int(repo.clock() * 1e9))
            else:
                root = archiver.archive(sources)
            data.flush()
            meta.flush()
            return root
        finally:
            data.close()
            if cache is not None:
                cache.close()

    totals = ScanTotals()
    if on_status is not None and stdin is None:
        scanner = threading.Thread(
            target=scan,
            args=(sources, totals),
            kwargs={"excludes": spec, "one_file_system": one_file_system, "cancelled": cancelled},
            name="peerbak-scan",
            daemon=True,
        )
        scanner.start()
    ticker = asyncio.create_task(_tick(archiver, data, totals, on_status, interval, started))
    try:
        root = await asyncio.to_thread(walk)
        index_packs = [] if dry_run else await write_index(repo, meta, made)
    except BaseException:
        cancelled.set()
        raise
    finally:
        ticker.cancel()
        cancelled.set()  # stops the scanner if it is still counting
        meta.close()
    p = archiver.progress
    stored_added = sum(m.stored_size for m in made)
    summary = Summary(
        files_new=p.files_new,
        files_changed=p.files_changed,
        files_unmodified=p.files_unmodified,
        dirs=p.dirs,
        bytes_read=p.bytes_read,
        total_files=p.total_files,
        total_bytes=p.total_bytes,
        data_added=data.stats.new_bytes,
        stored_added=stored_added,
        packs_added=len(made),
        errors=p.errors,
    )
    snapshots = await repo.snapshots()
    parent = max(  # as restic: the latest of the same host and paths
        (s for s in snapshots if s.paths == [str(x) for x in sources] and s.hostname == hostname),
        key=lambda s: s.time,
        default=None,
    )
    snap = Snapshot(
        id=repo.random_bytes(16),
        time=repo.clock(),
        hostname=hostname,
        paths=[str(x) for x in sources],
        tags=tags,
        tree=bytes(root),
        k=code.k,
        n=code.n,
        parent=parent.id if parent else b"",
        summary=summary,
    )
    reached = 0
    if not dry_run:
        await repo.ledger.add_snapshot(snap.id, snap.time, objects.encode(snap))
        crash_point("before-manifest")
        reached = await repo.publish(
            [*snapshots, snap], index_packs, unless="the snapshot is not saved"
        )
    return {
        "message_type": "summary",
        "dry_run": dry_run,
        "snapshot_id": "" if dry_run else snap.id.hex(),
        "files_new": p.files_new,
        "files_changed": p.files_changed,
        "files_unmodified": p.files_unmodified,
        "dirs": p.dirs,
        "errors": p.errors,
        "bytes_read": p.bytes_read,
        "data_added": data.stats.new_bytes,
        "stored_added": stored_added,
        "packs_added": len(made),
        "total_files_processed": p.total_files,
        "total_bytes_processed": p.total_bytes,
        "total_duration": round(time.monotonic() - started, 3),
        "k": code.k,
        "n": code.n,
        "members_up": len(repo.up()),
        "members": len(repo.members),
        "manifest_copies": reached,
        "members_missed": [] if dry_run else repo.missed,
        "reclaimed_packs": reclaimed,
        "seconds_by_stage": {k: round(v, 2) for k, v in data.stats.stages.items()},
        "warnings": p.warnings[:100],
    }


async def _tick(
    archiver: Archiver,
    data: Packer,
    totals: ScanTotals,
    on_status: Callable[[dict[str, Any]], None] | None,
    interval: float,
    started: float,
) -> None:
    if on_status is None:
        return
    while True:
        await asyncio.sleep(interval)
        p = archiver.progress
        on_status(
            {
                "message_type": "status",
                "seconds_elapsed": round(time.monotonic() - started, 1),
                "files_done": p.total_files,
                "bytes_done": p.total_bytes,
                "bytes_read": p.bytes_read,
                "data_added": data.stats.new_bytes,
                "packs": data.stats.packs,
                "errors": p.errors,
                "total_files": totals.files,
                "total_bytes": totals.bytes,
                "scan_finished": totals.finished,
                "percent_done": round(min(1.0, p.total_bytes / totals.bytes), 4)
                if totals.finished and totals.bytes
                else 0.0,
                "current_files": [p.current] if p.current else [],
            }
        )
