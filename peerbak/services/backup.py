"""``peerbak backup``: paths in, a snapshot in the pool out, in the order that keeps every
crash harmless (protocol/snapshots.md §7):

1. one backup per node at a time (an flock, which dies with its process);
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
import contextlib
import fcntl
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

from peerbak.adapters.home import Home
from peerbak.core import objects
from peerbak.core.crypto import BlobType
from peerbak.core.errors import InputError, Locked, PeerbakError, StorageError
from peerbak.core.ids import ChunkId, PackId
from peerbak.core.objects import Index, IndexPack, Snapshot, Summary
from peerbak.core.pack import PackRecord, Shard
from peerbak.ports import CachedFile
from peerbak.services.archiver import Archiver, Excludes, ScanTotals, exclude_spec, scan
from peerbak.services.packer import KnownChunks, Packer
from peerbak.services.repository import DATA, META, Repository, crash_point, index_pack

log = logging.getLogger(__name__)

#: Packs per index object: ≈ 3 KB each, so an index blob stays a few MiB.
INDEX_PACKS_PER_OBJECT: Final = 1000
#: An index object is closed at about this size (the largest blob is 16 MiB).
INDEX_OBJECT_BYTES: Final = 4 << 20
#: A rough upper bound of one blob's entry in an encoded index object.
INDEX_ENTRY_BYTES: Final = 64
#: Index packs the manifest may list before the newest small ones are merged; small
#: means at most MERGE_SMALL bytes (a backup that added a few hundred packs), and at
#: most MERGE_MAX are merged at once (16 MiB read back at most).
INDEX_LIST_MAX: Final = 32
MERGE_SMALL: Final = 1 << 20
MERGE_MAX: Final = 16
META_PACK: Final = 4 << 20
#: Seconds a backup waits for the daemon's repair to let go of the lock.
LOCK_WAIT: Final = 600.0


@contextlib.contextmanager
def backup_lock(home: Home, *, who: str = "backup", wait: float = 0.0) -> Iterator[None]:
    """One writer of a node's packs at a time (backup, repair, prune); the lock dies
    with its process (kill -9 too).

    A second backup is refused at once (two at once is a mistake, as in restic). The
    daemon's repair holds the lock for a batch of packs at a time and is marked
    ``maintenance``: a command finding it waits up to ``wait`` seconds instead.
    """
    path = home.run_dir / "backup.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot open {path}: {exc.strerror}") from None
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").split()
                if "maintenance" in holder and time.monotonic() < deadline:
                    time.sleep(0.2)  # the daemon lets go between batches
                    continue
                pid = holder[0] if holder else "?"
                kind = holder[1] if len(holder) > 1 else "backup"
                raise Locked(
                    f"a {kind} of this node is running (pid {pid}); try again when it is done"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {who}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


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
    home: Home,
    paths: list[Path],
    *,
    excludes: Sequence[str] = (),
    one_file_system: bool = False,
    tags: Sequence[str] = (),
    dry_run: bool = False,
    code: tuple[int, int] | None = None,
    pack_size: int = 16 << 20,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    warn: Callable[[str], None] = lambda _: None,
    status_interval: float = 1.0,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Back ``paths`` up; returns restic's summary fields and ours. ``clock`` gives the
    snapshot its time (and the manifest its own)."""
    started = time.time()
    sources = []
    for p in paths:
        path = Path(os.path.abspath(p))
        if not os.path.lexists(path):
            raise InputError(f"{p}: no such file or directory")
        sources.append(path)
    spec = exclude_spec(list(excludes))
    with backup_lock(home, wait=LOCK_WAIT):
        repo = await Repository.open(home, clock=clock)
        async with repo:
            return await _backup(
                repo,
                sources,
                spec,
                one_file_system,
                list(tags),
                dry_run,
                code,
                on_status,
                warn,
                status_interval,
                started,
                pack_size,
            )


