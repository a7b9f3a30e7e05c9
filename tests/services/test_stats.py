"""``stats`` against the in-process pool: the node's view and a snapshot's view measure
the same things the same way, the members' holdings add up to what is stored, and
compression and redundancy are told apart."""

from __future__ import annotations

import random
from pathlib import Path

from peerbak.services.backup import run_backup
from peerbak.services.repository import Repository
from peerbak.services.stats import run_stats
from tests.services.kit import write


def _text(path: Path, size: int) -> Path:
    """``size`` bytes of text that compresses well but does not deduplicate."""
    rnd = random.Random(size)
    words = [f"word{i}" for i in range(400)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(rnd.choice(words) for _ in range(size // 7))[:size])
    return path


async def test_one_snapshot_reads_the_same_from_the_node_and_from_itself(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "photo.jpg", 1_500_000, seed=1)
    _text(src / "notes" / "diary.txt", 1_500_000)
    await run_backup(repo, [src], code=(1, 3))
    node, one = await run_stats(repo, None), await run_stats(repo, "latest")
    for key in ("files", "logical_bytes", "deduplicated_bytes", "packed_bytes"):
        assert node[key] == one[key], key
    assert node["logical_bytes"] == 3_000_000
    # trees count too, each once: a little more than the files' bytes, never less
    assert 3_000_000 < node["deduplicated_bytes"] < 3_000_000 + 4096
    # the index's packs are the node's alone: a snapshot's packs are a part of them
    assert one["stored_bytes"] < node["stored_bytes"]
    assert sum(m["bytes"] for m in node["members"]) == node["stored_bytes"]
    # the text halves at least, the photo not at all: between the two
    assert 1.3 < node["compression_ratio"] < 4
    # a 1-of-3 code stores each pack three times (and a 100-byte header a shard)
    assert 2.99 < one["redundancy"] < 3.05
    assert node["packed_bytes"] < node["pack_bytes"] < node["stored_bytes"]


async def test_a_second_snapshot_adds_only_what_is_new(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", 800_000, seed=2)
    await run_backup(repo, [src], code=(2, 4))
    first = await run_stats(repo, None)
    write(src / "b.bin", 300_000, seed=3)
    await run_backup(repo, [src], code=(2, 4))
    node, latest = await run_stats(repo, None), await run_stats(repo, "latest")
    assert node["snapshots"] == 2
    assert node["logical_bytes"] == 800_000 + 1_100_000
    # a.bin is stored once for both snapshots; b.bin and the new trees are new
    grew = node["deduplicated_bytes"] - first["deduplicated_bytes"]
    assert 300_000 < grew < 300_000 + 4096
    assert latest["deduplicated_bytes"] <= node["deduplicated_bytes"]
    assert 1.9 < latest["redundancy"] < 2.05
    assert [r["data_added"] for r in node["added_by_snapshot"]][1] <= grew
