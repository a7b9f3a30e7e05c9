"""One suite, every ShareStore: the directory adapter and the in-memory fake."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from peerbak.adapters.store import DirectoryShareStore, MemoryShareStore
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import ConflictError, InputError, IntegrityError, NotFoundError
from peerbak.core.ids import ShardKey
from peerbak.core.pack import Shard, make_shards
from peerbak.ports import ShareStore
from tests.conftest import build_pack, shard_keys


@pytest.fixture(params=["disk", "fake"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], ShareStore]:
    if request.param == "disk":
        return lambda: DirectoryShareStore(tmp_path / "held" / "owner")
    fake = MemoryShareStore()
    return lambda: fake


async def _listed(store: ShareStore) -> set[ShardKey]:
    return {key async for key in store.list()}


async def test_put_get_stat_list_round_trip(
    make_store: Callable[[], ShareStore], keys: NodeKeys, rng: random.Random
) -> None:
    store = make_store()
    record, shards = build_pack(keys, rng)
    for key, raw in zip(shard_keys(record), shards, strict=True):
        await store.put(key, raw)
    for key, raw in zip(shard_keys(record), shards, strict=True):
        assert (await store.get(key)).to_bytes() == raw.to_bytes()
        info = await store.stat(key)
        assert info.size == raw.header.size == len(raw.to_bytes())
        assert info.header == record.header(key.index)
    assert await _listed(store) == set(shard_keys(record))


async def test_get_range_reads_the_data_region(
    make_store: Callable[[], ShareStore], keys: NodeKeys, rng: random.Random
) -> None:
    store = make_store()
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[2]
    await store.put(key, shards[2])
    assert await store.get_range(key, 10, 100) == shards[2].data[10:110]
    length = record.header(2).shard_length
    assert await store.get_range(key, length - 1, 1) == shards[2].data[-1:]
    for offset, size in [(length, 1), (-1, 5), (0, length + 1)]:
        with pytest.raises(InputError):
            await store.get_range(key, offset, size)


async def test_put_twice_same_bytes_is_a_no_op(
    make_store: Callable[[], ShareStore], keys: NodeKeys, rng: random.Random
) -> None:
    store = make_store()
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[0]
    await store.put(key, shards[0])
    await store.put(key, shards[0])
    assert await _listed(store) == {key}


async def test_put_other_bytes_under_the_same_key_is_a_conflict(
    make_store: Callable[[], ShareStore], keys: NodeKeys, rng: random.Random
) -> None:
    """Honest owners never do this; a liar must not overwrite what is stored."""
    store = make_store()
    record, shards = build_pack(keys, rng, k=3, n=5)
    key = shard_keys(record)[0]
    await store.put(key, shards[0])
    other_pack = memoryview(rng.randbytes(1000))
    _, other = make_shards(ErasureCode(2, 4), record.pack_id, other_pack, [])
    with pytest.raises(ConflictError):
        await store.put(key, other[0])
    assert (await store.get(key)).to_bytes() == shards[0].to_bytes()


async def test_put_refuses_damaged_or_misnamed_shards_and_stores_nothing(
    make_store: Callable[[], ShareStore], keys: NodeKeys, rng: random.Random
) -> None:
    store = make_store()
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[1]
    damaged = bytearray(shards[1].data)
    damaged[-5] ^= 0x10
    with pytest.raises(IntegrityError):
        await store.put(key, Shard(shards[1].header, bytes(damaged)))
    with pytest.raises(IntegrityError):
        await store.put(shard_keys(record)[2], shards[1])
    with pytest.raises(IntegrityError):
        await store.put(key, Shard(shards[1].header, shards[1].data[:-1]))
    assert await _listed(store) == set()


async def test_missing_shards_are_not_found(
    make_store: Callable[[], ShareStore], keys: NodeKeys, rng: random.Random
) -> None:
    store = make_store()
    record, _ = build_pack(keys, rng)
    key = shard_keys(record)[0]
    for call in (store.get(key), store.stat(key), store.get_range(key, 0, 1)):
        with pytest.raises(NotFoundError):
            await call


async def test_delete_moves_to_trash_and_is_idempotent(
    make_store: Callable[[], ShareStore], keys: NodeKeys, rng: random.Random
) -> None:
    store = make_store()
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[0]
    await store.put(key, shards[0])
    await store.delete(key)
    await store.delete(key)
    with pytest.raises(NotFoundError):
        await store.get(key)
    assert await _listed(store) == set()
    await store.put(key, shards[0])  # the owner may store it again
    assert (await store.get(key)).to_bytes() == shards[0].to_bytes()


async def test_damage_at_rest_is_reported_on_get(
    make_store: Callable[[], ShareStore], keys: NodeKeys, rng: random.Random, tmp_path: Path
) -> None:
    store = make_store()
    record, shards = build_pack(keys, rng)
    key = shard_keys(record)[0]
    await store.put(key, shards[0])
    _damage(store, key, tmp_path)
    with pytest.raises(IntegrityError):
        await store.get(key)


def _damage(store: ShareStore, key: ShardKey, tmp_path: Path) -> None:
    if isinstance(store, MemoryShareStore):
        raw = bytearray(store.shards[key])
        raw[-1] ^= 1
        store.shards[key] = bytes(raw)
        return
    assert isinstance(store, DirectoryShareStore)
    path = store.root / "shards" / key.text[:2] / key.text
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
