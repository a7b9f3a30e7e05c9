"""``peerbak dump``, ``find`` and ``diff``, as restic's commands of those names: a file
of a snapshot to standard output (a directory as a tar stream), the entries of every
snapshot that match a pattern, and what changed between two snapshots.

A file's chunks are read pack by pack in file order, so a pack serves all the
consecutive chunks it holds before the next is fetched: memory stays one pack and
its decrypted chunks, whatever the file's size.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import tarfile
from collections.abc import AsyncIterator, Callable
from typing import Any

from peerbak.core.errors import IntegrityError, NotFoundError
from peerbak.core.objects import Entry, NodeType, Snapshot
from peerbak.services.fetch import read_blobs
from peerbak.services.repository import Repository
from peerbak.services.restore import find_entry, subtree


async def file_chunks(repo: Repository, entry: Entry) -> AsyncIterator[bytes]:
    """The plaintext of a file, chunk by chunk, checked (AEAD and keyed id)."""
    ids = [bytes(c) for c in entry.chunks]
    wanted = set(ids)
    located = await repo.ledger.locate(ids)
    held: dict[bytes, bytes] = {}
    held_pack = b""
    for ident in ids:
        pack = located.get(ident)
        if pack is None:
            raise NotFoundError(f"chunk {ident.hex()[:12]} is in no stored pack")
        if pack != held_pack:
            held = await asyncio.to_thread(_blobs, repo, await repo.fetch(pack), wanted)
            held_pack = pack
        plain = held.get(ident)
        if plain is None:
            raise IntegrityError(
                f"pack {pack.hex()[:12]} lacks chunk {ident.hex()[:12]} the index places in it",
                obj="pack",
                check="index",
            )
        yield plain


def _blobs(repo: Repository, data: bytes, wanted: set[bytes]) -> dict[bytes, bytes]:
    return {bytes(e.ident): p for e, p in read_blobs(repo.keys, data) if bytes(e.ident) in wanted}


async def dump(
    repo: Repository, snapshot: Snapshot, path: str, write: Callable[[bytes], Any]
) -> int:
    """Write the file at ``path`` (or, for a directory, a tar stream of it) through
    ``write``; returns the bytes written."""
    entry = await find_entry(repo, snapshot, path)
    if entry is not None and entry.type is NodeType.FILE:
        written = 0
        async for plain in file_chunks(repo, entry):
            write(plain)
            written += len(plain)
        return written
    if entry is not None and entry.type is not NodeType.DIR:
        raise NotFoundError(f"{path}: not a file or a directory, nothing to dump")
    root = bytes(snapshot.tree) if entry is None else bytes(entry.subtree)
    return await _tar(repo, root, os.path.basename(path.rstrip("/")) or ".", write)


class _Sink:
    """What tarfile writes into: ``write`` calls, counted."""

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self._write = write
        self.count = 0

    def write(self, data: bytes) -> int:
        self._write(data)
        self.count += len(data)
        return len(data)


async def _tar(repo: Repository, tree_id: bytes, top: str, write: Callable[[bytes], Any]) -> int:
    """A PAX tar stream of a tree, each file's data streamed chunk by chunk."""
    sink = _Sink(write)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        top_info = tarfile.TarInfo(top)
        top_info.type, top_info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(top_info)
        await _tar_tree(repo, tar, tree_id, top)
    return sink.count


async def _tar_tree(repo: Repository, tar: tarfile.TarFile, tree: bytes, prefix: str) -> None:
    for entry in (await repo.read_tree(tree)).entries:
        name = f"{prefix}/{os.fsdecode(entry.name)}"
        info = tarfile.TarInfo(name)
        info.mode, info.mtime = entry.mode, entry.mtime_ns / 1e9
        info.uid, info.gid = entry.uid, entry.gid
        if entry.type is NodeType.DIR:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            await _tar_tree(repo, tar, bytes(entry.subtree), name)
        elif entry.type is NodeType.FILE:
            info.size = entry.size
            tar.addfile(info)  # the header; the data follows, streamed
            stream = tar.fileobj  # through tarfile's own buffer, after the header
            assert stream is not None
            got = 0
            async for plain in file_chunks(repo, entry):
                stream.write(plain)
                got += len(plain)
            if got != entry.size:  # the header said otherwise: the stream would be wrong
                raise IntegrityError(
                    f"{name}: its chunks hold {got} bytes, the snapshot says {entry.size}",
                    obj="file",
                    check="size",
                )
            pad = -entry.size % tarfile.BLOCKSIZE
            stream.write(b"\0" * pad)
            tar.offset += entry.size + pad
        elif entry.type is NodeType.SYMLINK:
            info.type, info.linkname = tarfile.SYMTYPE, os.fsdecode(entry.target)
            tar.addfile(info)
        elif entry.type is NodeType.FIFO:
            info.type = tarfile.FIFOTYPE
            tar.addfile(info)
        else:  # devices
            info.type = tarfile.CHRTYPE if entry.type is NodeType.CHARDEV else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(entry.rdev), os.minor(entry.rdev)
            tar.addfile(info)


