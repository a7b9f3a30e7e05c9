"""``peerbak restore``: a snapshot back onto disk, pack by pack.

First the trees are read (they sit in a few metadata packs) while a plan records, for
every pack, which chunk goes to which file at which offset; a file is created under a
``.partial`` name by the first of its chunks to arrive. Then the packs are fetched, a
few at a time, each from the fastest k of its holders; every shard is checked against
its recorded root, every chunk by its AEAD tag and keyed hash; each chunk is written
where the plan says. A file whose last chunk has arrived gets its mode, owner and
times and is renamed to its name: a file under its final name is always whole.
Links, special files and directory times come last, deepest first.

The plan holds a few dozen bytes per chunk (not per byte), so a restore of a tree
of millions of files needs a few hundred MB; a spill to SQLite is the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pathspec

from peerbak import objects
from peerbak.errors import IntegrityError, NotFoundError, PeerbakError
from peerbak.objects import Entry, NodeType, Snapshot, Tree
from peerbak.pack import PackRecord
from peerbak.repository import Repository
from peerbak.restore import FetchReport, read_blobs

#: Packs fetched and written at once: 3 × (16 MiB pack + k shards) in memory.
IN_FLIGHT: Final = 3
PARTIAL: Final = ".partial"
#: Files are planned (their chunks located) in batches of about this many chunks.
PLAN_BATCH: Final = 4000


@dataclass
class _File:
    path: Path
    entry: Entry
    remaining: int
    written: int = 0
    links: list[Path] = field(default_factory=list)


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    plan_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Restorer:
    def __init__(self, repo: Repository, target: Path, include: list[str] | None = None) -> None:
        self.repo = repo
        self.target = target
        self.include = pathspec.GitIgnoreSpec.from_lines(include) if include else None
        self.stats = RestoreStats()
        self._files: list[_File] = []
        self._plan: dict[bytes, list[tuple[bytes, int, int]]] = defaultdict(list)
        self._by_inode: dict[tuple[int, int], _File] = {}
        self._dirs: list[tuple[Path, Entry]] = []
        self._later: list[tuple[Path, Entry]] = []
        self._am_root = os.geteuid() == 0
        self._lock = threading.Lock()
        self._empty: list[_File] = []
        self._dirs_made = threading.Event()
        self._queued: list[tuple[Path, Entry]] = []
        self._queued_chunks = 0
        self._records: dict[bytes, tuple[PackRecord, dict[int, bytes]]] = {}
        self._plain: dict[bytes, int] = {}

    # -- phase 1: trees, files created, the plan ----------------------------------------------

    def _wanted(self, rel: str, is_dir: bool) -> bool:
        if self.include is None:
            return True
        return self.include.match_file(rel + "/" if is_dir else rel)

    async def _walk(self, tree_id: bytes, here: Path, rel: str, forced: bool) -> bool:
        """Create what is wanted below ``here``; True when anything was."""
        raw = await self.repo.read_blob(tree_id)
        tree = objects.decode(raw, Tree, "tree", tree_id.hex()[:12])
        any_wanted = False
        for entry in tree.entries:
            name = os.fsdecode(entry.name)
            path = here / name
            child_rel = f"{rel}/{name}"
            if entry.type is NodeType.DIR:
                take = forced or self._wanted(child_rel, True)
                inside = await self._walk(entry.subtree, path, child_rel, take)
                if take or inside:
                    self._dirs.append((path, entry))
                    any_wanted = True
                continue
            if not (forced or self._wanted(child_rel, False)):
                continue
            any_wanted = True
            if entry.type is NodeType.FILE:
                self._queued.append((path, entry))
                self._queued_chunks += len(entry.content) // 32
            else:
                self._later.append((path, entry))
        if self._queued_chunks >= PLAN_BATCH:
            await self._plan_queued()
        return any_wanted

    async def _plan_queued(self) -> None:
        """The files seen so far: jobs, and every chunk located with one query per 500."""
        files, self._queued, self._queued_chunks = self._queued, [], 0
        jobs: list[tuple[int, _File]] = []
        for path, entry in files:
            key = (entry.device, entry.inode)
            if entry.links > 1 and key in self._by_inode:
                self._by_inode[key].links.append(path)
                continue
            job = _File(path, entry, len(entry.content) // 32)
            if entry.links > 1:
                self._by_inode[key] = job
            jobs.append((len(self._files), job))
            self._files.append(job)
        located = await self.repo.ledger.locate([c for _, job in jobs for c in job.entry.chunks])
        for new in set(located.values()) - self._records.keys():
            await self._record(new)
        for number, job in jobs:
            if not job.remaining:
                self._empty.append(job)  # finished after the walk: its hard links come later
                continue
            offset = 0
            for chunk in job.entry.chunks:
                raw = bytes(chunk)
                pack = located.get(raw)
                if pack is None:
                    raise NotFoundError(
                        f"{job.path}: chunk {chunk.hex()[:12]} is in no stored pack"
                    )
                self._plan[pack].append((raw, number, offset))
                offset += self._plain[raw]
            if offset != job.entry.size:
                raise IntegrityError(
                    f"{job.path}: its chunks add up to {offset} bytes, the snapshot says "
                    f"{job.entry.size}",
                    obj="file",
                    ident=str(job.path),
                    check="size",
                )

    async def _record(self, pack: bytes) -> tuple[PackRecord, dict[int, bytes]]:
        found = self._records.get(pack)
        if found is None:
            found = await self.repo.ledger.pack(pack)
            if found is None:
                raise NotFoundError(f"pack {pack.hex()[:12]} is not in the ledger")
            self._records[pack] = found
            for e in found[0].entries:
                self._plain[bytes(e.ident)] = e.plain_length
        return found

    # -- phase 2: packs ------------------------------------------------------------------

    async def _pack(self, pack: bytes, slots: asyncio.Semaphore) -> None:
        async with slots:
            report = FetchReport()
            record, holders = await self._record(pack)
            data = await self.repo.fetch_record(record, holders, report)
            await asyncio.to_thread(self._write_pack, record, data, self._plan.pop(pack))

    def _make_dirs(self) -> None:
        try:
            for path, _ in sorted(self._dirs, key=lambda d: len(d[0].parts)):
                path.mkdir(mode=0o700, exist_ok=True)
        finally:
            self._dirs_made.set()

    def _write_pack(
        self, record: PackRecord, data: bytes, targets: list[tuple[bytes, int, int]]
    ) -> None:
        self._dirs_made.wait()
        wanted: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        for chunk, number, offset in targets:
            wanted[chunk].append((number, offset))
        for entry, plain in read_blobs(self.repo.keys, data, record):
            for number, offset in wanted.pop(bytes(entry.ident), ()):
                job = self._files[number]
                # Made by its first chunk; packs write one file's chunks in parallel.
                fd = os.open(_partial(job.path), os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.pwrite(fd, plain, offset)
                finally:
                    os.close(fd)
                with self._lock:
                    job.written += len(plain)
                    job.remaining -= 1
                    done = job.remaining == 0
                if done:
                    self._finish(job)
        if wanted:
            raise IntegrityError(
                f"pack {record.pack_id.hex()[:12]} lacks {len(wanted)} chunks the index "
                "places in it",
                obj="pack",
                ident=record.pack_id.hex(),
                check="index",
            )

    def _finish(self, job: _File) -> None:
        partial = _partial(job.path)
        if job.entry.content:
            os.truncate(partial, job.entry.size)  # a stale .partial may have been longer
        else:
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        self._attributes(partial, job.entry, follow=True)
        os.replace(partial, job.path)
        for link in job.links:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            os.link(job.path, link)
        with self._lock:
            self.stats.files += 1
            self.stats.bytes += job.entry.size
            self.stats.links += len(job.links)

    # -- phase 3: what has no contents -----------------------------------------------------

    def _special(self, path: Path, entry: Entry) -> None:
        with contextlib.suppress(FileNotFoundError):
            if not path.is_dir() or path.is_symlink():
                path.unlink()
        if entry.type is NodeType.SYMLINK:
            os.symlink(entry.target, os.fsencode(path))
            self._attributes(path, entry, follow=False)
            return
        kinds = {
            NodeType.FIFO: stat.S_IFIFO,
            NodeType.CHARDEV: stat.S_IFCHR,
            NodeType.BLOCKDEV: stat.S_IFBLK,
        }
        try:
            os.mknod(path, entry.mode | kinds[entry.type], entry.rdev)
        except PermissionError:
            self.stats.errors.append(f"{path}: only root can make device files")
            return
        self._attributes(path, entry, follow=True)

    def _attributes(self, path: Path, entry: Entry, *, follow: bool) -> None:
        if self._am_root:
            with contextlib.suppress(OSError):
                os.chown(path, entry.uid, entry.gid, follow_symlinks=follow)
        if follow:
            os.chmod(path, entry.mode)
        with contextlib.suppress(NotImplementedError, OSError):
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=follow)

    def _finish_empty(self) -> None:
        for job in self._empty:
            self._finish(job)

    def _last(self) -> None:
        """Links and devices, then directory attributes, deepest first (writing into a
        directory changes its mtime, so its own comes after its contents)."""
        for path, entry in self._later:
            self._special(path, entry)
        for path, entry in sorted(self._dirs, key=lambda d: -len(d[0].parts)):
            self._attributes(path, entry, follow=True)
            self.stats.dirs += 1

    # -- the whole ---------------------------------------------------------------------------

    async def run(self, snapshot: Snapshot) -> RestoreStats:
        self.target.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        await self._walk(snapshot.tree, self.target, "", False)
        await self._plan_queued()
        self.stats.plan_seconds = time.monotonic() - t0
        # Directories are made in a thread while the first packs arrive; writers wait.
        made = asyncio.create_task(asyncio.to_thread(self._make_dirs))
        slots = asyncio.Semaphore(IN_FLIGHT)
        tasks = [asyncio.create_task(self._pack(p, slots)) for p in list(self._plan)]
        try:
            await made
            await asyncio.to_thread(self._finish_empty)
            await asyncio.gather(*tasks)
        except BaseException:
            self._dirs_made.set()  # let writers still waiting run into the error
            for t in [made, *tasks]:
                t.cancel()
            await asyncio.gather(made, *tasks, return_exceptions=True)
            raise
        unfinished = [f for f in self._files if f.remaining]
        if unfinished:
            raise IntegrityError(
                f"{len(unfinished)} files did not get all their chunks, e.g. {unfinished[0].path}",
                obj="restore",
                check="complete",
            )
        await asyncio.to_thread(self._last)
        return self.stats


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL)


async def run_restore(
    repo: Repository, snapshot_ref: str, target: Path, include: list[str] | None = None
) -> dict[str, Any]:
    started = time.time()
    await repo.probe()
    snapshot = await repo.find_snapshot(snapshot_ref)
    restorer = Restorer(repo, target, include)
    try:
        stats = await restorer.run(snapshot)
    except OSError as exc:
        raise PeerbakError(f"cannot write under {target}: {exc}") from None
    seconds = time.time() - started
    return {
        "message_type": "summary",
        "snapshot_id": snapshot.id.hex(),
        "target": str(target),
        "files_restored": stats.files,
        "dirs_restored": stats.dirs,
        "hard_links": stats.links,
        "bytes_restored": stats.bytes,
        "total_duration": round(seconds, 3),
        "plan_duration": round(stats.plan_seconds, 3),
        "mb_per_s": round(stats.bytes / max(seconds, 1e-9) / 1e6, 1),
        "served_by": {
            (m.name or m.link.node.short): m.served for m in repo.members.values() if m.served
        },
        "down": {(m.name or m.link.node.short): m.error for m in repo.members.values() if not m.up},
        "errors": stats.errors,
    }


async def list_tree(
    repo: Repository, snapshot: Snapshot, below: str = "/"
) -> AsyncIterator[dict[str, Any]]:
    """Every entry of a snapshot under ``below``, depth first, as ``ls --json`` rows."""
    below = "/" + below.strip("/") if below.strip("/") else "/"

    async def walk(tree_id: bytes, prefix: str) -> AsyncIterator[dict[str, Any]]:
        raw = await repo.read_blob(tree_id)
        for entry in objects.decode(raw, Tree, "tree", tree_id.hex()[:12]).entries:
            path = f"{prefix}/{os.fsdecode(entry.name)}"
            inside = below in ("/", path) or path.startswith(below + "/")
            if inside:
                yield _row(path, entry)
            if entry.type is NodeType.DIR and (inside or below.startswith(path + "/")):
                async for row in walk(entry.subtree, path):
                    yield row

    async for row in walk(snapshot.tree, ""):
        yield row


def _row(path: str, entry: Entry) -> dict[str, Any]:
    kinds = {
        NodeType.FILE: "file",
        NodeType.DIR: "dir",
        NodeType.SYMLINK: "symlink",
        NodeType.FIFO: "fifo",
        NodeType.CHARDEV: "chardev",
        NodeType.BLOCKDEV: "blockdev",
    }
    fmt = {
        NodeType.FILE: stat.S_IFREG,
        NodeType.DIR: stat.S_IFDIR,
        NodeType.SYMLINK: stat.S_IFLNK,
        NodeType.FIFO: stat.S_IFIFO,
        NodeType.CHARDEV: stat.S_IFCHR,
        NodeType.BLOCKDEV: stat.S_IFBLK,
    }
    return {
        "path": path,
        "type": kinds[entry.type],
        "mode": entry.mode,
        "permissions": stat.filemode(fmt[entry.type] | entry.mode),
        "size": entry.size,
        "uid": entry.uid,
        "gid": entry.gid,
        "mtime_ns": entry.mtime_ns,
        "mtime_text": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.mtime_ns / 1e9)),
        "links": entry.links,
        "target": os.fsdecode(entry.target) if entry.target else "",
    }
