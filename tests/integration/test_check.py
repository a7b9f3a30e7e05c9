"""`peerbak check` against a real pool: a clean pool checks out; a shard a friend lost
is named; a damaged shard is found by reading the data; n/m subsets on m days cover
every pack."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.nodes import Daemon, make_pool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    base = tmp_path_factory.mktemp("check")
    nodes = make_pool(base, ["owner", "f1", "f2", "f3"])
    try:
        source = base / "source"
        source.mkdir()
        for i in range(5):  # several data packs: 48 MiB that does not compress
            (source / f"photo-{i}.jpg").write_bytes(os.urandom(10 << 20))
        nodes[0].cli("backup", "--shards", "2/3", str(source))
        yield nodes  # type: ignore[misc]
    finally:
        for node in nodes:
            node.kill()


def _check(owner: Daemon, *args: str) -> tuple[int, dict[str, Any]]:
    import json

    out = owner.cli("check", *args, check=False)
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])


def _shard_files(node: Daemon, owner: Daemon) -> list[Path]:
    held = node.home / "held" / owner.keys.node_id.hex() / "shards"
    return sorted(p for p in held.rglob("*") if p.is_file())


def test_a_clean_pool_checks_out_and_subsets_cover_every_pack(pool: list[Daemon]) -> None:
    owner = pool[0]
    code, report = _check(owner, "--read-data")
    assert code == 0, report
    assert report["ok"]
    assert report["packs"] >= 4
    assert report["shards_expected"] == 3 * report["packs"]
    assert report["packs_read"] == report["packs"]
    seen: list[str] = []
    for day in range(1, 6):
        code, part = _check(owner, "--read-data-subset", f"{day}/5")
        assert code == 0
        seen += part["read"]
    assert sorted(seen) == sorted(set(seen))  # no pack read twice
    assert len(seen) == report["packs"]  # five days cover every pack


def test_a_lost_shard_is_named_and_a_damaged_one_is_found_by_reading(
    pool: list[Daemon],
) -> None:
    owner, f1, f2 = pool[0], pool[1], pool[2]
    lost = _shard_files(f1, owner)[0]
    kept = lost.read_bytes()
    damaged = _shard_files(f2, owner)[0]
    original = damaged.read_bytes()
    try:
        lost.unlink()
        code, report = _check(owner)
        assert code == 65
        assert report["shards_missing"] == 1
        assert any(lost.name[:12] in p and "f1" in p for p in report["problems"]), report
        lost.write_bytes(kept)  # both in one pack would leave too few for 2-of-3

        flipped = bytearray(original)
        flipped[200] ^= 0x01  # in the data, after the 100-byte header
        damaged.write_bytes(bytes(flipped))
        code, report = _check(owner, "--read-data")
        assert code == 65
        assert report["shards_damaged"] == 1
        assert report["packs_unreadable"] == 0  # the other shards still rebuild it
        assert any("damaged" in p and "f2" in p for p in report["problems"]), report
    finally:
        lost.write_bytes(kept)
        damaged.write_bytes(original)
    code, report = _check(owner, "--read-data")
    assert code == 0, report


def test_a_pack_lost_beyond_repair_costs_only_the_files_that_need_it(
    pool: list[Daemon], tmp_path: Path
) -> None:
    import shutil
    import sqlite3

    owner = pool[0]
    db = sqlite3.connect(f"file:{owner.home / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        (pack,) = db.execute(
            "SELECT pack_id FROM packs WHERE kind = 1 AND state = 'stored' ORDER BY pack_id"
        ).fetchone()
    finally:
        db.close()
    name = bytes(pack).hex()
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    moved: list[tuple[Path, Path]] = []
    for friend in pool[1:3]:  # two of its three shards: one short of 2-of-3
        for shard in _shard_files(friend, owner):
            if shard.name.startswith(name):
                keep = hidden / f"{friend.name}-{shard.name}"
                shutil.move(shard, keep)
                moved.append((keep, shard))
    try:
        target = tmp_path / "restored"
        out = owner.cli("restore", "latest", "--target", str(target), check=False)
        assert out.returncode == 69, out.stderr
        source = next(iter(p for p in (pool[0].home.parent / "source").iterdir()))
        restored_dir = target / source.parent.relative_to("/")
        whole = sorted(p.name for p in restored_dir.iterdir() if not p.name.endswith(".partial"))
        partial = sorted(p.name for p in restored_dir.iterdir() if p.name.endswith(".partial"))
        assert whole  # files that do not need the lost pack came back
        assert partial  # the ones that do are left incomplete, never under their name
        for file_name in whole:
            assert (restored_dir / file_name).read_bytes() == (
                source.parent / file_name
            ).read_bytes()
        assert not {p.removesuffix(".partial") for p in partial} & set(whole)
    finally:
        for keep, shard in moved:
            shutil.move(keep, shard)


def test_a_restore_drill_restores_samples_and_compares_them_with_the_disk(
    pool: list[Daemon],
) -> None:
    owner = pool[0]
    code, report = _check(owner, "--restore-drill", "3")
    assert code == 0, report
    drill = report["drill"]
    assert drill["files_in_snapshot"] == 5
    assert drill["files_sampled"] == drill["restored"] == drill["matched"] == 3

    photo = owner.home.parent / "source" / "photo-2.jpg"
    original = photo.read_bytes()
    stat = photo.stat()
    rotten = bytearray(original)
    rotten[12345] ^= 0x40
    try:  # the disk's copy rots, size and mtime unchanged: the drill tells them apart
        photo.write_bytes(bytes(rotten))
        os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        code, report = _check(owner, "--restore-drill", "5")
        assert code == 65
        assert report["drill"]["matched"] == 4
        assert any("photo-2.jpg" in p for p in report["drill"]["problems"])
    finally:
        photo.write_bytes(original)
        os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
