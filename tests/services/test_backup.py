"""``backup`` against the in-process pool: deduplication and the files cache, the
snapshot's clock and host, members down before and during a run, quotas, dry runs,
excludes, unreadable files, the merging of index packs and the reclaiming of packs a
killed run left sealed."""

from __future__ import annotations

import asyncio
import builtins
import errno
import io
import itertools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import pytest

from peerbak.adapters.store import _Incoming
from peerbak.core.crypto import BlobType
from peerbak.core.errors import InputError, NotFoundError, PeerUnavailable
from peerbak.core.ids import ShardKey
from peerbak.core.pack import PackRecord, Shard
from peerbak.services import archiver, index
from peerbak.services.backup import run_backup
from peerbak.services.recovery import rebuild_from_pool
from peerbak.services.repository import RateLimit, Repository
from peerbak.services.restore import run_restore
from peerbak.tools.mempool import MemoryPool
from peerbak.tools.sample import describe
from tests.services.kit import restored, stored_packs, write

CODE = (2, 4)
#: Small packs, so a few hundred kilobytes make several of them.
PACK = 64 << 10


def tree(root: Path, files: int = 6, size: int = 40_000) -> Path:
    for i in range(files):
        write(root / f"d{i % 2}" / f"f{i}.bin", size + i, seed=i)
    return root


async def held(mempool: MemoryPool, i: int) -> set[ShardKey]:
    """The owner's shards member ``i`` keeps (live, not trashed)."""
    node = bytes(mempool.keys[i].node_id)
    return {k async for k in mempool.store(node).list()}


async def all_held(mempool: MemoryPool) -> set[tuple[int, ShardKey]]:
    return {(i, k) for i in range(1, len(mempool.keys)) for k in await held(mempool, i)}


