"""Retention and ransomware on a real pool (the owner and three friends, 2-of-3).

forget + prune leave the holders no unreferenced shard outside their trash, the trash
is freed only after the holders' own grace, and the kept snapshot restores. Then
malware with the owner's key deletes every shard and publishes an empty manifest:
the holders keep it all in their trash, and `undelete` brings the tree back.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbak.adapters.home import Home
from peerbak.adapters.store import DirectoryShareStore
from peerbak.core.ids import PackId, ShardKey
from peerbak.node.compose import open_repository
from peerbak.tools.localpool import set_config
from peerbak.tools.sample import describe, differences
from tests.integration.nodes import Daemon, backup_in_process, make_pool

pytestmark = pytest.mark.slow

DAY = 86400.0


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    base = tmp_path_factory.mktemp("retention")
    nodes: list[Daemon] = make_pool(base, ["owner", "f1", "f2", "f3"])  # type: ignore[assignment]
    try:
        owner = nodes[0]
        set_config(owner.home, "maintenance", "enabled", "false")
        owner.stop()
        owner.start()
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def _write(folder: Path, prefix: str, count: int, seed: int) -> None:
    rnd = random.Random(seed)
    for i in range(count):
        (folder / f"{prefix}-{i:02}.bin").write_bytes(rnd.randbytes(50_000 + i))


def _backup(owner: Daemon, source: Path, *args: str) -> str:
    out = owner.cli("backup", "--shards", "2/3", "--pack-size", "256KiB", *args, str(source))
    return str(out["snapshot_id"])


def _held(friend: Daemon, owner: Daemon) -> DirectoryShareStore:
    return DirectoryShareStore(friend.home / "held" / owner.keys.node_id.hex(), durable=False)


def _live(friend: Daemon, owner: Daemon) -> set[str]:
    root = friend.home / "held" / owner.keys.node_id.hex() / "shards"
    return {p.name for p in root.rglob("*") if p.is_file()}


def _trash(friend: Daemon, owner: Daemon) -> list[Path]:
    root = friend.home / "held" / owner.keys.node_id.hex() / "trash"
    return [p for p in root.iterdir() if not p.name.startswith("manifest.")]


def _expected(owner: Daemon) -> dict[bytes, set[str]]:
    import sqlite3

    db = sqlite3.connect(f"file:{owner.home / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        out: dict[bytes, set[str]] = {}
        for pack, idx, holder in db.execute(
            "SELECT s.pack_id, s.idx, s.holder FROM shards s JOIN packs p "
            "ON p.pack_id = s.pack_id WHERE p.state = 'stored' AND s.stored = 1"
        ):
            out.setdefault(bytes(holder), set()).add(f"{bytes(pack).hex()}.{idx}")
        return out
    finally:
        db.close()


def _restore_matches(owner: Daemon, source: Path, target: Path) -> None:
    owner.cli("restore", "latest", "--target", str(target))
    assert differences(source, target / str(source).lstrip("/")) == []


def test_forget_and_prune_leave_no_unreferenced_shard_and_the_kept_snapshot_restores(
    pool: list[Daemon], tmp_path: Path
) -> None:
    owner = pool[0]
    source = owner.home.parent / "source"
    source.mkdir()
    _write(source, "kept", 12, 1)
    rnd = random.Random(2)
    for i in range(12):  # three that go after each that stays: packs mostly unused
        for j in range(3):
            (source / f"kept-{i:02}-gone-{j}.bin").write_bytes(rnd.randbytes(50_000 + j))
    first = _backup(owner, source)
    for p in source.glob("*-gone-*"):
        p.unlink()
    _write(source, "new", 12, 3)
    second = _backup(owner, source)
    shutil.copytree(source, tmp_path / "second")  # what the second snapshot holds
    for p in list(source.glob("new-*"))[:6]:
        p.unlink()
    _write(source, "newer", 6, 4)
    third = _backup(owner, source)

    dry = owner.cli("forget", "--keep-last", "2", "--dry-run")
    assert [s["id"] for s in dry["snapshots"] if not s["kept"]] == [first]
    assert len(owner.cli("snapshots")) == 3  # a dry run changes nothing

    r = owner.cli("forget", "--keep-last", "2", "--prune")
    kept = [s for s in r["snapshots"] if s["kept"]]
    assert [s["id"] for s in kept] == [third, second]  # newest first
    assert all(s["reasons"] == ["last snapshot"] for s in kept)
    assert [s["id"] for s in owner.cli("snapshots")] == [second, third]
    pruned = r["prune"]
    assert pruned["packs_repacked"] > 0  # a fifth used: the kept files were copied out
    assert pruned["bytes_repacked"] >= 50_000
    assert pruned["packs_deleted"] == pruned["packs_unused"] + pruned["packs_repacked"]

    expected = _expected(owner)
    for friend in pool[1:]:  # live shards are exactly what the ledger references
        assert _live(friend, owner) == expected.get(bytes(friend.keys.node_id), set())
        assert _trash(friend, owner)  # the rest waits out the grace
        store = _held(friend, owner)
        assert store.purge_trash(time.time(), 30 * DAY) == (0, 0)  # refused early
        freed, _ = store.purge_trash(time.time() + 31 * DAY, 30 * DAY)
        assert freed > 0
        assert _trash(friend, owner) == []

    _restore_matches(owner, source, tmp_path / "restored")
    target = tmp_path / "restored-second"  # every kept snapshot restores
    owner.cli("restore", second, "--target", str(target))
    assert differences(tmp_path / "second", target / str(source).lstrip("/")) == []
    out = owner.cli("check", "--read-data", check=False)
    assert out.returncode == 0, out.stdout


async def test_malware_deleting_everything_is_undone_by_undelete(
    pool: list[Daemon], tmp_path: Path
) -> None:
    owner = pool[0]
    source = owner.home.parent / "source"
    before = {bytes(f.keys.node_id): _live(f, owner) for f in pool[1:]}
    assert all(before.values())

    # The malware has the owner's key and ledger: it deletes every shard it placed,
    # forgets every snapshot, and publishes an empty manifest over the good one.
    repo = await open_repository(Home.open(owner.home))
    async with repo:
        await repo.probe()
        async for page in repo.ledger.stored_pack_ids():
            for pack_id in page:
                found = await repo.ledger.pack(pack_id)
                assert found is not None
                for index, node in found[1].items():
                    await repo.members[node].link.delete(ShardKey(PackId(pack_id), index))
        ids = [s.id for s in await repo.snapshots()]
        await repo.ledger.remove_snapshots(ids)
        await repo.publish([], [])
    assert all(_live(f, owner) == set() for f in pool[1:])
    assert owner.cli("snapshots") == []
    for friend in pool[1:]:  # no message shortens the holder's grace
        assert _held(friend, owner).purge_trash(time.time(), 30 * DAY) == (0, 0)

    r = owner.cli("undelete")
    assert r["shards_restored"] == sum(len(v) for v in before.values())
    assert r["snapshots"] == 2  # both kept snapshots, from the manifest in the trash
    assert {bytes(f.keys.node_id): _live(f, owner) for f in pool[1:]} == before
    _restore_matches(owner, source, tmp_path / "restored")
    assert len(owner.cli("snapshots")) == 2


async def test_every_snapshot_of_a_day_of_hourly_backups_survives_ransomware(
    pool: list[Daemon], tmp_path: Path
) -> None:
    """Five good hourly backups (an injected clock), then the attack: the source is
    encrypted, the garbage backed up, and ``forget --keep-last 1 --prune`` run. Holders
    keep every replaced manifest, so ``undelete`` brings back all five."""
    owner = pool[0]
    source = tmp_path / "photos"
    source.mkdir()
    _write(source, "photo", 8, seed=50)
    morning = time.time() - 6 * 3600
    good: dict[str, dict[str, tuple[object, ...]]] = {}
    for hour in range(5):
        _write(source, f"hour{hour}", 2, seed=60 + hour)  # the day's new photos
        (source / "photo-00.bin").write_bytes(random.Random(hour).randbytes(40_000))
        summary = await backup_in_process(
            owner.home,
            [source],
            code=(2, 3),
            pack_size=256 << 10,
            clock=functools.partial(float, morning + hour * 3600),
        )
        good[summary["snapshot_id"]] = describe(source)
    times = {s["id"]: s["time"] for s in owner.cli("snapshots")}
    assert len({times[i] for i in good}) == 5  # an hour apart, as the clock said

    for path in source.iterdir():  # the ransomware
        path.write_bytes(random.Random(path.name).randbytes(path.stat().st_size))
    owner.cli("backup", "--shards", "2/3", "--pack-size", "256KiB", str(source))
    owner.cli("forget", "--keep-last", "1", "--prune")
    left = {s["id"] for s in owner.cli("snapshots")}
    assert not left & set(good)

    r = owner.cli("undelete")
    back = {s["id"] for s in owner.cli("snapshots")}
    assert set(good) <= back, r
    for snap, want in good.items():
        target = tmp_path / f"restored-{snap[:8]}"
        owner.cli("restore", snap, "--target", str(target))
        assert describe(target / str(source).lstrip("/")) == want


def test_two_backup_jobs_each_keep_their_last_snapshot_through_forget_and_prune(
    pool: list[Daemon], tmp_path: Path
) -> None:
    """restic's default grouping, through the command line of a real pool: an hourly
    photos job and a daily documents job; ``forget --keep-last 1 --prune`` keeps the
    last of each, filters and ids narrow what is considered."""
    owner = pool[0]
    photos, docs = tmp_path / "photos", tmp_path / "docs"
    photos.mkdir()
    docs.mkdir()
    _write(photos, "img", 3, 20)
    _write(docs, "doc", 2, 21)
    first_photos = _backup(owner, photos)
    last_docs = _backup(owner, docs)
    _write(photos, "img-more", 1, 22)
    last_photos = _backup(owner, photos)

    listed = owner.cli("snapshots", "--path", str(docs))
    assert [s["id"] for s in listed] == [last_docs]
    newest = owner.cli("snapshots", "--latest", "1", "--path", str(photos))
    assert [s["id"] for s in newest] == [last_photos]
    listing = owner.cli("ls", f"latest:{photos}", "--path", str(photos), check=False)
    rows = [json.loads(line) for line in listing.stdout.splitlines()]  # a row a line
    assert sorted(r["path"].rsplit("/", 1)[1] for r in rows if r["type"] == "file") == sorted(
        p.name for p in photos.iterdir()
    )
    whole = tmp_path / "photos-only"
    owner.cli("restore", "latest", "--path", str(photos), "--target", str(whole))
    assert not (whole / str(docs).lstrip("/")).exists()  # latest of photos, not of any
    assert describe(whole / str(photos).lstrip("/")) == describe(photos)

    only = owner.cli("forget", "--keep-last", "1", "--path", str(docs), "--dry-run")
    assert [s["id"] for s in only["snapshots"]] == [last_docs]  # photos not considered
    r = owner.cli("forget", "--keep-last", "1", "--prune")
    groups = {s["group"] for s in r["snapshots"] if s["id"] in (last_docs, last_photos)}
    assert len(groups) == 2
    after = {s["id"] for s in owner.cli("snapshots")}
    assert {last_photos, last_docs} <= after
    assert first_photos not in after
    for source, snap in ((photos, last_photos), (docs, last_docs)):
        target = tmp_path / f"restored-{source.name}"
        owner.cli("restore", snap, "--target", str(target))
        assert describe(target / str(source).lstrip("/")) == describe(source)

    gone = owner.cli("forget", last_docs[:8])
    assert [(s["id"], s["kept"]) for s in gone["snapshots"]] == [(last_docs, False)]
    assert last_docs not in {s["id"] for s in owner.cli("snapshots")}


def test_forget_groups_by_host_unless_told_otherwise_and_filters_by_host(
    pool: list[Daemon], tmp_path: Path
) -> None:
    """One folder backed up as two hosts (``backup --host``, as from a laptop and a
    desktop that share a synced folder): each host keeps its last snapshot by default;
    ``--group-by paths`` or ``--group-by ''`` makes them one group; ``--host`` narrows."""
    owner = pool[0]
    shared = tmp_path / "shared"
    shared.mkdir()
    _write(shared, "f", 2, 30)
    laptop_1 = _backup(owner, shared, "--host", "laptop")
    desktop = _backup(owner, shared, "--host", "desktop")
    _write(shared, "g", 1, 31)
    laptop_2 = _backup(owner, shared, "--host", "laptop")
    only = ("--path", str(shared))

    def kept(*args: str) -> set[str]:
        r = owner.cli("forget", "--keep-last", "1", *only, *args, "--dry-run")
        return {s["id"] for s in r["snapshots"] if s["kept"]}

    assert kept() == {laptop_2, desktop}
    assert kept("--group-by", "host") == {laptop_2, desktop}
    assert kept("--group-by", "paths") == {laptop_2}
    assert kept("--group-by", "") == {laptop_2}
    assert kept("--host", "desktop") == {desktop}
    listed = owner.cli("snapshots", "--host", "laptop", *only)
    assert [(s["id"], s["hostname"]) for s in listed] == [
        (laptop_1, "laptop"),
        (laptop_2, "laptop"),
    ]
    grouped = owner.cli("snapshots", "--group-by", "host", *only)
    assert [(g["group_key"]["hostname"], [x["id"] for x in g["snapshots"]]) for g in grouped] == [
        ("desktop", [desktop]),
        ("laptop", [laptop_1, laptop_2]),
    ]
    r = owner.cli("forget", "--keep-last", "1", "--host", "laptop", *only)
    assert [s["id"] for s in r["snapshots"] if not s["kept"]] == [laptop_1]
    assert {s["id"] for s in owner.cli("snapshots", *only)} == {laptop_2, desktop}
    target = tmp_path / "desktop-latest"
    owner.cli("restore", "latest", "--host", "desktop", *only, "--target", str(target))
    assert sorted(p.name for p in (target / str(shared).lstrip("/")).iterdir()) == [
        "f-00.bin",
        "f-01.bin",
    ]  # the desktop's snapshot, taken before g-00.bin was written
