"""``dump`` and ``find`` against the in-process pool: a file's bytes across packs, a
directory as a tar stream that extracts to the same tree, patterns across snapshots."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from peerbak.core.errors import NotFoundError
from peerbak.services.backup import run_backup
from peerbak.services.dump import diff, dump, find
from peerbak.services.repository import Repository
from peerbak.tools.mempool import MemoryPool
from peerbak.tools.sample import describe
from tests.services.kit import write


async def test_a_file_spanning_packs_dumps_byte_for_byte(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    big = write(src / "big.bin", 3_000_000, seed=1)  # several 64 KiB packs' worth of chunks
    await run_backup(repo, [src], code=(2, 4), pack_size=64 << 10)
    snap = await repo.find_snapshot("latest")
    out = io.BytesIO()
    assert await dump(repo, snap, str(big), out.write) == big.stat().st_size
    assert out.getvalue() == big.read_bytes()
    with pytest.raises(NotFoundError):
        await dump(repo, snap, str(src / "nope"), out.write)


async def test_a_directory_dumps_as_a_tar_of_the_same_tree(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", 200_000, seed=2)
    write(src / "d" / "b.txt", 10, seed=3)
    (src / "empty").write_bytes(b"")
    (src / "link").symlink_to("a.bin")
    os.chmod(src / "d" / "b.txt", 0o640)
    await run_backup(repo, [src], code=(2, 4))
    snap = await repo.find_snapshot("latest")
    out = io.BytesIO()
    await dump(repo, snap, str(src), out.write)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:") as tar:
        tar.extractall(tmp_path / "x", filter="tar")

    def close(a: object, b: object) -> bool:
        """Equal, or both times (ns) within 2 µs: tar keeps times as decimal seconds."""
        if isinstance(a, int) and isinstance(b, int) and min(a, b) > 10**15:
            return abs(a - b) <= 2000
        return a == b

    got, want = describe(tmp_path / "x" / "src"), describe(src)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert len(got[key]) == len(value), key
        assert all(close(a, b) for a, b in zip(got[key], value, strict=True)), key


async def test_find_matches_names_and_paths_across_snapshots(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "notes.txt", 10, seed=1)
    first = await run_backup(repo, [src], code=(2, 4))
    mempool.clock.advance(60)
    write(src / "d" / "more.txt", 10, seed=2)
    write(src / "d" / "img.jpg", 10, seed=3)
    second = await run_backup(repo, [src], code=(2, 4))
    snaps = sorted(await repo.snapshots(), key=lambda s: s.time)
    rows = [r async for r in find(repo, snaps, ["*.txt"])]
    assert sorted((r["snapshot"], r["path"].rsplit("/", 1)[1]) for r in rows) == sorted(
        [
            (first["snapshot_id"], "notes.txt"),
            (second["snapshot_id"], "notes.txt"),
            (second["snapshot_id"], "more.txt"),
        ]
    )
    by_path = [r async for r in find(repo, snaps, [f"{src}/d/*"])]
    assert {r["path"] for r in by_path} == {f"{src}/d/more.txt", f"{src}/d/img.jpg"}
    assert [r async for r in find(repo, snaps, ["*.nothing"])] == []


async def test_diff_says_what_was_added_removed_modified_and_touched(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "same.bin", 1000, seed=1)
    write(src / "edit.bin", 1000, seed=2)
    write(src / "gone" / "x.bin", 500, seed=3)
    write(src / "touch.txt", 10, seed=4)
    first = await run_backup(repo, [src], code=(2, 4))
    mempool.clock.advance(60)
    write(src / "edit.bin", 1500, seed=5)
    (src / "gone" / "x.bin").unlink()
    (src / "gone").rmdir()
    write(src / "new" / "y.bin", 700, seed=6)
    os.chmod(src / "touch.txt", 0o600)
    second = await run_backup(repo, [src], code=(2, 4))
    old = await repo.find_snapshot(first["snapshot_id"])
    new = await repo.find_snapshot(second["snapshot_id"])
    rows = {r["path"].removeprefix(str(src)): r async for r in diff(repo, old, new)}
    assert {p: r["change"] for p, r in rows.items()} == {
        "/edit.bin": "M",
        "/gone": "-",
        "/gone/x.bin": "-",
        "/new": "+",
        "/new/y.bin": "+",
        "/touch.txt": "U",
    }
    assert rows["/edit.bin"]["size_change"] == 500
    assert rows["/gone/x.bin"]["size_change"] == -500
    assert [r async for r in diff(repo, new, new)] == []
    # a directory of each, as restic's SNAPSHOT:DIR: paths relative to it
    inner = {r["path"]: r["change"] async for r in diff(repo, old, new, str(src), str(src))}
    assert inner == {p: r["change"] for p, r in rows.items()}
    across = [(r["change"], r["path"]) async for r in diff(repo, new, new, f"{src}/new", str(src))]
    assert ("-", "/y.bin") in across
    assert ("+", "/edit.bin") in across
    with pytest.raises(NotFoundError):
        [r async for r in diff(repo, old, new, f"{src}/nope", str(src))]
