"""``peerbak benchmark``: speed and memory as numbers, measured the same way every time.

Datasets are generated from a seed with bounded memory (1 MiB at a time), so the
peak RSS reported is the data path's, not the generator's, and the same seed gives
the same bytes from run to run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from peerbak.adapters.link import PeerLink
from peerbak.adapters.store import DirectoryShareStore
from peerbak.adapters.transport import private_key
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import NodeKeys
from peerbak.core.ids import NodeId, PackId, ShardKey
from peerbak.core.pack import PackRecord, Shard, build_shard_header
from peerbak.core.pool import ssh_public_key
from peerbak.services.fetch import fetch_pack, read_blobs
from peerbak.services.packer import Packer
from peerbak.tools.localpool import LocalNode, make_pool

MIB: Final = 1 << 20
KINDS: Final = ("incompressible", "text", "mixed")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# --- codec ---------------------------------------------------------------------------------


def bench_codec(
    pairs: list[tuple[int, int]], size: int, seconds: float = 1.0
) -> list[dict[str, Any]]:
    """Encode, decode with data shards missing, and one-shard rebuild, on one core."""
    pack = np.random.default_rng(1).bytes(size)
    return [_codec_row(ErasureCode(k, n), pack, seconds) for k, n in pairs]


def _codec_row(code: ErasureCode, pack: bytes, seconds: float) -> dict[str, Any]:
    k, n, size = code.k, code.n, len(pack)
    shards = [bytes(s) for s in code.encode(pack)]
    lost = min(n - k, k)  # data shards missing: the worst case for decoding
    data = {i: shards[i] for i in range(k)}
    survivors = {i: shards[i] for i in range(lost, lost + k)}
    others = {i: shards[i] for i in range(1, k + 1)}
    return {
        "k": k,
        "n": n,
        "size_mib": size / MIB,
        "encode_mb_s": _rate(lambda: code.encode(pack), size, seconds),
        "decode_all_data_mb_s": _rate(lambda: code.decode(data, size), size, seconds),
        "data_shards_missing": lost,
        "decode_missing_mb_s": _rate(lambda: code.decode(survivors, size), size, seconds),
        "rebuild_one_mb_s": _rate(lambda: code.rebuild(others, [0]), len(shards[0]), seconds),
    }


def _rate(fn: Callable[[], object], nbytes: int, seconds: float) -> float:
    fn()  # warm tables and caches
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and runs >= 3:
            return round(runs * nbytes / elapsed / 1e6, 1)


# --- generated datasets ----------------------------------------------------------------------


class _Words:
    """Text-like bytes from a seeded vocabulary, vectorised: ~200 MB/s, compresses ≈ 3×."""

    def __init__(self, rng: np.random.Generator, alphabet: bytes, count: int = 5000) -> None:
        self.rng = rng
        lens = rng.integers(2, 11, count)
        letters = np.frombuffer(alphabet, dtype=np.uint8)
        words = [letters[rng.integers(0, len(letters), int(n))].tobytes() + b" " for n in lens]
        self.cat = np.frombuffer(b"".join(words), dtype=np.uint8)
        self.lens = np.array([len(w) for w in words], dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(self.lens)[:-1]))

    def make(self, n: int) -> bytes:
        idx = self.rng.integers(0, len(self.lens), n // 5 + 8)
        lens = self.lens[idx]
        ends = np.cumsum(lens)
        src = np.repeat(self.starts[idx] - (ends - lens), lens) + np.arange(int(ends[-1]))
        return self.cat[src[:n]].tobytes()


@dataclass
class Dataset:
    root: Path
    files: int
    size: int


def generate(root: Path, kind: str, size: int, seed: int = 20261125) -> Dataset:
    """A seeded tree of about ``size`` bytes, written 1 MiB at a time.

    incompressible: random files of 1–64 MiB. text: word soup files of 4 KiB–4 MiB.
    mixed (as ../shared/bench/mixed_tree.py): 45 % text, 15 % JSON-like, 30 % random,
    10 % duplicates of earlier random files, log-uniform sizes, plus one 80 MiB file
    when the tree is large enough.
    """
    rng = np.random.default_rng(seed)
    text = _Words(rng, b"abcdefghijklmnopqrstuvwxyz")
    jsonish = _Words(rng, b'0123456789.,:{}[]"idvw ')
    blobs: list[tuple[int, int]] = []  # (seed, size) of random files, for duplicates
    total = files = 0
    root.mkdir(parents=True, exist_ok=True)

    def write(path: Path, pieces: Iterator[bytes]) -> None:
        nonlocal total, files
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            for piece in pieces:
                f.write(piece)
                total += len(piece)
        files += 1

    def random_pieces(file_seed: int, n: int) -> Iterator[bytes]:
        r = np.random.default_rng(file_seed)
        for off in range(0, n, MIB):
            yield r.bytes(min(MIB, n - off))

    def text_pieces(gen: _Words, n: int) -> Iterator[bytes]:
        for off in range(0, n, MIB):
            yield gen.make(min(MIB, n - off))

    def logsize(lo: int, hi: int) -> int:
        return int(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    if kind == "mixed" and size >= 160 * MIB:
        write(root / "big.bin", random_pieces(int(rng.integers(1 << 62)), 80 * MIB))
    i = 0
    while total < size:
        path = root / f"d{i % 61:02d}" / f"s{(i // 61) % 23}"
        left = size - total
        if kind == "incompressible":
            n = min(left, logsize(MIB, 64 * MIB))
            write(path / f"f{i}.bin", random_pieces(int(rng.integers(1 << 62)), n))
        elif kind == "text":
            write(path / f"f{i}.txt", text_pieces(text, min(left, logsize(4096, 4 * MIB))))
        else:
            roll = rng.random()
            if roll < 0.55:
                write(path / f"f{i}.txt", text_pieces(text, min(left, logsize(100, 50_000))))
            elif roll < 0.70:
                write(path / f"f{i}.json", text_pieces(jsonish, min(left, logsize(50, 60_000))))
            elif roll < 0.90 or not blobs:
                n, s = min(left, logsize(500, 1_500_000)), int(rng.integers(1 << 62))
                write(path / f"f{i}.bin", random_pieces(s, n))
                if n > 20_000 and len(blobs) < 200:
                    blobs.append((s, n))
            else:
                s, n = blobs[int(rng.integers(len(blobs)))]
                write(path / f"f{i}.dup", random_pieces(s, n))
        i += 1
    return Dataset(root, files, total)


# --- the whole pipeline ----------------------------------------------------------------------


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


async def _pipeline(
    source: Path, work: Path, k: int, n: int, threads: int, durable: bool, holders_verify: bool
) -> dict[str, Any]:
    keys = NodeKeys.derive(bytes(range(32)))
    code = ErasureCode(k, n)
    stores = [
        DirectoryShareStore(work / f"holder{i}", durable=durable, verify_puts=holders_verify)
        for i in range(n)
    ]
    records: list[PackRecord] = []
    packer = Packer(
        keys,
        code,
        stores,
        asyncio.get_running_loop(),
        random_bytes=os.urandom,
        on_pack=records.append,
        threads=threads,
    )

    def run() -> int:
        count = 0
        for path in _walk(source):
            with path.open("rb", buffering=0) as f:
                packer.add_stream(f, size_hint=os.fstat(f.fileno()).st_size)
            count += 1
        packer.flush()
        return count

    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    try:
        files = await asyncio.to_thread(run)
    finally:
        packer.close()
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    stats = packer.stats
    backup = {
        "files": files,
        "bytes_in": stats.bytes_in,
        "seconds": round(wall, 3),
        "mb_s": round(stats.bytes_in / wall / 1e6, 1),
        "cores_used": round(cpu / wall, 2),
        "chunks": stats.chunks,
        "new_chunks": stats.new_chunks,
        "new_bytes": stats.new_bytes,
        "stored_bytes": stats.stored_bytes,
        "ratio_stored_to_input": round(stats.stored_bytes / max(1, stats.bytes_in), 3),
        "packs": stats.packs,
        "shard_bytes": stats.shard_bytes,
        "stage_seconds": {name: round(s, 3) for name, s in stats.stages.items()},
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }
    # Restore every pack with the first min(m, k) shards gone: the decoding path.
    lost = min(n - k, k)
    holders = [None] * lost + stores[lost:]
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    plain = await _restore_all(keys, records, holders)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    restore = {
        "shards_missing_per_pack": lost,
        "bytes_out": plain,
        "seconds": round(wall, 3),
        "mb_s": round(plain / wall / 1e6, 1),
        "cores_used": round(cpu / wall, 2),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }
    return {"backup": backup, "restore": restore}


async def _restore_all(
    keys: NodeKeys, records: list[PackRecord], holders: list[DirectoryShareStore | None]
) -> int:
    """Two packs at a time: one decrypting while the next is fetched and decoded."""
    gate = asyncio.Semaphore(2)

    def decrypt(pack: bytes, record: PackRecord) -> int:
        return sum(len(data) for _, data in read_blobs(keys, pack, record))

    async def one(record: PackRecord) -> int:
        async with gate:
            pack = await fetch_pack(record, holders)
            return await asyncio.to_thread(decrypt, pack, record)

    return sum(await asyncio.gather(*(one(r) for r in records)))


def bench_pipeline(
    kinds: list[str],
    size: int,
    *,
    k: int = 3,
    n: int = 5,
    threads: int = 2,
    durable: bool = True,
    holders_verify: bool = False,
    source: Path | None = None,
    workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """Generate each dataset, back it up into n local holder directories, restore it.

    The holders' own check of each shard they receive (its Merkle root, recomputed)
    runs on their machines in a pool; ``holders_verify`` adds it to these cores too.
    Restoring always verifies every shard, pack and chunk.
    """
    base = Path(tempfile.mkdtemp(prefix="peerbak-bench-", dir=workdir))
    rows = []
    try:
        for kind in ["source"] if source is not None else kinds:
            t0 = time.perf_counter()
            if source is None:
                data = generate(base / "data" / kind, kind, size)
            else:
                data = Dataset(source, sum(1 for _ in _walk(source)), 0)
            gen_seconds = time.perf_counter() - t0
            result = asyncio.run(
                _pipeline(data.root, base / "pool" / kind, k, n, threads, durable, holders_verify)
            )
            rows.append(
                {
                    "data": kind,
                    "k": k,
                    "n": n,
                    "fsync": durable,
                    "holders_verify": holders_verify,
                    "generate_seconds": round(gen_seconds, 2),
                    **result,
                }
            )
            shutil.rmtree(base / "pool" / kind)
            if source is None:
                shutil.rmtree(data.root)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


# --- transport --------------------------------------------------------------------------------


async def _puts(link: PeerLink, shards: list[Shard], streams: int) -> float:
    gate = asyncio.Semaphore(streams)

    async def one(shard: Shard) -> None:
        async with gate:
            await link.put(ShardKey(shard.header.pack_id, shard.header.index), shard)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(s) for s in shards))
    return time.perf_counter() - t0


async def _transport(
    holder: LocalNode, owner: LocalNode, size: int, streams: list[int]
) -> list[dict[str, Any]]:
    status = holder.status()
    keys = owner.keys
    link = PeerLink(
        NodeId.from_hex(status["node"]),
        status["addresses"],
        ssh_public_key(holder.keys),
        private_key(keys.ssh_seed),
        channels=max(streams),
        timeout=120,
    )
    rng = np.random.default_rng(7)
    shard_length = (16 << 20) // 3  # one shard of a 16 MiB pack, 3-of-5
    data = rng.bytes(shard_length)
    template = build_shard_header(PackId(bytes(32)), 0, 3, 5, 3 * shard_length, data)
    rows = []
    try:
        for count in streams:
            shards = [
                Shard(dataclasses.replace(template, pack_id=PackId(rng.bytes(32))), data)
                for _ in range(max(count, size // shard_length))
            ]
            seconds = await _puts(link, shards, count)
            moved = sum(s.header.size for s in shards)
            rows.append(
                {
                    "streams": count,
                    "bytes": moved,
                    "seconds": round(seconds, 3),
                    "mb_s": round(moved / seconds / 1e6, 1),
                    "cipher": link.cipher,
                }
            )
    finally:
        await link.close()
    return rows


def bench_transport(
    size: int, streams: list[int], workdir: Path | None = None
) -> list[dict[str, Any]]:
    """Shard puts from one local daemon's owner keys to another daemon over SSH on
    127.0.0.1: each put is verified (Merkle root) and fsynced by the holder."""
    base = Path(tempfile.mkdtemp(prefix="peerbak-bench-", dir=workdir))
    nodes: list[LocalNode] = []
    try:
        nodes = make_pool(base, ["holder", "owner"])
        return asyncio.run(_transport(nodes[0], nodes[1], size, streams))
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)
