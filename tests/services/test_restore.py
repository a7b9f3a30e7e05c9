"""``restore`` against the in-process pool: members down up to n − k and beyond, a
damaged shard, include patterns, every kind of entry, and a target where someone
planted links and FIFOs."""

from __future__ import annotations

import itertools
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerbak.core.crypto import BlobType
from peerbak.core.errors import NotEnoughShares, NotFoundError
from peerbak.core.objects import NodeType
from peerbak.core.pack import PackRecord
from peerbak.core.selection import Selection
from peerbak.services import archiver
from peerbak.services.backup import run_backup
from peerbak.services.repository import Repository
from peerbak.services.restore import Restorer, list_tree, run_restore
from peerbak.tools.mempool import MemoryPool
from peerbak.tools.sample import describe, make_tree
from tests.services.kit import damage, node, read_beneath, restored, write

CODE = (2, 4)
PACK = 64 << 10

_write_pack = Restorer._write_pack
_finish_empty = Restorer._finish_empty


async def packs(repo: Repository) -> Iterator[tuple[PackRecord, dict[int, bytes]]]:
    out = []
    async for page in repo.ledger.stored_pack_ids():
        for pack in page:
            found = await repo.ledger.pack(pack)
            assert found is not None
            out.append(found)
    return iter(out)


def holds(record: PackRecord, kind: BlobType) -> bool:
    return any(e.blob_type is kind for e in record.entries)


async def test_with_n_minus_k_members_down_every_kind_of_entry_comes_back(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    counts = make_tree(src, 400_000, files=40, seed=3)
    assert counts["hardlinks"]
    assert counts["symlinks"]
    assert counts["empty"]
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "private").mkdir(mode=0o700)
    (src / "private" / "key").write_bytes(b"k" * 33)
    (src / "private" / "key").chmod(0o600)
    os.link(src / "private" / "key", src / "key-again")
    os.link(src / "private" / "key", src / "private" / "key-thrice")
    os.mkfifo(src / "pipe", 0o640)
    os.utime(src / "run.sh", ns=(10**18, 10**18))
    await run_backup(repo, [src], code=CODE, pack_size=PACK)

    mempool.member(2).up = mempool.member(5).up = False
    out = await run_restore(repo, "latest", tmp_path / "out")
    assert out["exit_code"] == 0
    assert out["failed_packs"] == out["incomplete_files"] == 0
    assert sorted(out["down"]) == ["m2", "m5"]
    assert set(out["served_by"]) <= {"m1", "m3", "m4"}
    assert out["hard_links"] >= counts["hardlinks"] + 2
    got = restored(tmp_path / "out", src)
    assert describe(got) == describe(src)
    assert os.lstat(got / "key-again").st_ino == os.lstat(got / "private" / "key-thrice").st_ino
    assert stat.S_ISFIFO(os.lstat(got / "pipe").st_mode)
    assert not list(got.rglob("*.partial"))


def _down_set(
    all_packs: list[tuple[PackRecord, dict[int, bytes]]], members: list[bytes]
) -> tuple[set[bytes], set[bytes]]:
    """Members to take down so that every pack of trees stays readable and some data
    packs do not: (down, the data packs lost)."""
    for down in itertools.combinations(members, len(members) - CODE[0]):
        lost = set()
        for record, holders in all_packs:
            if len(set(holders.values()) - set(down)) < record.k:
                if holds(record, BlobType.TREE):
                    break
                if holds(record, BlobType.DATA):
                    lost.add(bytes(record.pack_id))
        else:
            readable = [r for r, _ in all_packs if holds(r, BlobType.DATA)]
            if lost and len(lost) < len(readable):
                return set(down), lost
    raise AssertionError("no set of members down loses only some data packs")


