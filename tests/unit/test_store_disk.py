"""What only the directory store can get wrong: files, names, crashes, permissions."""

from __future__ import annotations

import random
import stat
from pathlib import Path

import pytest

from peerbak.crypto import NodeKeys
from peerbak.errors import StorageError
from peerbak.store import DirectoryShareStore
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
