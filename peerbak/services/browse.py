"""The snapshots as a read-only tree of directories, as restic's ``mount`` shows them:
what ``peerbak mount`` serves (:mod:`peerbak.adapters.fuse` speaks FUSE; this speaks
snapshots, trees and packs).

::

    /snapshots/2026-12-05T10:11:12+01:00/…   each snapshot by its time (local), and latest
    /ids/1a2b3c4d/…                          by short id
    /hosts/HOST/2026-12-05T10:11:12+01:00/…  by host, each with its own latest
    /tags/TAG/2026-12-05T10:11:12+01:00/…    by tag, likewise

A file is read at any offset without holding it: its chunks' lengths (from the ledger)
map an offset to a chunk, and a chunk missing from a small LRU of decrypted chunks
fetches its pack, which then serves the file's next chunks too. A sequential read costs
each pack once and memory stays the size of the cache, whatever the file's size.
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import math
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from peerbak.core import crypto
from peerbak.core.errors import IntegrityError, NotFoundError
from peerbak.core.objects import FILE_TYPE_BITS, Entry, NodeType, Snapshot
from peerbak.core.selection import EVERY, Selection
from peerbak.ports.browse import Stat
from peerbak.services.fetch import read_blobs
from peerbak.services.repository import Repository

#: Decrypted chunks kept for reads to come (bytes): two packs' worth of one file.
CACHE_BYTES: Final = 64 << 20
#: Directories (decoded trees) kept, so a path's lookup does not decode its parents again.
TREES: Final = 256
#: File layouts (their chunks' packs and offsets) kept.
LAYOUTS: Final = 64
#: Seconds a listing of the snapshots is trusted before the ledger is asked again (a
#: backup made while mounted shows up).
RELOAD: Final = 10.0
LATEST: Final = b"latest"


def snapshot_name(snapshot: Snapshot) -> str:
    """A snapshot's directory name: its time, local, to the second, with the offset."""
    return datetime.fromtimestamp(snapshot.time).astimezone().isoformat(timespec="seconds")


def _named(snaps: list[Snapshot]) -> dict[bytes, Snapshot | _Link]:
    """Snapshots by time name (``-1``, ``-2`` … after a name already taken, as restic),
    oldest first, and ``latest`` naming the newest."""
    out: dict[bytes, Snapshot | _Link] = {}
    for snap in sorted(snaps, key=lambda s: (s.time, s.id)):
        base = snapshot_name(snap).encode()
        name, n = base, 0
        while name in out:
            n += 1
            name = base + b"-%d" % n
        out[name] = snap
    if out:
        out[LATEST] = _Link(list(out)[-1])
    return out


def _component(text: str) -> bytes | None:
    """A host or tag as a directory name, or None if it cannot be one."""
    name = text.encode()
    ok = name not in (b"", b".", b"..") and b"/" not in name and b"\0" not in name
    return name if ok else None


@dataclass(frozen=True, slots=True)
class _Link:
    target: bytes


#: A directory made up of snapshots: names → what is there.
_Virtual = dict[bytes, "_Virtual | Snapshot | _Link"]


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where a file's bytes are: chunk i is ``ids[i]``, in pack ``packs[i]``, and
    spans bytes ``starts[i]`` to ``starts[i + 1]`` of the file."""

    ids: list[bytes]
    packs: list[bytes]
    starts: list[int]


class ChunkCache:
    """Decrypted chunks, least recently used out first, at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._chunks: OrderedDict[bytes, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._chunks)

    def get(self, ident: bytes) -> bytes | None:
        plain = self._chunks.get(ident)
        if plain is not None:
            self._chunks.move_to_end(ident)
        return plain

    def put(self, ident: bytes, plain: bytes) -> None:
        if len(plain) > self.limit or ident in self._chunks:
            return
        self._chunks[ident] = plain
        self.held += len(plain)
        while self.held > self.limit:
            _, old = self._chunks.popitem(last=False)
            self.held -= len(old)


