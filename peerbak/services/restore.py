"""``peerbak restore``: a snapshot back onto disk, pack by pack.

First the trees are read (they sit in a few metadata packs) while a plan records, for
every pack, which chunk goes to which file at which offset; a file is created under a
``.partial`` name by the first of its chunks to arrive. Then the packs are fetched, a
few at a time, each from the fastest k of its holders; every shard is checked against
its recorded root, every chunk by its AEAD tag and keyed hash; each chunk is written
where the plan says. A file whose last chunk has arrived gets its mode, owner and
times and is renamed to its name: a file under its final name is always whole.
Links, special files and directory times come last, deepest first.

The plan lives on disk (a scratch file the ledger hands out), not in memory: a restore
holds a few packs at a time whatever the number of files.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
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

from peerbak.core import crypto, objects
from peerbak.core.errors import (
    IntegrityError,
    NameRefused,
    NotEnoughShares,
    NotFoundError,
    PeerbakError,
    StorageError,
    Unmatched,
)
from peerbak.core.objects import FILE_TYPE_BITS, Entry, NodeType, Snapshot
from peerbak.core.pack import PackRecord
from peerbak.core.selection import EVERY, Selection, split_ref
from peerbak.core.words import plural, verb
from peerbak.services.fetch import FetchReport, read_blobs
from peerbak.services.repository import Repository
from peerbak.services.target import TargetDir, check_name

#: Packs fetched and written at once: 3 × (16 MiB pack + k shards) in memory.
IN_FLIGHT: Final = 3
PARTIAL: Final = ".partial"
#: The longest name most file systems hold (bytes): a temporary name never exceeds it.
NAME_MAX: Final = 255
#: Errors that say the target cannot hold a name: only that entry fails.
_NAME_ERRORS: Final = frozenset({errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ})
#: Files are planned (their chunks located) in batches of about this many chunks.
PLAN_BATCH: Final = 4000


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    plan_seconds: float = 0.0
    failed_packs: int = 0
    incomplete: int = 0
    refused: int = 0  # entries whose names the target file system cannot hold
    verified: int = 0  # files read back and found as the snapshot has them (--verify)
    #: The error class of a failed pack (NotEnoughShares first): the exit code.
    error_class: type[PeerbakError] | None = None
    errors: list[str] = field(default_factory=list)


def _entry(raw: bytes) -> Entry:
    return objects.decode(raw, Entry, "entry")


class Restorer:
    """Restores one snapshot into ``target``; ``close`` removes its plan."""

    def __init__(
        self,
        repo: Repository,
        target: Path,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
    ) -> None:
        self.repo = repo
        self.target = target
        self.include = pathspec.GitIgnoreSpec.from_lines(include) if include else None
        self.exclude = pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None
        # Each positive pattern on its own, until it matches something: one that never
        # does is named at the end (a typo must not look like an empty snapshot).
        self._unmatched = {
            text: pathspec.GitIgnoreSpec.from_lines([text])
            for text in include or ()
            if text.strip() and not text.startswith(("!", "#"))
        }
        self.stats = RestoreStats()
        self._plan = repo.ledger.restore_plan()
        self._am_root = os.geteuid() == 0
        self._lock = threading.Lock()
        self._dir: TargetDir | None = None
        self._queued: list[tuple[bytes, Entry]] = []
        self._queued_chunks = 0
        self._refused: set[int] = set()  # files refused before all their chunks were written
        self._refused_paths: set[bytes] = set()

    def close(self) -> None:
        self._plan.close()
        if self._dir is not None:
            self._dir.close()

    @property
    def dir(self) -> TargetDir:
        assert self._dir is not None, "run() opens the target"
        return self._dir

    # -- phase 1: trees and the plan -----------------------------------------------------------

    def _refuse(self, path: bytes, exc: OSError) -> None:
        """Leave out one entry the target cannot hold (by name), say so, and go on."""
        if exc.errno not in _NAME_ERRORS:
            raise exc
        with self._lock:
            self._refused_paths.add(path)
            self.stats.refused += 1
            self.stats.errors.append(
                f"{os.fsdecode(path)}: not restored, the target cannot hold this name "
                f"({exc.strerror})"
            )
            if self.stats.error_class is None:
                self.stats.error_class = NameRefused

    def _wanted(self, rel: str, is_dir: bool) -> bool:
        if self.include is None:
            return True
        key = rel + "/" if is_dir else rel
        if not self.include.match_file(key):
            return False
        for text in [t for t, spec in self._unmatched.items() if spec.match_file(key)]:
            del self._unmatched[text]
        return True

    async def _walk(self, tree_id: bytes, here: bytes, rel: str, forced: bool) -> bool:
        """Plan what is wanted below ``here`` (relative to the target); True when anything
        was."""
        tree = await self.repo.read_tree(tree_id)
        any_wanted = False
        for entry in tree.entries:
            name = os.fsdecode(check_name(entry.name))
            path = here + b"/" + entry.name if here else entry.name
            child_rel = f"{rel}/{name}"
            is_dir = entry.type is NodeType.DIR
            if self.exclude is not None and self.exclude.match_file(child_rel + "/" * is_dir):
                continue  # and all below it
            if is_dir:
                take = forced or self._wanted(child_rel, True)
                inside = await self._walk(entry.subtree, path, child_rel, take)
                if take or inside:
                    self._plan.add_dir(path, path.count(b"/") + 1, objects.encode(entry))
                    any_wanted = True
                continue
            if not (forced or self._wanted(child_rel, False)):
                continue
            any_wanted = True
            if entry.type is NodeType.FILE:
                self._queued.append((path, entry))
                self._queued_chunks += len(entry.content) // 32
            else:
                self._plan.add_later(path, objects.encode(entry))
        if self._queued_chunks >= PLAN_BATCH:
            await self._plan_queued()
        return any_wanted

    async def _plan_queued(self) -> None:
        """The files seen so far into the plan, their chunks located a batch at a time."""
        files, self._queued, self._queued_chunks = self._queued, [], 0
        planned: list[tuple[int, bytes, Entry]] = []
        for path, entry in files:
            inode = (entry.device, entry.inode) if entry.links > 1 else None
            ident = self._plan.add_file(
                path, objects.encode(entry), len(entry.content) // 32, inode
            )
            if ident is not None and entry.content:
                planned.append((ident, path, entry))
        located = await self.repo.ledger.locate_sized(
            [c for _, _, entry in planned for c in entry.chunks]
        )
        rows: list[tuple[bytes, bytes, int, int]] = []
        for ident, path, entry in planned:
            offset = 0
            for chunk in entry.chunks:
                found = located.get(bytes(chunk))
                if found is None:
                    raise NotFoundError(
                        f"{os.fsdecode(path)}: chunk {chunk.hex()[:12]} is in no stored pack"
                    )
                rows.append((found[0], bytes(chunk), ident, offset))
                offset += found[1]
            if offset != entry.size:
                raise IntegrityError(
                    f"{os.fsdecode(path)}: its chunks add up to {offset} bytes, the snapshot "
                    f"says {entry.size}",
                    obj="file",
                    ident=os.fsdecode(path),
                    check="size",
                )
        self._plan.add_targets(rows)

    # -- phase 2: packs ------------------------------------------------------------------

    async def _fetch_all(self) -> None:
        """IN_FLIGHT workers take packs from the plan until none is left."""
        packs = self._plan.packs()
        lock = asyncio.Lock()

        async def worker() -> None:
            while True:
                async with lock:
                    pack = await asyncio.to_thread(next, packs, None)
                if pack is None:
                    return
                await self._pack(pack)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))

    async def _pack(self, pack: bytes) -> None:
        found = await self.repo.ledger.pack(pack)
        if found is None:
            raise NotFoundError(f"pack {pack.hex()[:12]} is not in the ledger")
        record, holders = found
        try:
            data = await self.repo.fetch_record(record, holders, FetchReport())
            await asyncio.to_thread(self._write_pack, record, data)
        except (NotEnoughShares, IntegrityError) as exc:
            # One lost pack must not cost the files that do not need it: go on, and
            # report the files it leaves incomplete (still under .partial names).
            self.stats.failed_packs += 1
            self.stats.errors.append(str(exc))
            if self.stats.error_class is None or isinstance(exc, NotEnoughShares):
                self.stats.error_class = type(exc)

    def _make_dirs(self) -> None:
        """Every directory, shallowest first (writers make the ones they need as well)."""
        for path, _ in self._plan.dirs(deepest_first=False):
            try:
                self.dir.make_dir(path)
            except OSError as exc:
                self._refuse(path, exc)  # what is inside fails on its own, named

    def _write_pack(self, record: PackRecord, data: bytes) -> None:
        targets, paths = self._plan.targets(bytes(record.pack_id))
        wanted: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        for chunk, ident, offset in targets:
            wanted[chunk].append((ident, offset))
        counts: dict[int, int] = defaultdict(int)
        for entry, plain in read_blobs(self.repo.keys, data, record):
            for ident, offset in wanted.pop(bytes(entry.ident), ()):
                if ident in self._refused:
                    continue
                # Made by its first chunk; packs write one file's chunks in parallel.
                try:
                    fd = self.dir.open_file(_partial(paths[ident]))
                except OSError as exc:
                    self._refuse(paths[ident], exc)
                    with self._lock:
                        self._refused.add(ident)
                    continue
                try:
                    os.pwrite(fd, plain, offset)
                finally:
                    os.close(fd)
                counts[ident] += 1
        if wanted:
            raise IntegrityError(
                f"pack {record.pack_id.hex()[:12]} lacks {plural(len(wanted), 'chunk')} the index "
                "places in it",
                obj="pack",
                ident=record.pack_id.hex(),
                check="index",
            )
        for ident, path, raw in self._plan.written(counts):
            self._finish(ident, path, _entry(raw))

    def _finish(self, ident: int, path: bytes, entry: Entry) -> None:
        partial = _partial(path)
        try:
            fd = self.dir.open_file(partial)
            try:
                os.ftruncate(fd, entry.size)  # a stale .partial may have been longer
                self._attributes(fd, entry)
            finally:
                os.close(fd)
            self.dir.replace(partial, path)
        except OSError as exc:
            self._refuse(path, exc)
            with contextlib.suppress(OSError):
                self.dir.remove(partial)
            return
        links = self._plan.links(ident) if entry.links > 1 else []
        made = 0
        for link in links:
            try:
                self.dir.link(path, link)
                made += 1
            except OSError as exc:
                self._refuse(link, exc)
        with self._lock:
            self.stats.files += 1
            self.stats.bytes += entry.size
            self.stats.links += made

    # -- phase 3: what has no contents -----------------------------------------------------

    def _special(self, path: bytes, entry: Entry) -> None:
        try:
            self._make_special(path, entry)
        except OSError as exc:
            self._refuse(path, exc)

    def _make_special(self, path: bytes, entry: Entry) -> None:
        uid, gid = (entry.uid, entry.gid) if self._am_root else (-1, -1)
        if entry.type is NodeType.SYMLINK:
            self.dir.symlink(path, entry.target, uid, gid, entry.mtime_ns)
            return
        try:
            self.dir.mknod(
                path, FILE_TYPE_BITS[entry.type], entry.mode, entry.rdev, uid, gid, entry.mtime_ns
            )
        except PermissionError:
            self.stats.errors.append(f"{os.fsdecode(path)}: only root can make device files")

    def _attributes(self, fd: int, entry: Entry) -> None:
        """Owner (as root), then mode (chown clears set-id bits), then times: all through
        the entry's own descriptor, so nothing planted at its name is followed."""
        if self._am_root:
            with contextlib.suppress(OSError):
                os.fchown(fd, entry.uid, entry.gid)
        os.fchmod(fd, entry.mode)
        with contextlib.suppress(OSError):
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))

    def _finish_empty(self) -> None:
        for ident, path, raw in list(self._plan.empty_files()):
            self._finish(ident, path, _entry(raw))

    def _last(self) -> None:
        """Links and devices, then directory attributes, deepest first (writing into a
        directory changes its mtime, so its own comes after its contents)."""
        for path, raw in self._plan.later():
            self._special(path, _entry(raw))
        for path, raw in self._plan.dirs(deepest_first=True):
            try:
                fd = self.dir.open_dir(path)
            except OSError as exc:
                if exc.errno not in _NAME_ERRORS:
                    raise
                continue  # refused when it was made, and said so then
            try:
                self._attributes(fd, _entry(raw))
            finally:
                os.close(fd)
            self.stats.dirs += 1

    # -- read back -----------------------------------------------------------------------

    async def verify(self) -> None:
        """Read every restored file back and check each chunk's keyed id against the
        snapshot (restic's ``--verify``): what is on the target's disk, not what was
        sent to it."""
        for _, path, raw in self._plan.finished_files():
            if path in self._refused_paths:
                continue
            entry = _entry(raw)
            ids = [bytes(c) for c in entry.chunks]
            sizes = await self.repo.ledger.locate_sized(ids)
            lengths = [sizes[i][1] for i in ids]
            wrong = await asyncio.to_thread(self._differs, path, ids, lengths)
            if wrong:
                self.stats.errors.append(f"{os.fsdecode(path)}: {wrong}")
                self.stats.error_class = IntegrityError
            else:
                self.stats.verified += 1

    def _differs(self, path: bytes, ids: list[bytes], lengths: list[int]) -> str:
        """Why the file at ``path`` is not the chunks ``ids``, or "" when it is."""
        key = self.repo.keys.chunk_id_key
        try:
            fd = self.dir.open_read(path)
        except OSError as exc:
            return f"cannot be read back ({exc.strerror})"
        try:
            offset = 0
            for ident, length in zip(ids, lengths, strict=True):
                data = os.pread(fd, length, offset)
                if bytes(crypto.chunk_id(key, data)) != ident:
                    return f"restored bytes differ from the snapshot at offset {offset}"
                offset += length
            if os.fstat(fd).st_size != offset:
                return f"restored size {os.fstat(fd).st_size} differs from the snapshot's {offset}"
        finally:
            os.close(fd)
        return ""

    # -- the whole ---------------------------------------------------------------------------

    async def run(self, snapshot: Snapshot, subpath: str = "") -> RestoreStats:
        """The snapshot, or the contents of its directory ``subpath``, into the target."""
        root = await subtree(self.repo, snapshot, subpath) if subpath else snapshot.tree
        self._dir = TargetDir(self.target)
        t0 = time.monotonic()
        wanted = await self._walk(root, b"", "", False)
        if self.include is not None and not wanted:
            raise NotFoundError(
                "nothing in snapshot "
                f"{snapshot.id.hex()[:8]} matches --include {' '.join(self._unmatched) or '…'}"
            )
        for text in self._unmatched:
            self.stats.errors.append(f"--include {text!r} matches nothing in this snapshot")
            if self.stats.error_class is None:
                self.stats.error_class = Unmatched
        await self._plan_queued()
        self._plan.planned()
        self.stats.plan_seconds = time.monotonic() - t0
        # Directories are made in a thread while the first packs arrive; writers wait.
        made = asyncio.create_task(asyncio.to_thread(self._make_dirs))
        fetching = asyncio.create_task(self._fetch_all())
        try:
            await made
            await asyncio.to_thread(self._finish_empty)
            await fetching
        except BaseException:
            for t in (made, fetching):
                t.cancel()
            await asyncio.gather(made, fetching, return_exceptions=True)
            raise
        count, example = self._plan.unfinished()
        count -= len(self._refused)  # named already, not lost chunks
        if count and not self.stats.failed_packs:
            raise IntegrityError(
                f"{plural(count, 'file')} did not get all their chunks, e.g. "
                f"{os.fsdecode(example)}",
                obj="restore",
                check="complete",
            )
        self.stats.incomplete = count
        if count:
            self.stats.errors.append(
                f"{plural(count, 'file')} {verb(count, 'is', 'are')} incomplete (left as "
                ".partial), e.g. "
                f"{os.fsdecode(self.target / os.fsdecode(example))}"
            )
        await asyncio.to_thread(self._last)
        return self.stats


