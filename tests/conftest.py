"""Shared fixtures: seeded randomness and small real packs."""

from __future__ import annotations

import random

import pytest

from peerbak import crypto
from peerbak.codec import ErasureCode
from peerbak.crypto import BlobType, NodeKeys
from peerbak.ids import ShardKey
from peerbak.pack import PackRecord, PackWriter, make_shards, seal_blob


@pytest.fixture
def rng() -> random.Random:
    return random.Random(0)


@pytest.fixture
def keys() -> NodeKeys:
    return NodeKeys.derive(bytes(range(32)))


def build_pack(
    keys: NodeKeys, rng: random.Random, k: int = 3, n: int = 5, size: int = 40_000
) -> tuple[PackRecord, list[bytes]]:
    """One sealed pack of random chunks, erasure-coded: its record and shard containers."""
    writer = PackWriter(keys.data_key, 1 << 20)
    for part in range(3):
        data = rng.randbytes(size // 3 + part)
        ident = crypto.chunk_id(keys.chunk_id_key, data)
        writer.add(seal_blob(keys.data_key, BlobType.DATA, ident, data, rng.randbytes(24), None))
    pack_id, view, entries = writer.seal(rng.randbytes(24))
    return make_shards(ErasureCode(k, n), pack_id, view, entries)


def shard_keys(record: PackRecord) -> list[ShardKey]:
    return [ShardKey(record.pack_id, i) for i in range(record.n)]