async def find(
    repo: Repository, snapshots: list[Snapshot], patterns: list[str]
) -> AsyncIterator[dict[str, Any]]:
    """Every entry of ``snapshots`` whose name (or, for a pattern with a ``/``, whose
    whole path) matches one of ``patterns`` (shell wildcards, as restic's ``find``)."""
    for snapshot in snapshots:
        stack: list[tuple[bytes, str]] = [(bytes(snapshot.tree), "")]
        while stack:
            tree_id, prefix = stack.pop()
            for entry in (await repo.read_tree(tree_id)).entries:
                path = f"{prefix}/{os.fsdecode(entry.name)}"
                name = os.fsdecode(entry.name)
                if any(fnmatch.fnmatchcase(path if "/" in p else name, p) for p in patterns):
                    yield {
                        "snapshot": snapshot.id.hex(),
                        "path": path,
                        "type": entry.type.name.lower(),
                        "size": entry.size,
                        "mtime_ns": entry.mtime_ns,
                    }
                if entry.type is NodeType.DIR:
                    stack.append((bytes(entry.subtree), path))


async def diff(
    repo: Repository, old: Snapshot, new: Snapshot, old_dir: str = "", new_dir: str = ""
) -> AsyncIterator[dict[str, Any]]:
    """What changed from ``old`` to ``new`` (or from directory ``old_dir`` of one to
    ``new_dir`` of the other, paths then relative to them), as restic's ``diff``: ``+``
    added, ``-`` removed, ``M`` modified contents, ``U`` metadata only (mode, owner,
    time), ``T`` a changed type; depth first, in name order. Trees the two share are not
    walked."""
    a_root, b_root = await subtree(repo, old, old_dir), await subtree(repo, new, new_dir)
    stack: list[tuple[bytes, bytes, str]] = [(a_root, b_root, "")]
    while stack:
        a_id, b_id, prefix = stack.pop()
        if a_id == b_id:
            continue
        a = {e.name: e for e in await _entries(repo, a_id)}
        b = {e.name: e for e in await _entries(repo, b_id)}
        later: list[tuple[bytes, bytes, str]] = []
        for name in sorted(a.keys() | b.keys()):
            path = f"{prefix}/{os.fsdecode(name)}"
            x, y = a.get(name), b.get(name)
            if x is None or y is None:
                gone = y is None
                entry = x if gone else y
                assert entry is not None
                async for row in _all(repo, entry, path, "-" if gone else "+"):
                    yield row
                continue
            if x.type is not y.type:
                yield _row("T", path, y, y.size - x.size)
            elif x.type is NodeType.DIR:
                if (x.mode, x.uid, x.gid) != (y.mode, y.uid, y.gid):
                    yield _row("U", path, y, 0)
                later.append((bytes(x.subtree), bytes(y.subtree), path))
            elif (x.content, x.target, x.rdev) != (y.content, y.target, y.rdev):
                yield _row("M", path, y, y.size - x.size)
            elif (x.mode, x.uid, x.gid, x.mtime_ns) != (y.mode, y.uid, y.gid, y.mtime_ns):
                yield _row("U", path, y, 0)
        stack += reversed(later)


async def _entries(repo: Repository, tree_id: bytes) -> list[Entry]:
    return (await repo.read_tree(tree_id)).entries


async def _all(
    repo: Repository, entry: Entry, path: str, mark: str
) -> AsyncIterator[dict[str, Any]]:
    """An added or removed entry, and everything below it."""
    size = entry.size if mark == "+" else -entry.size
    yield _row(mark, path, entry, size)
    if entry.type is NodeType.DIR:
        for child in await _entries(repo, bytes(entry.subtree)):
            async for row in _all(repo, child, f"{path}/{os.fsdecode(child.name)}", mark):
                yield row


def _row(mark: str, path: str, entry: Entry, delta: int) -> dict[str, Any]:
    return {"change": mark, "path": path, "type": entry.type.name.lower(), "size_change": delta}
