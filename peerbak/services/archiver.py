"""Files and directories into trees: the walk of ``peerbak backup``.

Runs in one worker thread (it blocks on the file system) and feeds two packers: file
contents to the data packer, trees to the metadata packer, so that listing and
planning a restore later fetch only the few metadata packs.

A directory is read sorted by name, its entries described (type, mode, owner, times,
links) and each file either taken from the files cache, when its device, inode, size,
mtime and ctime are unchanged and every one of its chunks is known to be stored, or
read and chunked. A directory's tree is written after its children, so only the
path from the root to the current directory is in memory, never the whole tree.
A file that cannot be read is a warning and is left out; the backup goes on.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pathspec

from peerbak.core import objects
from peerbak.core.chunker import Readable
from peerbak.core.crypto import BlobType
from peerbak.core.errors import InputError
from peerbak.core.ids import ChunkId
from peerbak.core.objects import FILE_TYPE_BITS, Entry, NodeType, Tree
from peerbak.ports import CachedFile, FilesCache
from peerbak.services.packer import Packer


class NoCache:
    def lookup(self, parent: bytes) -> dict[bytes, CachedFile]:
        return {}

    def store(self, parent: bytes, files: dict[bytes, CachedFile]) -> None:
        return None


@dataclass
class Progress:
    """Counters the progress line and the summary read (written by the walker thread)."""

    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs: int = 0
    bytes_read: int = 0
    total_files: int = 0
    total_bytes: int = 0
    errors: int = 0
    current: str = ""
    warnings: list[str] = field(default_factory=list)


#: ``--exclude-caches``: a directory holding this file with this first line is a cache
#: (https://bford.info/cachedir/), as restic and borg honour it.
CACHEDIR_TAG: Final = ("CACHEDIR.TAG", b"Signature: 8a477f597d28d172789f06886806bc55")


class Excludes:
    """What a backup leaves out, as restic's options say.

    Gitignore-style patterns (``--exclude``, ``--exclude-file``; ``--iexclude`` ignoring
    case) are matched against the path below the backed-up directory's parent (so
    ``Photos/tmp/`` and ``*.tmp`` work as in a ``.gitignore`` there); a pattern that
    starts with ``/`` is matched against the absolute path (``/home/me/.cache``), as
    restic does. Directories above a backed-up path never count: ``build/`` does not
    exclude all of ``/home/build/proj``. A directory holding one of ``if_present``
    (``NAME`` or ``NAME:first line``; ``--exclude-if-present``, ``--exclude-caches``)
    is left out, and so is a file larger than ``larger_than`` bytes (0: no limit).
    """

    def __init__(
        self,
        patterns: list[str],
        *,
        ipatterns: list[str] | None = None,
        if_present: list[tuple[str, bytes]] | None = None,
        larger_than: int = 0,
    ) -> None:
        def specs(lines: list[str]) -> tuple[pathspec.GitIgnoreSpec, pathspec.GitIgnoreSpec]:
            absolute = [p for p in lines if p.lstrip("!").startswith("/")]
            relative = [p for p in lines if not p.lstrip("!").startswith("/")]
            try:
                return (
                    pathspec.GitIgnoreSpec.from_lines(relative),
                    pathspec.GitIgnoreSpec.from_lines(absolute),
                )
            except (ValueError, TypeError) as exc:
                raise InputError(f"bad exclude pattern: {exc}") from None

        lines = _lines(patterns)
        ilines = [p.lower() for p in _lines(ipatterns or [])]
        self._rel, self._abs = specs(lines)
        self._irel, self._iabs = specs(ilines)
        self._if_present = list(if_present or [])
        self._larger_than = larger_than
        self.empty = not (lines or ilines or self._if_present or larger_than)

    def excluded(self, path: Path, root: Path, info: os.stat_result) -> bool:
        is_dir = stat.S_ISDIR(info.st_mode)
        slash = "/" if is_dir else ""
        rel = os.fsdecode(path.relative_to(root.parent)) + slash
        absolute = os.fsdecode(path).lstrip("/") + slash
        if self._rel.match_file(rel) or self._abs.match_file(absolute):
            return True
        if self._irel.match_file(rel.lower()) or self._iabs.match_file(absolute.lower()):
            return True
        if is_dir:
            return any(_holds(path, name, head) for name, head in self._if_present)
        return 0 < self._larger_than < info.st_size and stat.S_ISREG(info.st_mode)


def _lines(patterns: list[str]) -> list[str]:
    return [p.strip() for p in patterns if p.strip() and not p.lstrip().startswith("#")]


def _holds(directory: Path, name: str, head: bytes) -> bool:
    """``directory`` has a file ``name`` (beginning with ``head``, if given)."""
    try:
        with open(directory / name, "rb") as f:
            return not head or f.read(len(head)) == head
    except OSError:
        return False


def parse_if_present(spec: str) -> tuple[str, bytes]:
    """``--exclude-if-present NAME[:HEADER]`` as restic takes it."""
    name, _, head = spec.partition(":")
    if not name or "/" in name:
        raise InputError(f"--exclude-if-present wants a file name, not {spec!r}")
    return name, head.encode()


def exclude_spec(
    patterns: list[str],
    *,
    ipatterns: list[str] | None = None,
    if_present: list[tuple[str, bytes]] | None = None,
    larger_than: int = 0,
) -> Excludes | None:
    spec = Excludes(patterns, ipatterns=ipatterns, if_present=if_present, larger_than=larger_than)
    return None if spec.empty else spec


_TYPES = {bits: kind for kind, bits in FILE_TYPE_BITS.items()}


class Archiver:
    """Walks paths into a root tree through ``data`` and ``meta`` packers."""

    def __init__(
        self,
        data: Packer,
        meta: Packer,
        *,
        cache: FilesCache | None = None,
        known: Callable[[ChunkId], bool] = lambda _: False,
        excludes: Excludes | None = None,
        one_file_system: bool = False,
        dry_run: bool = False,
        warn: Callable[[str], None] = lambda _: None,
        cancelled: threading.Event | None = None,
    ) -> None:
        self._data = data
        self._meta = meta
        self._cache: FilesCache = cache or NoCache()
        self._known = known
        self._excludes = excludes
        self._one_fs = one_file_system
        self._dry_run = dry_run
        self._warn = warn
        self._cancelled = cancelled or threading.Event()
        self.progress = Progress()

    # -- the root: the given paths under their absolute parents, as restic does -----------

    def archive(self, paths: list[Path]) -> ChunkId:
        """The root tree of a snapshot of ``paths`` (absolute paths kept whole)."""
        roots: dict[bytes, object] = {}
        for path in paths:
            parts = [os.fsencode(p) for p in path.parts[1:]]
            if not parts:
                raise InputError("backing up / itself: name the directories under it")
            node = roots
            for part in parts[:-1]:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    break  # a parent of this path is itself backed up whole
                node = child
            else:
                node[parts[-1]] = path
        return self._virtual(Path("/"), roots)

    def archive_stream(self, name: str, stream: Readable, mtime_ns: int) -> ChunkId:
        """The root tree of a snapshot of one file read from ``stream`` to its end
        (``backup --stdin``: a database dump piped in, never on disk)."""
        raw = os.fsencode(name)
        if not raw or b"/" in raw or raw in (b".", b".."):
            raise InputError(f"--stdin-filename wants a file name, not {name!r}")
        counted = _Counted(stream)
        ids = self._data.add_stream(counted, BlobType.DATA)
        p = self.progress
        p.total_files += 1
        p.files_new += 1
        p.bytes_read += counted.count
        p.total_bytes += counted.count
        entry = Entry(
            name=raw,
            type=NodeType.FILE,
            mode=0o644,
            uid=os.getuid(),
            gid=os.getgid(),
            mtime_ns=mtime_ns,
            size=counted.count,
            inode=0,
            device=0,
            links=1,
            content=b"".join(ids),
        )
        return self._tree([entry])

    def _virtual(self, here: Path, children: dict[bytes, object]) -> ChunkId:
        entries = []
        for name in sorted(children):
            child = children[name]
            path = here / os.fsdecode(name)
            try:
                info = os.lstat(path)
            except OSError as exc:
                raise InputError(f"cannot back up {path}: {exc.strerror}") from None
            if isinstance(child, dict):
                entries.append(self._entry(name, info, subtree=self._virtual(path, child)))
            else:
                root_dev = info.st_dev
                entry = self._describe(path, name, info, path, root_dev, {})
                if entry is not None:
                    entries.append(entry)
        return self._tree(entries)

    # -- a real directory ----------------------------------------------------------------

    def _directory(self, path: Path, root: Path, root_dev: int) -> ChunkId:
        if self._cancelled.is_set():
            raise InputError("backup cancelled")
        self.progress.dirs += 1
        key = os.fsencode(path)
        cached = self._cache.lookup(key)
        seen: dict[bytes, CachedFile] = {}
        entries = []
        try:
            with os.scandir(key) as it:
                names = sorted((e.name, e) for e in it)
        except OSError as exc:
            self._fail(path, exc)
            names = []
        for name, _ in names:
            child = path / os.fsdecode(name)
            try:
                info = os.lstat(child)
            except OSError as exc:
                self._fail(child, exc)
                continue
            if self._excluded(child, root, info):
                continue
            entry = self._describe(child, name, info, root, root_dev, cached, seen)
            if entry is not None:
                entries.append(entry)
        if not self._dry_run:
            self._cache.store(key, seen)
        return self._tree(entries)

    def _excluded(self, path: Path, root: Path, info: os.stat_result) -> bool:
        return self._excludes is not None and self._excludes.excluded(path, root, info)

    def _describe(  # noqa: PLR0911 - one return per kind of entry
        self,
        path: Path,
        name: bytes,
        info: os.stat_result,
        root: Path,
        root_dev: int,
        cached: dict[bytes, CachedFile],
        seen: dict[bytes, CachedFile] | None = None,
    ) -> Entry | None:
        kind = _TYPES.get(stat.S_IFMT(info.st_mode))
        if kind is None:
            return None  # sockets and the like: nothing to restore
        if kind is NodeType.DIR:
            if self._one_fs and info.st_dev != root_dev:
                return self._entry(name, info, subtree=self._tree([]))  # mount point only
            return self._entry(name, info, subtree=self._directory(path, root, root_dev))
        if kind is NodeType.SYMLINK:
            try:
                target = os.readlink(os.fsencode(path))
            except OSError as exc:
                self._fail(path, exc)
                return None
            return self._entry(name, info, target=target)
        if kind is not NodeType.FILE:
            return self._entry(name, info, rdev=info.st_rdev)
        read = self._file(path, name, info, cached, seen)
        if read is None:
            return None
        content, size = read
        return self._entry(name, info, content=content, size=size)

    def _file(
        self,
        path: Path,
        name: bytes,
        info: os.stat_result,
        cached: dict[bytes, CachedFile],
        seen: dict[bytes, CachedFile] | None,
    ) -> tuple[bytes, int] | None:
        """The file's chunk ids and the bytes they hold: what was read, which is not
        lstat's size when the file grew or shrank meanwhile (the snapshot must say what
        its chunks hold, or restore refuses the file)."""
        p = self.progress
        p.total_files += 1
        p.total_bytes += info.st_size
        p.current = str(path)
        old = cached.get(name)
        now = CachedFile(
            info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, b""
        )
        if (
            old is not None
            and (old.device, old.inode, old.size, old.mtime_ns, old.ctime_ns)
            == (now.device, now.inode, now.size, now.mtime_ns, now.ctime_ns)
            and all(self._known(c) for c in _ids(old.content))
        ):
            p.files_unmodified += 1
            if seen is not None:
                seen[name] = old
            return old.content, old.size
        try:
            with open(os.fsencode(path), "rb", buffering=0) as f:
                counted = _Counted(f)
                ids = self._data.add_stream(counted, BlobType.DATA, size_hint=info.st_size)
        except OSError as exc:
            self._fail(path, exc)
            return None
        size = counted.count
        p.bytes_read += size
        if old is None:
            p.files_new += 1
        else:
            p.files_changed += 1
        content = b"".join(ids)
        if seen is not None and size == now.size:  # else changed meanwhile: read it next time
            seen[name] = CachedFile(
                now.device, now.inode, now.size, now.mtime_ns, now.ctime_ns, content
            )
        return content, size

    def _fail(self, path: Path, exc: OSError) -> None:
        self.progress.errors += 1
        message = f"{path}: {exc.strerror or exc}"
        self.progress.warnings.append(message)
        self._warn(message)

    # -- entries and trees -------------------------------------------------------------------

    @staticmethod
    def _entry(
        name: bytes,
        info: os.stat_result,
        *,
        subtree: bytes = b"",
        content: bytes = b"",
        target: bytes = b"",
        rdev: int = 0,
        size: int | None = None,
    ) -> Entry:
        kind = _TYPES[stat.S_IFMT(info.st_mode)]
        return Entry(
            name=name,
            type=kind,
            mode=stat.S_IMODE(info.st_mode),
            uid=info.st_uid,
            gid=info.st_gid,
            mtime_ns=info.st_mtime_ns,
            size=(info.st_size if size is None else size) if kind is NodeType.FILE else 0,
            inode=info.st_ino,
            device=info.st_dev,
            links=info.st_nlink,
            content=content,
            subtree=bytes(subtree),
            target=target,
            rdev=rdev,
        )

    def _tree(self, entries: list[Entry]) -> ChunkId:
        data = objects.encode(Tree(entries=entries))
        return self._meta.add_chunk(data, BlobType.TREE)


class _Counted:
    """A file, counting the bytes read from it."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self.count = 0

    def readinto(self, buffer: memoryview, /) -> int | None:
        n = self._raw.readinto(buffer)
        self.count += n or 0
        return n