async def file_chunks(repo: Repository) -> dict[Path, list[bytes]]:
    """Every file of the latest snapshot and its chunk ids, in order."""
    out: dict[Path, list[bytes]] = {}

    async def walk(tree_id: bytes, here: Path) -> None:
        tree = await repo.read_tree(tree_id)
        for entry in tree.entries:
            path = here / os.fsdecode(entry.name)
            if entry.type is NodeType.DIR:
                await walk(entry.subtree, path)
            elif entry.type is NodeType.FILE:
                out[path] = [bytes(c) for c in entry.chunks]

    await walk((await repo.find_snapshot("latest")).tree, Path("/"))
    return out


async def test_beyond_n_minus_k_down_the_lost_packs_and_incomplete_files_are_reported(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for i in range(8):
        write(src / f"f{i}.bin", 30_000 + i, seed=i)
    write(src / "big.bin", 1_500_000, seed=99)  # several chunks, in several packs
    await run_backup(repo, [src], code=CODE, pack_size=PACK)
    files = await file_chunks(repo)
    all_packs = list(await packs(repo))
    down, lost = _down_set(all_packs, [node(mempool, i) for i in range(1, 6)])
    for m in mempool.members.values():
        m.up = bytes(m.node) not in down

    out = await run_restore(repo, "latest", tmp_path / "out")
    assert out["failed_packs"] == len(lost)
    assert out["exit_code"] == NotEnoughShares.exit_code
    assert all(any(p.hex() in e for e in out["errors"]) for p in lost)
    incomplete = 0
    for path, chunks in files.items():
        where = await repo.ledger.locate(chunks)
        arrived = [where[c] not in lost for c in chunks]
        final = tmp_path / "out" / str(path).lstrip("/")
        partial = final.with_name(final.name + ".partial")
        if all(arrived):
            assert final.read_bytes() == path.read_bytes()
            assert not partial.exists()
        else:
            incomplete += 1
            assert not final.exists()  # never a partial file under its final name
            assert partial.exists() == any(arrived)
    assert out["incomplete_files"] == incomplete > 0
    assert out["files_restored"] == len(files) - incomplete
    assert any(str(tmp_path / "out") in e and "incomplete" in e for e in out["errors"])


async def test_a_damaged_shard_is_replaced_by_another_and_its_member_counted_bad(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for i in range(6):
        write(src / f"f{i}.bin", 30_000 + i, seed=i)
    await run_backup(repo, [src], code=CODE, pack_size=PACK)
    liar = node(mempool, 1)
    store = mempool.store(liar)
    keys = [k async for k in store.list()]
    for key in keys:
        damage(store._path(key))
    read = {  # the packs a restore reads: trees and file contents, not index objects
        bytes(r.pack_id)
        for r, _ in await packs(repo)
        if holds(r, BlobType.TREE) or holds(r, BlobType.DATA)
    }
    expected_bad = len({bytes(k.pack) for k in keys} & read)
    assert expected_bad > 0
    await repo.probe()
    repo.members[liar].rate = 1e15  # the fastest by far: asked first for every pack

    out = await run_restore(repo, "latest", tmp_path / "out")
    assert out["exit_code"] == 0
    assert describe(restored(tmp_path / "out", src)) == describe(src)
    assert repo.members[liar].bad == expected_bad
    assert "m1" not in out["served_by"]
    assert all(m.bad == 0 for n, m in repo.members.items() if n != liar)


async def test_include_patterns_restore_only_what_they_match_and_the_dirs_above(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for n, rel in enumerate(["a.txt", "b.bin", "docs/c.txt", "docs/d.bin", "docs/sub/e.bin"]):
        write(src / rel, 500 + n, seed=n)
    (src / "empty-dir").mkdir()
    await run_backup(repo, [src], code=CODE)

    def files(target: Path) -> list[str]:
        root = restored(target, src)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())

    out = await run_restore(repo, "latest", tmp_path / "txt", include=["*.txt"])
    assert files(tmp_path / "txt") == ["a.txt", "docs/c.txt"]
    assert out["files_restored"] == 2
    assert not (restored(tmp_path / "txt", src) / "empty-dir").exists()
    await run_restore(repo, "latest", tmp_path / "docs", include=["docs/"])
    assert files(tmp_path / "docs") == ["docs/c.txt", "docs/d.bin", "docs/sub/e.bin"]
    for rel in files(tmp_path / "docs"):
        assert (restored(tmp_path / "docs", src) / rel).read_bytes() == (src / rel).read_bytes()
    with pytest.raises(NotFoundError, match="matches --include"):  # not a silent 0 files
        await run_restore(repo, "latest", tmp_path / "none", include=["*.nothing"])
    assert not (tmp_path / "none").exists() or files(tmp_path / "none") == []


def _state(root: Path) -> dict[str, tuple[object, ...]]:
    state: dict[str, tuple[object, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = os.lstat(path)
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        state[str(path)] = (info.st_mode, info.st_uid, info.st_mtime_ns, info.st_nlink, content)
    return state


async def test_a_target_with_planted_links_and_fifos_is_never_written_through(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "docs" / "a.txt", 3000, seed=1)
    write(src / "docs" / "sub" / "c.txt", 100, seed=2)
    write(src / "b.txt", 2000, seed=3)
    write(src / "fifo-here.txt", 500, seed=4)
    write(src / "hard.txt", 700, seed=5)
    (src / "empty.txt").touch()
    (src / "ln").symlink_to("b.txt")
    await run_backup(repo, [src], code=CODE)

    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "file").write_bytes(b"precious")
    before = _state(outside)
    target = tmp_path / "target"
    root = restored(target, src)
    root.mkdir(parents=True)
    (root / "docs").symlink_to(outside, target_is_directory=True)
    (root / "b.txt").symlink_to(outside / "file")
    (root / "empty.txt.partial").symlink_to(outside / "file")
    (root / "b.txt.partial").symlink_to(outside / "file")
    os.link(outside / "file", root / "hard.txt")  # a hard link to a file outside
    os.mkfifo(root / "fifo-here.txt")
    (root / "ln").mkdir()
    write(root / "ln" / "inside.bin", 10, seed=6)

    out = await run_restore(repo, "latest", target)
    assert out["exit_code"] == 0
    assert out["files_restored"] == 6
    assert _state(outside) == before
    assert describe(root) == describe(src)
    assert not (root / "docs").is_symlink()
    assert not list(root.rglob("*.partial"))


async def test_a_second_restore_over_the_first_and_stale_partials_gives_the_snapshot(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", 5000, seed=1)
    write(src / "d" / "b.bin", 7000, seed=2)
    await run_backup(repo, [src], code=CODE)
    await run_restore(repo, "latest", tmp_path / "out")
    root = restored(tmp_path / "out", src)
    write(root / "a.bin", 9000, seed=3)  # changed since
    write(root / "d" / "b.bin.partial", 20_000, seed=4)  # longer, left by a killed restore
    (root / "d" / "b.bin").unlink()
    (root / "a.bin").chmod(0o777)

    again = await run_restore(repo, "latest", tmp_path / "out")
    assert again["files_restored"] == 2
    assert describe(root) == describe(src)
    assert not list(root.rglob("*.partial"))


async def test_an_unknown_snapshot_or_none_at_all_is_not_found(
    repo: Repository, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="no snapshots yet"):
        await run_restore(repo, "latest", tmp_path / "out")
    write(tmp_path / "src" / "a", 10, seed=1)
    await run_backup(repo, [tmp_path / "src"], code=CODE)
    with pytest.raises(NotFoundError, match="no snapshot 'ffff'"):
        await run_restore(repo, "ffff", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


async def test_a_file_a_pack_completed_early_keeps_its_bytes(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", 50_000, seed=1)
    (src / "empty").touch()
    await run_backup(repo, [src], code=CODE)
    written = threading.Event()

    def write_pack(self: Restorer, record: PackRecord, data: bytes) -> None:
        _write_pack(self, record, data)
        written.set()

    make_dirs = Restorer._make_dirs

    def dirs_after_a_pack(self: Restorer) -> None:
        assert written.wait(30)
        make_dirs(self)

    # Another order restore allows: the first pack lands before the directories are done.
    monkeypatch.setattr(Restorer, "_write_pack", write_pack)
    monkeypatch.setattr(Restorer, "_finish_empty", _finish_empty)
    monkeypatch.setattr(Restorer, "_make_dirs", dirs_after_a_pack)
    out = await run_restore(repo, "latest", tmp_path / "out")
    assert (restored(tmp_path / "out", src) / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    assert out["files_restored"] == 2


def _legal_but_awkward(src: Path) -> dict[str, bytes]:
    """A 255-byte name, a path of about 4,000 bytes, names with a newline and a tab:
    all legal on Linux, each a file whose bytes say which it is."""
    made: dict[str, bytes] = {}
    long_name = "n" * 251 + ".txt"  # 255 bytes: NAME_MAX exactly
    deep = src.joinpath(*(f"{i:02}" + "d" * 197 for i in range(20)))  # 20 × 200 bytes
    for path in (src / long_name, src / "line\nbreak", src / "tab\there", deep / "leaf"):
        path.parent.mkdir(parents=True, exist_ok=True)
        body = os.fsencode(str(path))
        path.write_bytes(body)
        made[str(path)] = body
    assert len(os.fsencode(str((deep / "leaf").relative_to(src)))) > 4000
    return made


async def test_every_legal_name_restores_and_a_refused_one_fails_alone(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot also holds a name no Linux file system accepts (300 bytes, as
    another system's backup could): only that file is left out, named, with exit 3."""
    src = tmp_path / "src"
    made = _legal_but_awkward(src)
    write(src / "refuse-me", 1000, seed=3)
    write(src / "plain.bin", 70_000, seed=4)
    real_entry = archiver.Archiver._entry

    def entry(name: bytes, *args: object, **kwargs: object) -> object:
        return real_entry(b"r" * 300 if name == b"refuse-me" else name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(archiver.Archiver, "_entry", staticmethod(entry))
    await run_backup(repo, [src], code=CODE, pack_size=PACK)
    monkeypatch.undo()

    target = tmp_path / "out"
    out = await run_restore(repo, "latest", target)
    assert out["exit_code"] == 3
    assert out["names_refused"] == 1
    assert out["files_restored"] == len(made) + 1  # all but the refused one
    assert any("r" * 300 in e and "cannot hold this name" in e for e in out["errors"])
    root = restored(target, src)
    for path, body in made.items():
        assert read_beneath(root, Path(path).relative_to(src)) == body
    assert (root / "plain.bin").read_bytes() == (src / "plain.bin").read_bytes()
    left = [f for _, _, files, _ in os.fwalk(target) for f in files]  # by descriptor
    assert len(left) == len(made) + 1
    assert not [f for f in left if f.endswith(".partial") or f.startswith(".peerbak-")]


async def test_an_include_that_matches_nothing_is_named_and_nothing_at_all_is_not_found(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "a.py", 1000, seed=1)
    write(src / "b.txt", 1000, seed=2)
    await run_backup(repo, [src], code=CODE)
    out = await run_restore(repo, "latest", tmp_path / "one", ["*.py", "*.nosuch"])
    assert out["exit_code"] == 3
    assert out["files_restored"] == 1
    assert out["errors"] == ["--include '*.nosuch' matches nothing in this snapshot"]
    assert (restored(tmp_path / "one", src) / "a.py").exists()
    with pytest.raises(NotFoundError, match="matches --include"):
        await run_restore(repo, "latest", tmp_path / "none", ["*.nosuch"])
    clean = await run_restore(repo, "latest", tmp_path / "all", ["*.py", "*.txt"])
    assert (clean["exit_code"], clean["errors"]) == (0, [])


async def test_ls_of_a_path_the_snapshot_lacks_is_not_found(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "d" / "a.bin", 100, seed=1)
    (src / "empty").mkdir()
    await run_backup(repo, [src], code=CODE)
    snap = await repo.find_snapshot("latest")
    rows = [r["path"] async for r in list_tree(repo, snap, str(src / "empty"))]
    assert rows == [str(src / "empty")]  # an empty directory is there: no error
    with pytest.raises(NotFoundError, match="no such file"):
        _ = [r async for r in list_tree(repo, snap, str(src / "nothing"))]


async def test_latest_of_a_path_set_and_a_directory_of_a_snapshot(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    """``latest`` with ``--path`` is the newest snapshot of that job, not of any; and
    ``SNAPSHOT:DIR`` restores that directory's contents into the target."""
    photos, docs = tmp_path / "photos", tmp_path / "docs"
    write(photos / "2026" / "cat.jpg", 3000, seed=1)
    write(docs / "cv.txt", 300, seed=2)
    first = await run_backup(repo, [photos], code=CODE)
    mempool.clock.advance(60)
    await run_backup(repo, [docs], code=CODE)
    only = Selection(paths=(str(photos),))
    assert (await repo.find_snapshot("latest", only)).id.hex() == first["snapshot_id"]
    out = await run_restore(repo, f"latest:{photos}/2026", tmp_path / "out", only=only)
    assert out["snapshot_id"] == first["snapshot_id"]
    assert (tmp_path / "out" / "cat.jpg").read_bytes() == (photos / "2026" / "cat.jpg").read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cat.jpg"]
    with pytest.raises(NotFoundError, match="no such directory"):
        await run_restore(repo, f"latest:{photos}/nowhere", tmp_path / "none", only=only)
    with pytest.raises(NotFoundError, match="no snapshot of host elsewhere"):
        await repo.find_snapshot("latest", Selection(hosts=("elsewhere",)))


async def test_exclude_leaves_out_what_it_matches_and_all_below_it(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for rel in ["a.txt", "a.log", "logs/b.txt", "keep/c.txt"]:
        write(src / rel, 300, seed=len(rel))
    await run_backup(repo, [src], code=CODE)
    out = await run_restore(repo, "latest", tmp_path / "out", exclude=["*.log", "logs/"])
    got = restored(tmp_path / "out", src)
    assert sorted(str(p.relative_to(got)) for p in got.rglob("*") if p.is_file()) == [
        "a.txt",
        "keep/c.txt",
    ]
    assert not (got / "logs").exists()
    assert (out["files_restored"], out["exit_code"]) == (2, 0)
    both = await run_restore(repo, "latest", tmp_path / "both", ["*.txt"], exclude=["keep/"])
    assert both["files_restored"] == 2  # a.txt and logs/b.txt


async def test_verify_reads_every_file_back_and_names_one_the_disk_changed(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    for i in range(4):
        write(src / f"f{i}.bin", 150_000, seed=i)
    await run_backup(repo, [src], code=CODE, pack_size=PACK)
    good = await run_restore(repo, "latest", tmp_path / "good", verify=True)
    assert (good["files_verified"], good["exit_code"]) == (4, 0)

    finish = Restorer._finish

    def finish_then_rot(self: Restorer, ident: int, path: bytes, entry: Any) -> None:
        finish(self, ident, path, entry)
        if path.endswith(b"f2.bin"):  # the disk loses a bit after the rename
            rotten = self.target / os.fsdecode(path)
            raw = bytearray(rotten.read_bytes())
            raw[99_999] ^= 1
            rotten.write_bytes(bytes(raw))

    monkeypatch.setattr(Restorer, "_finish", finish_then_rot)
    bad = await run_restore(repo, "latest", tmp_path / "bad", verify=True)
    assert (bad["files_verified"], bad["exit_code"]) == (3, 65)
    assert any("f2.bin" in e and "differ" in e for e in bad["errors"])