def _partial(path: bytes) -> bytes:
    """Where a file is written before its final name: beside it, ``NAME.partial``, or a
    short name of its hash when that would pass NAME_MAX (a 250-byte name is legal)."""
    head, sep, name = path.rpartition(b"/")
    if len(name) + len(PARTIAL) <= NAME_MAX:
        return path + PARTIAL.encode()
    digest = hashlib.blake2b(name, digest_size=12).hexdigest()
    return head + sep + f".peerbak-{digest}{PARTIAL}".encode()


async def run_restore(
    repo: Repository,
    snapshot_ref: str,
    target: Path,
    include: list[str] | None = None,
    only: Selection = EVERY,
    exclude: list[str] | None = None,
    verify: bool = False,
) -> dict[str, Any]:
    """Restore ``snapshot_ref`` (an id prefix or ``latest`` of what ``only`` selects,
    with ``:/sub/dir`` for that directory's contents alone) into ``target``."""
    started = time.monotonic()
    await repo.probe()
    ref, subpath = split_ref(snapshot_ref)
    snapshot = await repo.find_snapshot(ref, only)
    restorer = Restorer(repo, target, include, exclude)
    try:
        stats = await restorer.run(snapshot, subpath)
        if verify:
            await restorer.verify()
    except OSError as exc:
        raise StorageError(f"cannot write under {target}: {exc}") from None
    finally:
        restorer.close()
    seconds = time.monotonic() - started
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
        "served_by": {(m.label): m.served for m in repo.members.values() if m.served},
        "down": {(m.label): m.error for m in repo.members.values() if not m.up},
        "failed_packs": stats.failed_packs,
        "incomplete_files": stats.incomplete,
        "names_refused": stats.refused,
        "files_verified": stats.verified,
        "exit_code": stats.error_class.exit_code if stats.error_class else 0,
        "errors": stats.errors[:100],
    }


