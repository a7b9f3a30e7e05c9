"""The snapshots as ``peerbak mount`` shows them, against the in-process pool: no FUSE,
only the tree of paths and reads at any offset."""

from __future__ import annotations

import asyncio
import os
import random
import re
import stat
from pathlib import Path

import pytest

from peerbak.core.objects import Entry, NodeType, Snapshot
from peerbak.core.selection import Selection
from peerbak.services.backup import run_backup
from peerbak.services.browse import Browser, ChunkCache, snapshot_name
from peerbak.services.repository import Repository
from peerbak.tools.mempool import MemoryPool
from tests.services.kit import write

CODE = (2, 4)
PACK = 1 << 20  # a few chunks a pack: a big file spans several


def _tree(src: Path) -> dict[str, bytes]:
    """Files of several sizes (one of 6 MiB, many chunks), a symlink, a subdirectory,
    an empty file, a name that is not UTF-8."""
    made = {
        "big.bin": write(src / "big.bin", 6 << 20, seed=1).read_bytes(),
        "small.txt": write(src / "small.txt", 5000, seed=2).read_bytes(),
        "sub/inner.bin": write(src / "sub" / "inner.bin", 300_000, seed=3).read_bytes(),
    }
    (src / "empty").write_bytes(b"")
    made["empty"] = b""
    os.symlink("sub/inner.bin", src / "link")
    (src / "small.txt").chmod(0o640)
    os.utime(src / "small.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    with open(os.path.join(os.fsencode(src), b"caf\xe9"), "wb") as f:
        f.write(b"latin-1")
    return made


def _inside(src: Path) -> bytes:
    """``src`` as a path inside a snapshot's directory."""
    return os.fsencode(src)


async def test_the_snapshots_are_listed_by_time_id_host_and_tag(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    _tree(src)
    await run_backup(repo, [src], code=CODE, pack_size=PACK, tags=["daily"])
    first = await repo.find_snapshot("latest")
    await run_backup(repo, [src], code=CODE, pack_size=PACK)  # the same second: "-1"
    mempool.clock.advance(3600)
    await run_backup(repo, [src], code=CODE, pack_size=PACK, tags=["daily", "x"])
    snaps = sorted(await repo.snapshots(), key=lambda s: s.time)
    newest = snaps[-1]
    view = Browser(repo, uid=1234, gid=99)

    assert [n for n, _ in await view.listdir(b"/")] == [b"snapshots", b"ids", b"hosts", b"tags"]
    name0 = snapshot_name(first).encode()
    names = [n for n, _ in await view.listdir(b"/snapshots")]
    assert names == [name0, name0 + b"-1", snapshot_name(newest).encode(), b"latest"]
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", name0)
    latest = await view.stat(b"/snapshots/latest")
    assert stat.S_ISLNK(latest.mode)
    assert latest.target == snapshot_name(newest).encode()
    top = await view.stat(b"/snapshots")
    assert stat.S_ISDIR(top.mode)
    assert (top.uid, top.gid) == (1234, 99)
    assert top.mtime_ns == int(newest.time * 1e9)

    ids = [n for n, _ in await view.listdir(b"/ids")]
    assert sorted(ids) == sorted(s.short.encode() for s in snaps)
    assert [n for n, _ in await view.listdir(b"/hosts")] == [b"owner-host"]
    assert len(await view.listdir(b"/hosts/owner-host")) == 4  # three and latest
    assert [n for n, _ in await view.listdir(b"/tags")] == [b"daily", b"x"]
    daily = [n for n, _ in await view.listdir(b"/tags/daily")]
    assert daily == [name0, snapshot_name(newest).encode(), b"latest"]
    assert (await view.stat(b"/tags/x/latest")).target == snapshot_name(newest).encode()

    for root in (
        b"/snapshots/" + name0,
        b"/ids/" + first.short.encode(),
        b"/hosts/owner-host/" + name0,
        b"/tags/daily/" + name0,
    ):
        entries = dict(await view.listdir(root + _inside(src)))
        assert sorted(entries) == [b"big.bin", b"caf\xe9", b"empty", b"link", b"small.txt", b"sub"]

    with pytest.raises(FileNotFoundError):
        await view.stat(b"/snapshots/1999-01-01T00:00:00+00:00")
    with pytest.raises(FileNotFoundError):
        await view.stat(b"/nothing")
    with pytest.raises(NotADirectoryError):
        await view.listdir(b"/snapshots/latest")

    # The filters: only the snapshots tagged x.
    only = Browser(repo, Selection(tags=(frozenset({"x"}),)))
    assert [n for n, _ in await only.listdir(b"/ids")] == [newest.short.encode()]
    assert [n for n, _ in await only.listdir(b"/tags")] == [b"daily", b"x"]


async def test_entries_have_the_attributes_the_snapshot_recorded(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    _tree(src)
    await run_backup(repo, [src], code=CODE, pack_size=PACK)
    view = Browser(repo)
    snap = await repo.find_snapshot("latest")
    base = b"/ids/" + snap.short.encode() + _inside(src)
    for rel in ("big.bin", "small.txt", "sub", "sub/inner.bin", "link", "empty"):
        real = os.lstat(src / rel)
        seen = await view.stat(base + b"/" + rel.encode())
        assert seen.mode == real.st_mode, rel
        assert seen.mtime_ns == real.st_mtime_ns, rel
        assert (seen.uid, seen.gid) == (real.st_uid, real.st_gid), rel
        if not stat.S_ISDIR(real.st_mode):
            assert seen.size == real.st_size, rel
    assert (await view.stat(base + b"/link")).target == b"sub/inner.bin"
    listed = dict(await view.listdir(base))
    assert listed[b"small.txt"] == await view.stat(base + b"/small.txt")
    with pytest.raises(NotADirectoryError):
        await view.stat(base + b"/small.txt/x")
    with pytest.raises(IsADirectoryError):
        await view.read(base + b"/sub", 0, 10)
    assert await view.read(base + b"/caf\xe9", 0, 100) == b"latin-1"


async def test_reads_at_any_offset_give_the_source_bytes(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    made = _tree(src)
    await run_backup(repo, [src], code=CODE, pack_size=PACK)
    snap = await repo.find_snapshot("latest")
    base = b"/ids/" + snap.short.encode() + _inside(src) + b"/"
    view = Browser(repo, cache_bytes=3 << 20)
    rnd = random.Random(5)
    for rel, body in made.items():
        path = base + rel.encode()
        assert await view.read(path, 0, len(body) + 10) == body
        assert await view.read(path, len(body), 10) == b""
        assert await view.read(path, len(body) + 5, 10) == b""
        for _ in range(40):
            offset = rnd.randrange(len(body) + 1)
            size = rnd.choice([1, 7, 4096, 131072, rnd.randrange(1, 3 << 20)])
            got = await view.read(path, offset, size)
            assert got == body[offset : offset + size], (rel, offset, size)
        assert view.cache.held <= 3 << 20


async def test_a_sequential_read_fetches_each_pack_once_and_the_cache_stays_bounded(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    body = write(src / "big.bin", 12 << 20, seed=9).read_bytes()
    await run_backup(repo, [src], code=CODE, pack_size=PACK)
    snap = await repo.find_snapshot("latest")
    path = b"/ids/" + snap.short.encode() + _inside(src) + b"/big.bin"
    entry = next(e for e in (await _entries(repo, snap)) if e.name == b"big.bin")
    packs = set((await repo.ledger.locate([bytes(c) for c in entry.chunks])).values())
    assert len(packs) >= 4  # the test means something only if the file spans packs

    limit = 4 << 20
    view = Browser(repo, cache_bytes=limit)
    got = bytearray()
    step = 128 << 10  # the kernel's read size
    for offset in range(0, len(body), step):
        got += await view.read(path, offset, step)
        assert view.cache.held <= limit
    assert got == body
    assert view.packs_fetched == len(packs)
    # The cache holds a few chunks, not the file.
    assert len(view.cache) < len(entry.chunks)


async def _entries(repo: Repository, snap: Snapshot) -> list[Entry]:
    """Every entry of a snapshot's tree, depth first."""
    out: list[Entry] = []
    stack = [bytes(snap.tree)]
    while stack:
        for e in (await repo.read_tree(stack.pop())).entries:
            out.append(e)
            if e.type is NodeType.DIR:
                stack.append(bytes(e.subtree))
    return out


async def test_concurrent_reads_of_one_pack_fetch_it_once(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    body = write(src / "f.bin", 600_000, seed=4).read_bytes()
    await run_backup(repo, [src], code=CODE, pack_size=16 << 20)
    snap = await repo.find_snapshot("latest")
    path = b"/ids/" + snap.short.encode() + _inside(src) + b"/f.bin"
    view = Browser(repo)
    parts = await asyncio.gather(*(view.read(path, o, 100_000) for o in range(0, 600_000, 100_000)))
    assert b"".join(parts) == body
    assert view.packs_fetched == 1


def test_the_chunk_cache_drops_the_least_recently_used() -> None:
    cache = ChunkCache(10)
    cache.put(b"a", b"1234")
    cache.put(b"b", b"1234")
    assert cache.get(b"a") == b"1234"  # a is now the most recent
    cache.put(b"c", b"1234")
    assert cache.get(b"b") is None
    assert cache.get(b"a") == cache.get(b"c") == b"1234"
    assert cache.held == 8
    cache.put(b"huge", b"x" * 11)  # larger than the whole cache: not kept
    assert cache.get(b"huge") is None
    assert cache.held == 8
