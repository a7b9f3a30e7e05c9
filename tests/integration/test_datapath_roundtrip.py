"""The whole data path on real files: tree → chunks → packs → shards on disk → tree.

Shards are deleted and damaged the way lost and lying holders would; what comes back
is either the exact bytes or an error naming the pack, never wrong bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest

from peerbak.adapters.store import DirectoryShareStore
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import NotEnoughShares
from peerbak.core.ids import ChunkId, ShardKey
from peerbak.core.pack import PackRecord
from peerbak.services.fetch import FetchReport, fetch_pack, read_blobs
from peerbak.services.packer import Packer

K, N = 3, 5
Backed = tuple[Path, dict[str, bytes], dict[str, list[ChunkId]], list[PackRecord], NodeKeys]


def _make_tree(root: Path, rnd: random.Random) -> dict[str, bytes]:
    """≥ 1,000 files: empty, small, duplicated across files, and one over 64 MiB."""
    digests: dict[str, bytes] = {}
    earlier: list[bytes] = []
    for i in range(1_100):
        sub = root / f"d{i % 17}" / f"e{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        if i % 11 == 0:
            data = b""
        elif i % 13 == 0 and earlier:
            data = rnd.choice(earlier)
        elif i % 2:
            data = rnd.randbytes(rnd.randint(1, 40_000))
        else:
            data = (
                " ".join(
                    rnd.choice(["lorem", "ipsum", "dolor", "sit"])
                    for _ in range(rnd.randint(1, 9000))
                )
            ).encode()
        if len(data) > 10_000 and len(earlier) < 50:
            earlier.append(data)
        (sub / f"f{i}").write_bytes(data)
        digests[f"d{i % 17}/e{i % 5}/f{i}"] = hashlib.blake2b(data).digest()
    big = random.Random(7).randbytes(65 << 20)
    (root / "big.bin").write_bytes(big + big[: 1 << 20])  # > 64 MiB, with internal repetition
    digests["big.bin"] = hashlib.blake2b(big + big[: 1 << 20]).digest()
    return digests


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> Backed:
    base = tmp_path_factory.mktemp("roundtrip")
    digests = _make_tree(base / "src", random.Random(1))
    keys = NodeKeys.derive(bytes(range(32)))
    records: list[PackRecord] = []
    files: dict[str, list[ChunkId]] = {}

    async def run() -> None:
        stores = [DirectoryShareStore(base / "holders" / f"h{i}") for i in range(N)]
        packer = Packer(
            keys,
            ErasureCode(K, N),
            stores,
            asyncio.get_running_loop(),
            random_bytes=os.urandom,
            on_pack=records.append,
            target_size=4 << 20,
        )

        def walk() -> None:
            for rel in digests:
                with (base / "src" / rel).open("rb", buffering=0) as f:
                    files[rel] = packer.add_stream(f)
            packer.flush()

        try:
            await asyncio.to_thread(walk)
        finally:
            packer.close()
        stats = packer.stats
        assert stats.new_chunks < stats.chunks  # duplicates across files were not stored twice
        assert stats.packs == len(records) > 3

    asyncio.run(run())
    return base, digests, files, records, keys


@pytest.fixture
def pool(backed_up: Backed, tmp_path: Path) -> Backed:
    """A private copy of the holders' directories, so each test may damage its own."""
    base, digests, files, records, keys = backed_up
    shutil.copytree(base / "holders", tmp_path / "holders")
    return tmp_path, digests, files, records, keys


def _shard_path(base: Path, record: PackRecord, index: int) -> Path:
    name = ShardKey(record.pack_id, index).text
    return base / "holders" / f"h{index}" / "shards" / name[:2] / name


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x04
    path.write_bytes(bytes(raw))


async def _restore(
    base: Path, files: dict[str, list[ChunkId]], records: list[PackRecord], keys: NodeKeys
) -> tuple[dict[str, bytes], list[FetchReport]]:
    stores = [DirectoryShareStore(base / "holders" / f"h{i}") for i in range(N)]
    chunks: dict[bytes, bytes] = {}
    reports = []
    for record in records:
        report = FetchReport()
        pack = await fetch_pack(record, stores, report)
        reports.append(report)
        for entry, data in read_blobs(keys, pack, record):
            chunks[bytes(entry.ident)] = data
    restored = {
        rel: hashlib.blake2b(b"".join(chunks[bytes(i)] for i in ids)).digest()
        for rel, ids in files.items()
    }
    return restored, reports


@pytest.mark.slow
async def test_tree_survives_losing_n_minus_k_shards_of_every_pack(pool: Backed) -> None:
    base, digests, files, records, keys = pool
    rnd = random.Random(3)
    for record in records:
        for index in rnd.sample(range(N), N - K):
            _shard_path(base, record, index).unlink()
    restored, reports = await _restore(base, files, records, keys)
    assert restored == digests
    assert all(len(r.used) == K for r in reports)
    assert any(r.used != [0, 1, 2] for r in reports)  # some packs really were decoded


@pytest.mark.slow
async def test_flipped_bit_is_caught_by_the_merkle_root_and_rebuilt_from_others(
    pool: Backed,
) -> None:
    base, digests, files, records, keys = pool
    for record in records:
        _shard_path(base, record, 4).unlink()  # n - k - 1 lost ...
        _flip(_shard_path(base, record, 1), 100 + 4096 * 2 + 5)  # ... and one more lies
    restored, reports = await _restore(base, files, records, keys)
    assert restored == digests
    for report in reports:
        assert report.used == [0, 2, 3]
        assert "Merkle root" in report.failed[1]


@pytest.mark.slow
async def test_too_few_good_shards_is_an_error_naming_the_pack(pool: Backed) -> None:
    base, _, files, records, keys = pool
    victim = records[len(records) // 2]
    _shard_path(base, victim, 0).unlink()
    _shard_path(base, victim, 3).unlink()
    _flip(_shard_path(base, victim, 4), 100)
    with pytest.raises(NotEnoughShares) as info:
        await _restore(base, files, records, keys)
    assert info.value.pack == victim.pack_id.hex()
    assert victim.pack_id.hex() in str(info.value)
    assert "Merkle root" in str(info.value)
    assert (info.value.have, info.value.need) == (2, K)