async def find_entry(repo: Repository, snapshot: Snapshot, path: str) -> Entry | None:
    """The entry at ``path`` in the snapshot (None for its root), or NotFoundError."""
    names = [os.fsencode(p) for p in path.strip("/").split("/") if p]
    tree_id, entry = bytes(snapshot.tree), None
    for depth, name in enumerate(names):
        entries = (await repo.read_tree(tree_id)).entries
        entry = next((e for e in entries if e.name == name), None)
        last = depth == len(names) - 1
        if entry is None or (not last and entry.type is not NodeType.DIR):
            raise NotFoundError(f"{path}: no such file or directory in snapshot {snapshot.short}")
        tree_id = bytes(entry.subtree)
    return entry


async def subtree(repo: Repository, snapshot: Snapshot, path: str) -> bytes:
    """The tree of directory ``path`` in the snapshot, or NotFoundError."""
    with contextlib.suppress(NotFoundError):
        entry = await find_entry(repo, snapshot, path)
        if entry is None:
            return bytes(snapshot.tree)
        if entry.type is NodeType.DIR:
            return bytes(entry.subtree)
    raise NotFoundError(f"{path}: no such directory in snapshot {snapshot.short}")


async def list_tree(
    repo: Repository, snapshot: Snapshot, below: str = "/"
) -> AsyncIterator[dict[str, Any]]:
    """Every entry of a snapshot under ``below``, depth first, as ``ls --json`` rows;
    NotFoundError if the snapshot has nothing at ``below``."""
    below = "/" + below.strip("/") if below.strip("/") else "/"

    async def walk(tree_id: bytes, prefix: str) -> AsyncIterator[dict[str, Any]]:
        for entry in (await repo.read_tree(tree_id)).entries:
            path = f"{prefix}/{os.fsdecode(entry.name)}"
            inside = below in ("/", path) or path.startswith(below + "/")
            if inside:
                yield _row(path, entry)
            if entry.type is NodeType.DIR and (inside or below.startswith(path + "/")):
                async for row in walk(entry.subtree, path):
                    yield row

    found = False
    async for row in walk(snapshot.tree, ""):
        found = True
        yield row
    if not found and below != "/":
        raise NotFoundError(
            f"{below}: no such file or directory in snapshot {snapshot.id.hex()[:8]}"
        )


def _row(path: str, entry: Entry) -> dict[str, Any]:
    kinds = {
        NodeType.FILE: "file",
        NodeType.DIR: "dir",
        NodeType.SYMLINK: "symlink",
        NodeType.FIFO: "fifo",
        NodeType.CHARDEV: "chardev",
        NodeType.BLOCKDEV: "blockdev",
    }
    return {
        "path": path,
        "type": kinds[entry.type],
        "mode": entry.mode,
        "permissions": stat.filemode(FILE_TYPE_BITS[entry.type] | entry.mode),
        "size": entry.size,
        "uid": entry.uid,
        "gid": entry.gid,
        "mtime_ns": entry.mtime_ns,
        "links": entry.links,
        "target": os.fsdecode(entry.target) if entry.target else "",
    }