async def test_a_second_backup_of_the_same_tree_adds_nothing_and_reads_nothing(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tree(tmp_path / "src")
    first = await run_backup(repo, [src], code=CODE, pack_size=PACK)
    assert first["files_new"] == 6
    assert first["packs_added"] > 1
    shards = await all_held(mempool)
    packs = await stored_packs(repo)

    second = await run_backup(repo, [src], code=CODE, pack_size=PACK)
    assert second["files_unmodified"] == 6
    assert second["files_new"] == second["files_changed"] == 0
    assert second["bytes_read"] == second["data_added"] == 0
    assert second["total_bytes_processed"] == first["total_bytes_processed"]
    # Directories above src (the pytest temporary tree) may have changed meanwhile: at
    # most trees and their index are new, never file contents.
    new = await stored_packs(repo) - packs
    assert second["packs_added"] == len(new)
    for pack in new:
        found = await repo.ledger.pack(pack)
        assert found is not None
        assert all(e.blob_type is not BlobType.DATA for e in found[0].entries)
    assert await all_held(mempool) >= shards
    snaps = {s.id.hex(): s for s in await repo.snapshots()}
    assert snaps[second["snapshot_id"]].parent.hex() == first["snapshot_id"]

    # One file rewritten: only it is read, only its bytes are new.
    changed = write(src / "d1" / "f3.bin", 40_003, seed=99)
    third = await run_backup(repo, [src], code=CODE, pack_size=PACK)
    assert (third["files_changed"], third["files_unmodified"]) == (1, 5)
    assert third["bytes_read"] == third["data_added"] == changed.stat().st_size
    out = await run_restore(repo, third["snapshot_id"], tmp_path / "out")
    assert out["files_restored"] == 6
    assert describe(restored(tmp_path / "out", src)) == describe(src)


async def test_the_same_content_in_two_files_is_stored_once(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    a = write(src / "a.bin", 300_000, seed=5)
    (src / "copy.bin").write_bytes(a.read_bytes())
    summary = await run_backup(repo, [src], code=CODE)
    assert summary["files_new"] == 2
    assert summary["bytes_read"] == 600_000
    assert summary["data_added"] == 300_000


async def test_the_snapshot_takes_its_time_from_the_clock_and_its_host_from_the_repository(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tree(tmp_path / "src", files=2)
    mempool.clock.advance(12_345.5)
    summary = await run_backup(repo, [src], code=CODE, tags=["daily"])
    snap = await repo.find_snapshot(summary["snapshot_id"])
    assert snap.time == mempool.clock.now
    assert snap.hostname == "owner-host"
    assert (snap.paths, snap.tags, snap.k, snap.n) == ([str(src)], ["daily"], *CODE)
    assert summary["manifest_copies"] == 5
    manifest = await repo.latest_manifest()
    assert manifest is not None
    assert manifest.body.time == mempool.clock.now
    assert [(s.id, s.time) for s in manifest.body.snapshots] == [(snap.id, snap.time)]

    mempool.clock.advance(60)
    later = await run_backup(repo, [src], code=CODE)
    assert (await repo.find_snapshot("latest")).id.hex() == later["snapshot_id"]


async def test_with_fewer_than_k_plus_1_members_up_nothing_is_stored_or_published(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tree(tmp_path / "src", files=2)
    for i in (1, 3, 4):
        mempool.member(i).up = False
    with pytest.raises(PeerUnavailable, match="only 2 members are reachable") as caught:
        await run_backup(repo, [src], code=CODE)
    message = str(caught.value)
    assert all(f"m{i}" in message for i in (1, 3, 4))
    assert "m2" not in message
    assert "m5" not in message
    assert await all_held(mempool) == set()
    assert not any(mempool.store(node).manifest_path.exists() for node in mempool.members)
    assert await repo.snapshots() == []
    assert await stored_packs(repo) == set()


async def test_a_member_lost_between_packs_leaves_every_pack_on_k_and_the_snapshot_whole(
    repo: Repository, mempool: MemoryPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tree(tmp_path / "src", files=8, size=50_000)
    lost = mempool.member(3)
    original = repo.store_pack
    calls = 0

    async def store_then_lose(record: PackRecord, shards: list[Shard], kind: int) -> None:
        nonlocal calls
        calls += 1
        first = calls == 1
        await original(record, shards, kind)
        if first:
            lost.up = False

    monkeypatch.setattr(repo, "store_pack", store_then_lose)
    # 2-of-5: every pack is placed on every member, the lost one included.
    summary = await run_backup(repo, [src], code=(2, 5), pack_size=PACK)
    assert calls == summary["packs_added"] > 2
    assert summary["members_up"] == 4
    assert summary["manifest_copies"] == 4

    packs = await stored_packs(repo)
    assert len(packs) == summary["packs_added"]
    kept_by_lost = set()
    for pack in packs:
        found = await repo.ledger.pack(pack)
        assert found is not None
        record, holders = found
        assert len(holders) >= record.k + 1
        if bytes(lost.node) in holders.values():
            kept_by_lost.add(pack)
    assert kept_by_lost, "the first pack reached the member before it was lost"
    assert len(kept_by_lost) < len(packs)
    assert {bytes(k.pack) for k in await held(mempool, 3)} == kept_by_lost

    lost.up = True
    mempool.member(1).up = mempool.member(2).up = False  # the pool can still lose n - k - 1
    out = await run_restore(repo, "latest", tmp_path / "out")
    assert out["exit_code"] == 0
    assert describe(restored(tmp_path / "out", src)) == describe(src)


async def test_a_member_out_of_quota_is_left_out_of_placement(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tree(tmp_path / "src", files=6)
    full = bytes(mempool.keys[2].node_id)
    mempool.lend[full] = 0
    summary = await run_backup(repo, [src], code=CODE, pack_size=PACK)
    assert summary["members_up"] == 5
    assert await held(mempool, 2) == set()
    assert full not in await repo.ledger.held_by_member()
    for pack in await stored_packs(repo):
        found = await repo.ledger.pack(pack)
        assert found is not None
        assert len(found[1]) == found[0].n == CODE[1]
        assert full not in found[1].values()


async def test_a_dry_run_stores_nothing_and_leaves_the_files_cache_alone(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tree(tmp_path / "src", files=4)
    dry = await run_backup(repo, [src], code=CODE, dry_run=True)
    assert dry["dry_run"] is True
    assert dry["snapshot_id"] == ""
    assert dry["files_new"] == 4
    assert dry["data_added"] > 0
    assert dry["packs_added"] > 0
    assert dry["manifest_copies"] == 0
    assert await all_held(mempool) == set()
    assert not any(mempool.store(node).manifest_path.exists() for node in mempool.members)
    assert await repo.snapshots() == []
    assert await stored_packs(repo) == set()

    real = await run_backup(repo, [src], code=CODE)
    assert real["files_new"] == 4
    assert real["files_unmodified"] == 0
    assert real["data_added"] == dry["data_added"]


async def test_excludes_leave_out_what_they_match_and_nothing_else(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    keep = ["a.txt", "docs/b.txt", "docs/cache.txt", "deep/x/c.bin", "keep.tmp"]
    drop = ["a.tmp", "docs/cache/big.bin", "deep/x/skip/e.bin", "deep/junk.bin"]
    for n, rel in enumerate(keep + drop):
        write(src / rel, 1000 + n, seed=n)
    junk = f"/{str(src).lstrip('/')}/deep/junk.bin"  # absolute: from the file system's root
    excludes = ["*.tmp", "!keep.tmp", "cache/", "**/x/skip", junk]
    summary = await run_backup(repo, [src], code=CODE, excludes=excludes)
    assert summary["total_files_processed"] == len(keep)
    await run_restore(repo, "latest", tmp_path / "out")
    got = restored(tmp_path / "out", src)
    files = sorted(str(p.relative_to(got)) for p in got.rglob("*") if p.is_file())
    assert files == sorted(keep)

    with pytest.raises(NotFoundError, match="no such file"):  # nothing at all to back up
        await run_backup(repo, [src / "missing"], code=CODE)
    warned: list[str] = []
    partly = await run_backup(repo, [src, src / "missing"], code=CODE, warn=warned.append)
    assert warned == [f"{src / 'missing'}: no such file or directory, skipped"]
    assert partly["errors"] == 1  # the CLI exits 3
    assert partly["snapshot_id"]  # the rest is saved
    assert (await repo.find_snapshot("latest")).paths == [str(src)]


async def test_an_unreadable_file_is_a_warning_and_an_error_and_the_rest_is_saved(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tree(tmp_path / "src", files=4)
    secret = write(src / "d0" / "secret.bin", 5000, seed=7)
    secret.chmod(0)
    real_open = builtins.open

    def refusing_open(file: Any, *args: Any, **kwargs: Any) -> IO[Any]:
        # Root reads a mode-000 file: refuse it as the kernel does for anyone else.
        if os.fsdecode(file) == str(secret):
            raise PermissionError(errno.EACCES, "Permission denied", str(secret))
        return real_open(file, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(archiver, "open", refusing_open, raising=False)
    warnings: list[str] = []
    summary = await run_backup(repo, [src], code=CODE, warn=warnings.append)
    assert summary["errors"] == 1
    assert summary["files_new"] == summary["total_files_processed"] - 1 == 4
    assert len(warnings) == 1
    assert str(secret) in warnings[0]
    assert summary["warnings"] == warnings
    assert summary["snapshot_id"] == (await repo.find_snapshot("latest")).id.hex()

    out = await run_restore(repo, "latest", tmp_path / "out")
    assert out["files_restored"] == 4
    secret.chmod(0o600)  # describe() reads every file
    expected = describe(src)
    del expected["d0/secret.bin"]
    assert describe(restored(tmp_path / "out", src)) == expected


async def test_merged_index_packs_keep_every_snapshot_restorable_after_a_recovery(
    repo: Repository, mempool: MemoryPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index, "INDEX_LIST_MAX", 3)
    src = tmp_path / "src"
    lengths = []
    states: dict[str, dict[str, tuple[object, ...]]] = {}
    for i in range(7):
        write(src / f"f{i}.bin", 20_000 + i, seed=i)
        mempool.clock.advance(3600)
        summary = await run_backup(repo, [src], code=CODE)
        states[summary["snapshot_id"]] = describe(src)
        lengths.append(len(await repo.index_packs()))
    assert max(lengths) <= 3
    assert any(b < a for a, b in itertools.pairwise(lengths)), lengths
    before = await stored_packs(repo)

    mempool.lose_owner()
    async with await mempool.open() as fresh:
        await fresh.probe()
        first = await fresh.latest_manifest()
        assert first is not None
        await rebuild_from_pool(fresh, first)
        assert await stored_packs(fresh) == before
        for ident, state in states.items():
            target = tmp_path / f"out-{ident}"
            out = await run_restore(fresh, ident, target)
            assert out["exit_code"] == 0
            assert describe(restored(target, src)) == state


class Killed(Exception):
    """The backup's process dies here."""


def _dies_after(fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    async def then_die(*args: Any, **kwargs: Any) -> None:
        await fn(*args, **kwargs)
        raise Killed

    return then_die


async def _dies(*_args: Any, **_kwargs: Any) -> None:
    raise Killed


@pytest.mark.parametrize("point", ["pack-sealed", "uploaded-not-recorded"])
async def test_packs_a_killed_run_sealed_are_reclaimed_by_the_next_backup(
    repo: Repository,
    mempool: MemoryPool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
) -> None:
    src = tmp_path / "src"
    write(src / "one.bin", 200_000, seed=3)  # one chunk, one data pack: one upload in flight
    with monkeypatch.context() as m:
        if point == "pack-sealed":  # recorded with its placement, nothing uploaded
            m.setattr(repo.ledger, "add_pack", _dies_after(repo.ledger.add_pack))
        else:  # uploaded, never marked stored
            m.setattr(repo.ledger, "pack_stored", _dies)
        with pytest.raises(Killed):
            await run_backup(repo, [src], code=CODE)
    sealed = await repo.ledger.sealed_packs()
    assert len(sealed) == 1
    pack, placed = sealed[0]
    leftovers = {(i, k) for i, k in await all_held(mempool) if k.pack == pack}
    assert len(leftovers) == (CODE[1] if point == "uploaded-not-recorded" else 0)
    assert await repo.snapshots() == []

    summary = await run_backup(repo, [src], code=CODE)
    assert summary["reclaimed_packs"] == 1
    # The killed run's walk had cached the file: it is read again as changed, since its
    # chunk is in no stored pack.
    assert summary["files_new"] + summary["files_changed"] == 1
    assert summary["data_added"] == 200_000
    assert await repo.ledger.sealed_packs() == []
    assert await repo.ledger.pack(pack) is None
    assert not any(k.pack == pack for _, k in await all_held(mempool))
    for node in placed.values():  # moved to the holders' trash, not destroyed
        trash = mempool.store(node).root / "trash"
        assert any(p.name.startswith(pack.hex()) for p in trash.iterdir()) == bool(leftovers)
    await run_restore(repo, "latest", tmp_path / "out")
    assert describe(restored(tmp_path / "out", src)) == describe(src)


async def test_a_leftover_on_a_member_that_is_down_is_reclaimed_once_it_is_back(
    repo: Repository, mempool: MemoryPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    write(src / "one.bin", 200_000, seed=4)
    with monkeypatch.context() as m:
        m.setattr(repo.ledger, "pack_stored", _dies)
        with pytest.raises(Killed):
            await run_backup(repo, [src], code=CODE)
    [(pack, placed)] = await repo.ledger.sealed_packs()
    away = next(i for i in range(1, 6) if bytes(mempool.keys[i].node_id) in placed.values())
    mempool.member(away).up = False

    summary = await run_backup(repo, [src], code=CODE)
    assert summary["reclaimed_packs"] == 0
    assert [p for p, _ in await repo.ledger.sealed_packs()] == [pack]
    assert {k.pack for k in await held(mempool, away)} >= {pack}

    mempool.member(away).up = True
    again = await run_backup(repo, [src], code=CODE)
    assert again["reclaimed_packs"] == 1
    assert await repo.ledger.sealed_packs() == []
    assert not any(k.pack == pack for _, k in await all_held(mempool))


async def test_overlapping_paths_and_a_single_file_are_backed_up_once(
    repo: Repository, tmp_path: Path
) -> None:
    src = tree(tmp_path / "src", files=4)
    lone = write(tmp_path / "lone.bin", 3000, seed=50)
    summary = await run_backup(repo, [src / "d1", lone, src], code=CODE)
    assert summary["total_files_processed"] == 5
    await run_restore(repo, "latest", tmp_path / "out")
    assert describe(restored(tmp_path / "out", src)) == describe(src)
    assert restored(tmp_path / "out", lone).read_bytes() == lone.read_bytes()
    snap = await repo.find_snapshot("latest")
    assert snap.paths == [str(src / "d1"), str(lone), str(src)]


@pytest.mark.parametrize("change", [5000, -5000])
async def test_a_file_that_changes_size_while_it_is_read_is_saved_as_read(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: int
) -> None:
    src = tmp_path / "src"
    log = write(src / "log.txt", 20_000, seed=1)
    write(src / "other.bin", 100, seed=2)
    real_open = builtins.open

    def open_a_moment_later(file: Any, *args: Any, **kwargs: Any) -> IO[Any]:
        if os.fsdecode(file) == str(log):  # written to between the walk's lstat and the read
            with real_open(log, "r+b") as f:
                f.truncate(20_000 + change)
        return real_open(file, *args, **kwargs)  # type: ignore[no-any-return]

    with monkeypatch.context() as m:
        m.setattr(archiver, "open", open_a_moment_later, raising=False)
        await run_backup(repo, [src], code=CODE)
    out = await run_restore(repo, "latest", tmp_path / "out")
    assert out["files_restored"] == 2
    assert restored(tmp_path / "out", src).joinpath("log.txt").read_bytes() == log.read_bytes()


async def test_a_request_to_a_member_while_a_shard_is_put_to_it_does_not_fail_the_put(
    repo: Repository, mempool: MemoryPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for node, member in mempool.members.items():
        member.holder = mempool._holder(node)  # the pool as it is, without the fixture's store
    loop = asyncio.get_running_loop()
    commit = _Incoming.commit
    asked = False

    def commit_after_a_request(self: _Incoming, *, check_root: bool = True) -> None:
        nonlocal asked
        if not asked:  # every member is asked for its room meanwhile (as probe does)
            asked = True
            for member in mempool.members.values():
                asyncio.run_coroutine_threadsafe(member.space(), loop).result(30)
        commit(self, check_root=check_root)

    monkeypatch.setattr(_Incoming, "commit", commit_after_a_request)
    summary = await run_backup(repo, [tree(tmp_path / "src", files=2)], code=CODE)
    assert asked
    assert summary["members_up"] == 5
    assert all(m.up for m in repo.members.values()), [m.error for m in repo.members.values()]


async def test_restic_exclusions_leave_out_what_they_say_and_nothing_else(
    repo: Repository, tmp_path: Path
) -> None:
    """--iexclude, --exclude-if-present, --exclude-caches and --exclude-larger-than."""
    src = tmp_path / "src"
    keep = ["notes.txt", "photos/cat.jpg", "build/keep-me.txt"]
    for rel in [*keep, "IMG/BIG.JPG.TMP", "node_modules/x.js", "cache/blob", "big.iso"]:
        write(src / rel, 3_000_000 if rel == "big.iso" else 500, seed=len(rel))
    (src / "node_modules" / ".nobackup").write_text("")
    (src / "cache" / "CACHEDIR.TAG").write_bytes(archiver.CACHEDIR_TAG[1] + b"\n# made by a tool\n")
    (src / "build" / "CACHEDIR.TAG").write_text("not the signature: not a cache\n")
    out = await run_backup(
        repo,
        [src],
        code=CODE,
        iexcludes=["*.tmp"],
        exclude_if_present=[".nobackup"],
        exclude_caches=True,
        exclude_larger_than=1_000_000,
    )
    assert out["errors"] == 0
    back = await run_restore(repo, "latest", tmp_path / "out")
    got = restored(tmp_path / "out", src)
    files = sorted(str(p.relative_to(got)) for p in got.rglob("*") if p.is_file())
    assert files == sorted([*keep, "build/CACHEDIR.TAG"])
    assert back["exit_code"] == 0
    with pytest.raises(InputError, match="file name"):
        await run_backup(repo, [src], code=CODE, exclude_if_present=["a/b"])


async def test_upload_and_download_limits_pace_the_shards(
    mempool: MemoryPool, tmp_path: Path
) -> None:
    """restic's --limit-upload/--limit-download: the pauses asked for make the shards'
    bytes take at least their size over the rate, past one second's burst."""
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    rate = 64 * 1024  # bytes a second
    src = tree(tmp_path / "src", files=4, size=100_000)
    async with await mempool.open() as repo:
        repo.upload = RateLimit(rate * 3600, sleep=sleep, burst=rate)
        repo.download = RateLimit(rate * 3600, sleep=sleep, burst=rate)
        out = await run_backup(repo, [src], code=CODE)
        sent = sum(pauses)
        assert sent >= (out["stored_added"] - rate) / rate * 0.9
        pauses.clear()
        await run_restore(repo, "latest", tmp_path / "out")
        assert sum(pauses) >= (400_000 - rate) / rate * 0.9  # at least the data came back


async def test_a_stream_is_backed_up_as_one_file_of_its_name(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    """``backup --stdin --stdin-filename db.sql``: a dump piped in, restored as a file."""
    dump = io.BytesIO(b"INSERT INTO t VALUES (1);\n" * 50_000)
    out = await run_backup(repo, [], code=CODE, stdin=("db.sql", dump))
    snap = await repo.find_snapshot("latest")
    assert snap.paths == ["/db.sql"]
    assert out["files_new"] == 1
    assert out["bytes_read"] == len(dump.getvalue())
    await run_restore(repo, "latest", tmp_path / "out")
    restored_file = tmp_path / "out" / "db.sql"
    assert restored_file.read_bytes() == dump.getvalue()
    assert restored_file.stat().st_mtime == pytest.approx(mempool.clock(), abs=1)
    with pytest.raises(InputError, match="file name"):
        await run_backup(repo, [], code=CODE, stdin=("a/b", io.BytesIO(b"x")))
    with pytest.raises(InputError, match="not PATHS"):
        await run_backup(repo, [tmp_path], code=CODE, stdin=("x", io.BytesIO(b"x")))
