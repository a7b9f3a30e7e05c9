"""Shared fixtures: seeded randomness and small real packs."""

from __future__ import annotations

import random

import pytest

from peerbak.core import crypto
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import BlobType, NodeKeys
from peerbak.core.ids import ShardKey
from peerbak.core.pack import PackRecord, PackWriter, Shard, make_shards, prepare_blob


@pytest.fixture
def rng() -> random.Random:
    return random.Random(0)


@pytest.fixture
def keys() -> NodeKeys:
    return NodeKeys.derive(bytes(range(32)))


def build_pack(
    keys: NodeKeys, rng: random.Random, k: int = 3, n: int = 5, size: int = 40_000
) -> tuple[PackRecord, list[Shard]]:
    """One sealed pack of random chunks, erasure-coded: its record and shards (own copies)."""
    writer = PackWriter(keys.data_key, 1 << 20)
    for part in range(3):
        data = rng.randbytes(size // 3 + part)
        ident = crypto.chunk_id(keys.chunk_id_key, data)
        writer.add(prepare_blob(BlobType.DATA, ident, data, None), rng.randbytes(24))
    pack_id, view, entries = writer.seal(rng.randbytes(24))
    record, shards = make_shards(ErasureCode(k, n), pack_id, view, entries)
    return record, [Shard(s.header, bytes(s.data)) for s in shards]


def shard_keys(record: PackRecord) -> list[ShardKey]:
    return [ShardKey(record.pack_id, i) for i in range(record.n)]