def _ids(content: bytes) -> Iterator[ChunkId]:
    for i in range(0, len(content), 32):
        yield ChunkId(content[i : i + 32])


@dataclass
class ScanTotals:
    """What a quick walk ahead of the backup found: the ETA's denominator."""

    files: int = 0
    bytes: int = 0
    finished: bool = False


def scan(
    paths: list[Path],
    totals: ScanTotals,
    *,
    excludes: Excludes | None = None,
    one_file_system: bool = False,
    cancelled: threading.Event | None = None,
) -> None:
    """Count files and bytes under ``paths`` (stat only, as restic's scanner does)."""
    stop = cancelled or threading.Event()
    for root in paths:
        try:
            root_dev = os.lstat(root).st_dev
        except OSError:
            continue
        stack = [root]
        while stack and not stop.is_set():
            here = stack.pop()
            try:
                with os.scandir(here) as it:
                    entries = list(it)
            except OSError:
                if here == root and os.path.isfile(root):
                    totals.files += 1
                    totals.bytes += os.lstat(root).st_size
                continue
            for e in entries:
                path = Path(e.path)
                try:
                    info = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                is_dir = stat.S_ISDIR(info.st_mode)
                if excludes is not None and excludes.excluded(path, root, info):
                    continue
                if is_dir:
                    if not (one_file_system and info.st_dev != root_dev):
                        stack.append(path)
                elif stat.S_ISREG(info.st_mode):
                    totals.files += 1
                    totals.bytes += info.st_size
    totals.finished = not stop.is_set()