async def _backup(  # noqa: PLR0915 - the steps above, in order
    repo: Repository,
    sources: list[Path],
    spec: Excludes | None,
    one_file_system: bool,
    tags: list[str],
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
        return functools.partial(_store, repo, kind=kind)

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

    def walk() -> ChunkId:
        try:
            root = archiver.archive(sources)
            data.flush()
            meta.flush()
            return root
        finally:
            data.close()
            if cache is not None:
                cache.close()

    totals = ScanTotals()
    if on_status is not None:
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
        index_packs = [] if dry_run else await _write_index(repo, meta, made)
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
    parent = max(
        (s for s in snapshots if s.paths == [str(x) for x in sources]),
        key=lambda s: s.time,
        default=None,
    )
    snap = Snapshot(
        id=repo.random_bytes(16),
        time=repo.clock(),
        hostname=socket.gethostname()[:255],
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
        "total_duration": round(time.time() - started, 3),
        "k": code.k,
        "n": code.n,
        "members_up": len(repo.up()),
        "members": len(repo.members),
        "manifest_copies": reached,
        "reclaimed_packs": reclaimed,
        "seconds_by_stage": {k: round(v, 2) for k, v in data.stats.stages.items()},
        "warnings": p.warnings[:100],
    }


async def _store(repo: Repository, record: PackRecord, shards: list[Shard], *, kind: int) -> None:
    await repo.store_pack(record, shards, kind)


class Made(NamedTuple):
    """A pack this run made: what the summary and the index need, not its blob entries
    (a run of millions of small files would otherwise keep every entry to the end)."""

    pack_id: PackId
    k: int
    n: int
    length: int
    kind: int

    @classmethod
    def of(cls, record: PackRecord, kind: int) -> Made:
        return cls(record.pack_id, record.k, record.n, record.length, kind)

    @property
    def stored_size(self) -> int:
        return self.n * (100 + -(-self.length // self.k))


async def _write_index(repo: Repository, meta: Packer, made: list[Made]) -> list[IndexPack]:
    """Index objects for every stored pack no index lists yet (this run's, and any a
    killed run stored), in packs of their own that the manifest then lists.

    Each backup adds an index pack to the manifest's list; once the list is long, the
    newest small ones are read back and merged into one, so the manifest stays small
    (about 400 bytes an entry, 1 MiB at most) however often backups run.
    """
    existing = await repo.index_packs()
    merging = _to_merge(existing)
    before = len(made)
    writer = _IndexWriter(meta)
    try:
        for listed_pack in merging:
            for item in await repo.read_index(listed_pack):
                await writer.add(item)
            await writer.add(listed_pack)  # it stays a stored pack: an index now lists it
    except PeerbakError as exc:  # merging can wait for a better day (the merged packs
        log.warning("index packs not merged this time: %s", exc)  # stay listed)
        merging = []
    listed: list[bytes] = []
    async for page in repo.ledger.unindexed_packs():
        for rec, holders in page:
            await writer.add(index_pack(rec, holders))
            listed.append(bytes(rec.pack_id))
    if not writer.written and not listed:
        return existing
    await writer.flush()
    await asyncio.to_thread(meta.flush)
    new = []
    for record in made[before:]:
        found = await repo.ledger.pack(record.pack_id)
        if found is not None:
            new.append(index_pack(found[0], found[1]))
            listed.append(record.pack_id)
    merged = {p.pack for p in merging}
    every = [p for p in existing if p.pack not in merged] + new
    # Kept now, not when the manifest is published: a crash before publishing must not
    # leave packs marked indexed that no manifest will ever list.
    await repo.ledger.set_meta("index_packs", objects.encode(Index(packs=every)))
    await repo.ledger.mark_indexed(listed)
    return every


class _IndexWriter:
    """Index objects of at most INDEX_OBJECT_BYTES, written to the metadata packer as
    they fill, so indexing millions of chunks holds one object in memory, not all."""

    def __init__(self, meta: Packer) -> None:
        self.meta = meta
        self.batch: list[IndexPack] = []
        self.size = 0
        self.written = 0

    async def add(self, item: IndexPack) -> None:
        self.batch.append(item)
        self.size += INDEX_ENTRY_BYTES * (len(item.blobs) + 4)
        if self.size >= INDEX_OBJECT_BYTES or len(self.batch) >= INDEX_PACKS_PER_OBJECT:
            await self.flush()

    async def flush(self) -> None:
        if self.batch:
            body = objects.encode(Index(packs=self.batch))
            await asyncio.to_thread(self.meta.add_chunk, body, BlobType.INDEX)
            self.written += len(self.batch)
        self.batch, self.size = [], 0


def _to_merge(existing: list[IndexPack]) -> list[IndexPack]:
    """The newest small index packs, once the manifest lists too many.

    Only a run of small ones at the end of the list: the merged pack goes to the end,
    and a later entry for a pack (its placement after a repair) must stay after an
    earlier one, because recovery applies them in list order.
    """
    if len(existing) < INDEX_LIST_MAX:
        return []
    tail = 0
    while tail < min(len(existing), MERGE_MAX) and existing[-1 - tail].length <= MERGE_SMALL:
        tail += 1
    return existing[len(existing) - tail :] if tail >= 2 else []


async def republish(
    repo: Repository, snapshots: Sequence[Snapshot] | None = None, *, unless: str = ""
) -> int:
    """Index the packs no index lists as placed now (after a repair moved shards, or
    a killed run), then publish a manifest listing ``snapshots`` (default: all the
    ledger keeps). Returns how many members keep it. The caller holds the backup lock.
    """
    loop = asyncio.get_running_loop()
    made: list[Made] = []
    snaps = list(snapshots) if snapshots is not None else await repo.snapshots()
    latest = max(snaps, key=lambda s: s.time, default=None)
    meta = Packer(
        repo.keys,
        repo.code((latest.k, latest.n) if latest else None),  # as the backups chose
        functools.partial(_store, repo, kind=META),
        loop,
        random_bytes=repo.random_bytes,
        on_pack=lambda record: made.append(Made.of(record, META)),
        target_size=META_PACK,
    )
    try:
        index_packs = await _write_index(repo, meta, made)
    finally:
        meta.close()
    return await repo.publish(snaps, index_packs, unless=unless)


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
                "seconds_elapsed": round(time.time() - started, 1),
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
