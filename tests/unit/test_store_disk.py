"""What only the directory store can get wrong: files, names, crashes, permissions."""

from __future__ import annotations

import os
import random
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peerbak.adapters.store import DirectoryShareStore
from peerbak.core import objects
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import IntegrityError, StorageError
from peerbak.core.pack import Shard
from tests.conftest import build_pack, shard_keys


async def test_leftover_incoming_files_are_swept_and_never_listed(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store = DirectoryShareStore(tmp_path)
    _, shards = build_pack(keys, rng)
    half = tmp_path / "incoming" / "deadbeef.tmp"
    half.write_bytes(shards[0].to_bytes()[:500])  # what a crash mid-put leaves
    assert [k async for k in store.list()] == []
    DirectoryShareStore(tmp_path)
    assert not half.exists()


async def test_files_and_directories_are_private(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store = DirectoryShareStore(tmp_path / "s")
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[0]
    await store.put(key, shards[0])
    path = tmp_path / "s" / "shards" / key.text[:2] / key.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    assert list((tmp_path / "s" / "incoming").iterdir()) == []


async def test_trash_keeps_every_deleted_copy(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    """A compromised owner re-putting garbage and deleting again cannot displace a good copy."""
    store = DirectoryShareStore(tmp_path)
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[0]
    await store.put(key, shards[0])
    await store.delete(key)
    await store.put(key, shards[0])
    await store.delete(key)
    trashed = sorted(p.name for p in (tmp_path / "trash").iterdir())
    assert trashed == [f"{key.text}.0", f"{key.text}.1"]
    assert (tmp_path / "trash" / f"{key.text}.0").read_bytes() == shards[0].to_bytes()


async def test_foreign_files_in_the_store_are_ignored(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store = DirectoryShareStore(tmp_path)
    (tmp_path / "shards" / "zz").mkdir()
    (tmp_path / "shards" / "zz" / "../../etc/passwd".replace("/", "_")).write_bytes(b"x")
    assert [k async for k in store.list()] == []


def test_a_root_that_cannot_be_a_directory_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError, match="cannot open shard store"):
        DirectoryShareStore(tmp_path / "file" / "sub")


async def _pieces(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    at = 0
    for size in sizes:
        yield data[at : at + size]
        at += size
    if at < len(data):
        yield data[at:]


async def test_streamed_put_in_odd_pieces_verifies_and_reads_back(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store = DirectoryShareStore(tmp_path)
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[3]
    data = bytes(shards[3].data)
    await store.put_stream(key, shards[3].header, _pieces(data, [1, 4095, 4097, 3, 10_000]))
    assert (await store.get(key)).to_bytes() == shards[3].to_bytes()
    read = b"".join([p async for p in store.read_data(key, 5, len(data) - 5, piece=777)])
    assert read == data[5:]
    assert store.usage() == shards[3].header.size


@pytest.mark.parametrize("damage", ["flip", "short", "long"])
async def test_streamed_put_that_does_not_match_leaves_nothing(
    tmp_path: Path, keys: NodeKeys, rng: random.Random, damage: str
) -> None:
    store = DirectoryShareStore(tmp_path)
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[0]
    data = bytearray(shards[0].data)
    if damage == "flip":
        data[len(data) // 2] ^= 1
    elif damage == "short":
        del data[-1]
    else:
        data += b"\x00"
    with pytest.raises(IntegrityError):
        await store.put_stream(key, shards[0].header, _pieces(bytes(data), [4096]))
    assert [k async for k in store.list()] == []
    assert list((tmp_path / "incoming").iterdir()) == []


async def test_streamed_put_of_a_stored_shard_agrees_or_conflicts(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store = DirectoryShareStore(tmp_path)
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[0]
    await store.put(key, shards[0])
    await store.put_stream(key, shards[0].header, _pieces(bytes(shards[0].data), []))
    other = Shard(shards[1].header, shards[1].data)
    with pytest.raises(IntegrityError):  # a container for index 1 under key index 0
        await store.put_stream(key, other.header, _pieces(bytes(other.data), []))


async def test_trash_is_freed_only_after_the_holders_grace(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store = DirectoryShareStore(tmp_path)
    record, shards = build_pack(keys, rng)
    for index in (0, 1):
        key = shard_keys(record)[index]
        await store.put(key, shards[index])
        await store.delete(key)
    trash = sorted((tmp_path / "trash").iterdir())
    deleted_at = trash[0].stat().st_mtime
    os.utime(trash[0], (deleted_at - 31 * 86400, deleted_at - 31 * 86400))
    size = trash[0].stat().st_size
    grace = 30 * 86400
    assert store.purge_trash(now=deleted_at, grace=grace) == (1, size)
    assert [p.name for p in (tmp_path / "trash").iterdir()] == [trash[1].name]
    second = trash[1].stat().st_mtime
    assert store.purge_trash(now=second + grace - 1, grace=grace) == (0, 0)
    assert store.purge_trash(now=second + grace, grace=grace)[0] == 1


async def test_deleting_stamps_the_deletion_time(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    """A shard written long ago and deleted now gets the full grace from now."""
    store = DirectoryShareStore(tmp_path)
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[0]
    await store.put(key, shards[0])
    final = tmp_path / "shards" / key.text[:2] / key.text
    os.utime(final, (1_000_000, 1_000_000))
    await store.delete(key)
    (trashed,) = (tmp_path / "trash").iterdir()
    assert trashed.stat().st_mtime > 1_000_000 + 86400


async def test_trash_counts_as_used_until_it_is_purged(
    tmp_path: Path, keys: NodeKeys, rng: random.Random
) -> None:
    store = DirectoryShareStore(tmp_path)
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[0]
    await store.put(key, shards[0])
    await store.delete(key)
    assert store.usage() == shards[0].header.size
    (trashed,) = (tmp_path / "trash").iterdir()
    store.purge_trash(now=trashed.stat().st_mtime + 10, grace=10)
    assert store.usage() == 0


def _manifest(keys: NodeKeys, sequence: int) -> bytes:
    body = objects.ManifestBody(
        pool=bytes(16), founder=bytes(keys.node_id), time=0.0, snapshots=[], index_packs=[]
    )
    return objects.seal_manifest(keys, sequence, body, bytes)


async def test_every_replaced_manifest_is_kept_in_the_trash_for_the_grace(tmp_path: Path) -> None:
    keys = NodeKeys.derive(bytes(range(32)))
    store = DirectoryShareStore(tmp_path / "owner")
    trash = tmp_path / "owner" / "trash"
    for sequence in range(1, 6):  # hourly backups: each replaces the one before
        assert await store.put_manifest(_manifest(keys, sequence), sequence) == sequence
    names = ["manifest.1.0", "manifest.2.0", "manifest.3.0", "manifest.4.0"]
    assert sorted(p.name for p in trash.iterdir()) == names
    for sequence in range(1, 5):
        assert (trash / f"manifest.{sequence}.0").read_bytes() == _manifest(keys, sequence)
    assert await store.get_manifest() == _manifest(keys, 5)
    assert store.manifest_trash() == (4, sum(len(_manifest(keys, s)) for s in range(1, 5)))
    # The holder's own purge frees them after its grace, as it does shards.
    day_ago = time.time() - 86401
    os.utime(trash / "manifest.1.0", (day_ago, day_ago))
    freed, _ = store.purge_trash(time.time(), 3600)
    assert freed == 1
    assert sorted(p.name for p in trash.iterdir()) == names[1:]


@pytest.mark.parametrize("limit", [(3, 1 << 20), (100, 700)], ids=["count", "bytes"])
async def test_past_its_bound_the_trash_refuses_new_manifests_and_keeps_the_old(
    tmp_path: Path, limit: tuple[int, int]
) -> None:
    """A flood of pushes (malware with the key) cannot push good manifests out."""
    keys = NodeKeys.derive(bytes(range(32)))
    store = DirectoryShareStore(tmp_path / "owner", manifest_limit=limit)
    trash = tmp_path / "owner" / "trash"
    refused = 0
    for sequence in range(1, 20):
        try:
            await store.put_manifest(_manifest(keys, sequence), sequence)
        except StorageError:
            refused = sequence
            break
    assert refused > 2
    with pytest.raises(StorageError, match="replaced manifests of yours"):
        await store.put_manifest(_manifest(keys, refused), refused)
    kept = sorted(int(p.name.split(".")[1]) for p in trash.iterdir())
    assert kept == list(range(1, refused - 1))  # the oldest are all still there
    assert await store.get_manifest() == _manifest(keys, refused - 1)  # not replaced
    count, size = store.manifest_trash()
    assert count <= limit[0]
    assert size <= limit[1]