class Browser:
    """The snapshots ``only`` selects, as a read-only tree (:class:`~peerbak.ports.browse.
    Browsable`). The directories it makes up belong to ``uid``/``gid``."""

    def __init__(
        self,
        repo: Repository,
        only: Selection = EVERY,
        *,
        uid: int = 0,
        gid: int = 0,
        cache_bytes: int = CACHE_BYTES,
        reload: float = RELOAD,
    ) -> None:
        self.repo = repo
        self.only = only
        self.uid, self.gid = uid, gid
        self.cache = ChunkCache(cache_bytes)
        self.packs_fetched = 0
        self._reload = reload
        self._loaded_at = -math.inf
        self._root: _Virtual = {}
        self._newest = 0.0
        self._count = 0
        self._trees: OrderedDict[bytes, dict[bytes, Entry]] = OrderedDict()
        self._layouts: OrderedDict[bytes, _Layout] = OrderedDict()
        self._loading: dict[bytes, asyncio.Future[None]] = {}

    # -- the snapshots ---------------------------------------------------------------------

    async def refresh(self, *, force: bool = False) -> int:
        """Read the list of snapshots again (if older than ``reload`` seconds, or
        ``force``); returns how many are shown."""
        now = self.repo.clock()
        if not force and now - self._loaded_at < self._reload:
            return self._count
        snaps = [s for s in await self.repo.snapshots() if s in self.only]
        hosts: dict[bytes, list[Snapshot]] = {}
        tags: dict[bytes, list[Snapshot]] = {}
        for snap in snaps:
            if (host := _component(snap.hostname)) is not None:
                hosts.setdefault(host, []).append(snap)
            for tag in snap.tags:
                if (name := _component(tag)) is not None:
                    tags.setdefault(name, []).append(snap)
        shorts = [s.short for s in snaps]
        ids: _Virtual = {
            (s.short if shorts.count(s.short) == 1 else s.id.hex()).encode(): s for s in snaps
        }
        self._root = {
            b"snapshots": dict(_named(snaps)),
            b"ids": ids,
            b"hosts": {h: dict(_named(group)) for h, group in sorted(hosts.items())},
            b"tags": {t: dict(_named(group)) for t, group in sorted(tags.items())},
        }
        self._newest = max((s.time for s in snaps), default=0.0)
        self._loaded_at = now
        self._count = len(snaps)
        return self._count

    def _made_up(self, when: float) -> Stat:
        return Stat(
            stat.S_IFDIR | 0o555, mtime_ns=int(when * 1e9), uid=self.uid, gid=self.gid, nlink=2
        )

    @staticmethod
    def _of(entry: Entry) -> Stat:
        size = len(entry.target) if entry.type is NodeType.SYMLINK else entry.size
        return Stat(
            FILE_TYPE_BITS[entry.type] | entry.mode,
            size=0 if entry.type is NodeType.DIR else size,
            mtime_ns=entry.mtime_ns,
            uid=entry.uid,
            gid=entry.gid,
            nlink=2 if entry.type is NodeType.DIR else 1,
            rdev=entry.rdev,
            target=entry.target,
        )

    def _stat_of(self, thing: _Virtual | Snapshot | _Link | Entry) -> Stat:
        if isinstance(thing, Entry):
            return self._of(thing)
        if isinstance(thing, Snapshot):
            return self._made_up(thing.time)
        if isinstance(thing, _Link):
            return Stat(
                stat.S_IFLNK | 0o777,
                size=len(thing.target),
                mtime_ns=int(self._newest * 1e9),
                uid=self.uid,
                gid=self.gid,
                target=thing.target,
            )
        return self._made_up(self._newest)

    # -- paths -----------------------------------------------------------------------------

    async def _tree(self, tree_id: bytes) -> dict[bytes, Entry]:
        entries = self._trees.get(tree_id)
        if entries is None:
            entries = {e.name: e for e in (await self.repo.read_tree(tree_id)).entries}
            self._trees[tree_id] = entries
            if len(self._trees) > TREES:
                self._trees.popitem(last=False)
        else:
            self._trees.move_to_end(tree_id)
        return entries

    async def _find(self, path: bytes) -> _Virtual | Snapshot | _Link | Entry:
        await self.refresh()
        here: _Virtual | Snapshot | _Link | Entry = self._root
        for name in (p for p in path.split(b"/") if p):
            found: _Virtual | Snapshot | _Link | Entry | None
            if isinstance(here, dict):
                found = here.get(name)
            elif isinstance(here, Snapshot):
                found = (await self._tree(bytes(here.tree))).get(name)
            elif isinstance(here, Entry) and here.type is NodeType.DIR:
                found = (await self._tree(bytes(here.subtree))).get(name)
            else:
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            if found is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            here = found
        return here

    async def stat(self, path: bytes) -> Stat:
        return self._stat_of(await self._find(path))

    async def listdir(self, path: bytes) -> list[tuple[bytes, Stat]]:
        here = await self._find(path)
        if isinstance(here, dict):
            return [(name, self._stat_of(thing)) for name, thing in here.items()]
        if isinstance(here, Snapshot):
            tree = bytes(here.tree)
        elif isinstance(here, Entry) and here.type is NodeType.DIR:
            tree = bytes(here.subtree)
        else:
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        return [(name, self._of(entry)) for name, entry in (await self._tree(tree)).items()]

    async def read(self, path: bytes, offset: int, size: int) -> bytes:
        here = await self._find(path)
        if not isinstance(here, Entry) or here.type is NodeType.DIR:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if here.type is not NodeType.FILE:
            raise OSError(errno.EINVAL, "not a regular file", path)
        return await self.read_entry(here, offset, size)

    # -- file contents ---------------------------------------------------------------------

    async def _layout(self, entry: Entry) -> _Layout:
        key = entry.content
        layout = self._layouts.get(key)
        if layout is not None:
            self._layouts.move_to_end(key)
            return layout
        ids = [bytes(c) for c in entry.chunks]
        located = await self.repo.ledger.locate_sized(ids)
        packs, starts, offset = [], [], 0
        for ident in ids:
            found = located.get(ident)
            if found is None:
                raise NotFoundError(f"chunk {ident.hex()[:12]} is in no stored pack")
            packs.append(found[0])
            starts.append(offset)
            offset += found[1]
        starts.append(offset)
        if offset != entry.size:
            raise IntegrityError(
                f"{os.fsdecode(entry.name)}: its chunks add up to {offset} bytes, the snapshot "
                f"says {entry.size}",
                obj="file",
                ident=os.fsdecode(entry.name),
                check="size",
            )
        layout = _Layout(ids, packs, starts)
        self._layouts[key] = layout
        if len(self._layouts) > LAYOUTS:
            self._layouts.popitem(last=False)
        return layout

    async def read_entry(self, entry: Entry, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of the file ``entry`` from ``offset``."""
        end = min(entry.size, offset + size)
        if offset < 0 or offset >= end:
            return b""
        layout = await self._layout(entry)
        i = bisect.bisect_right(layout.starts, offset) - 1
        out = bytearray()
        pos = offset
        while pos < end:
            plain = await self._chunk(layout, i)
            start = layout.starts[i]
            out += memoryview(plain)[pos - start : end - start]
            pos = start + len(plain)
            i += 1
        return bytes(out)

    async def _chunk(self, layout: _Layout, i: int) -> bytes:
        """Chunk ``i`` of a file, from the cache or its pack (one fetch of a pack at a
        time: a reader wanting a pack already on its way waits for it)."""
        ident = layout.ids[i]
        while (plain := self.cache.get(ident)) is None:
            loading = self._loading.get(layout.packs[i])
            if loading is None:
                return await self._load(layout, i)
            await asyncio.shield(loading)  # then look again: it may have been another file's
        return plain

    async def _load(self, layout: _Layout, i: int) -> bytes:
        """Fetch chunk ``i``'s pack; keep the file's chunks it holds from ``i`` on (as many
        as half the cache holds), which a sequential read wants next."""
        pack = layout.packs[i]
        done = asyncio.get_running_loop().create_future()
        self._loading[pack] = done
        try:
            data = await self.repo.fetch(pack)
            self.packs_fetched += 1
            wanted: list[bytes] = []
            room = self.cache.limit // 2
            for j in range(i, len(layout.ids)):
                if layout.packs[j] == pack and layout.ids[j] not in wanted:
                    wanted.append(layout.ids[j])
                    room -= layout.starts[j + 1] - layout.starts[j]
                    if room <= 0:
                        break
            plains = await asyncio.to_thread(_decrypt, self.repo.keys, data, set(wanted))
            for ident in wanted:
                if ident in plains:
                    self.cache.put(ident, plains[ident])
            plain = plains.get(layout.ids[i])
            if plain is None:
                raise IntegrityError(
                    f"pack {pack.hex()[:12]} lacks chunk {layout.ids[i].hex()[:12]} the index "
                    "places in it",
                    obj="pack",
                    check="index",
                )
            return plain
        finally:
            del self._loading[pack]
            if not done.done():
                done.set_result(None)


def _decrypt(keys: crypto.NodeKeys, data: bytes, wanted: set[bytes]) -> dict[bytes, bytes]:
    return {bytes(e.ident): p for e, p in read_blobs(keys, data) if bytes(e.ident) in wanted}
