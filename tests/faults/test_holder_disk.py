"""A holder's disk fills up, or turns read-only, while the pool runs (the fault matrix).

Each test makes its own pool of real daemon processes (the owner and four friends,
2-of-3, 2 MiB shards) and gives one friend a small tmpfs where its shards live:

- it fills in the middle of a put: the tmpfs is mounted on ``held/<owner-id>``, so the
  free space the holder (and, through it, the owner) measures on ``held/`` is not the
  space its shards land in, as when something else on the friend's machine eats the
  disk between the check and the write. The put fails, its temporary file goes, the
  pack counts as stored on the other holders and its missing shard is repair work;
- it is nearly full from the start (the tmpfs on ``held/``, seen as it is): the owner
  places shards elsewhere and the holder refuses, before a byte is written, a put that
  would take it below its free-space floor, two at once included;
- it turns read-only (``mount -o remount,ro``) between backups: puts, manifests and
  deletes are refused with a clear error, the daemon keeps serving reads (and starts
  again), and once the disk is writable again the next backup and check are clean.

Every time: the backup completes, the snapshot restores byte for byte, ``check
--read-data`` finds nothing missing or damaged, no command or daemon prints a
traceback, and no half-written shard lies under a final name.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peerbak.adapters.link import PeerLink
from peerbak.adapters.transport import private_key
from peerbak.core import crypto
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import BlobType, NodeKeys
from peerbak.core.errors import StorageError
from peerbak.core.ids import NodeId, ShardKey
from peerbak.core.pack import PackWriter, Shard, make_shards, prepare_blob
from peerbak.core.pool import ssh_public_key
from peerbak.tools.localpool import LocalNode, set_config
from peerbak.tools.sample import describe, make_tree

pytestmark = pytest.mark.slow

NAMES = ["owner", "f1", "f2", "f3", "f4"]
#: 2-of-3 over four friends: with one holder out, three are left, k + 1.
SHARDS = ("--shards", "2/3")
#: 4 MiB packs: shards of about 2 MiB, so a few fill a small tmpfs.
PACK = ("--pack-size", "4MiB")
SHARD_SIZE = 2 << 20
DEADLINE = 30.0

Mount = Callable[[Path, str], None]


# --- mounts and pools -------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _unmount(where: Path) -> None:
    if _run("umount", str(where)).returncode != 0:
        _run("umount", "-l", str(where))  # still busy: detach it now, freed when let go


@pytest.fixture
def mount() -> Iterator[Mount]:
    """``mount(dir, size)``: a tmpfs of ``size`` on ``dir``, unmounted at teardown (after
    the pool's daemons are gone: the pool fixture asks for this one first)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def do(where: Path, size: str) -> None:
        where.mkdir(parents=True, exist_ok=True)
        out = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where))
        if out.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
        mounted.append(where)

    yield do
    for where in reversed(mounted):
        _unmount(where)


def _remount(where: Path, mode: str) -> None:
    out = _run("mount", "-o", f"remount,{mode}", str(where))
    assert out.returncode == 0, out.stderr


Setup = Callable[[list[LocalNode]], None]


@pytest.fixture
def make_pool(mount: Mount, tmp_path: Path) -> Iterator[Callable[[Setup], list[LocalNode]]]:
    """``make_pool(setup)``: the owner and four friends, initialised, ``setup(nodes)``
    (config edits, mounts), started, and joined through the owner's invites.

    The owner's daemon runs without maintenance: a round that challenged or repaired
    in the middle of a test would change what the ledger counts."""
    made: list[LocalNode] = []

    def do(setup: Setup) -> list[LocalNode]:
        nodes = [LocalNode(tmp_path, name) for name in NAMES]
        made.extend(nodes)
        for node in nodes:
            node.init()
        set_config(nodes[0].home, "maintenance", "enabled", "false")
        setup(nodes)
        for node in nodes:
            node.start()
        for joiner in nodes[1:]:
            joiner.cli("join", nodes[0].cli("invite")["token"])
        return nodes

    try:
        yield do
    finally:
        for node in made:
            node.kill()
    for node in made:  # a daemon's traceback is a bug whatever the test asserted
        assert "Traceback" not in node.log.read_text(), node.log.read_text()


def _configure(node: LocalNode, **values: str) -> None:
    """Set ``key = value`` in the node's config.toml (each key appears once there)."""
    config = node.home / "config.toml"
    text = config.read_text()
    for key, value in values.items():
        quoted = value if value in ("true", "false") else f'"{value}"'
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {quoted}", text)
        assert count == 1, f"no {key} in {config}"
    config.write_text(text)


# --- helpers ------------------------------------------------------------------------------


def _cli(node: LocalNode, *args: str) -> subprocess.CompletedProcess[str]:
    out: subprocess.CompletedProcess[str] = node.cli(*args, check=False, timeout=120)
    assert "Traceback" not in out.stderr, out.stderr
    return out


def _last(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr}"
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def _backup(owner: LocalNode, src: Path) -> tuple[dict[str, Any], str]:
    """The summary of a backup that must succeed, and its stderr (the warnings)."""
    out = _cli(owner, "backup", *SHARDS, *PACK, str(src))
    return _last(out), out.stderr


def _restores(owner: LocalNode, snapshot: str, src: Path, target: Path) -> dict[str, Any]:
    summary = _last(_cli(owner, "restore", snapshot, "--target", str(target)))
    assert describe(target / str(src).lstrip("/")) == describe(src)
    return summary


def _check(owner: LocalNode) -> dict[str, Any]:
    """``check --read-data``: every shard read whole against its recorded root."""
    report = _last(_cli(owner, "check", "--read-data"))
    assert report["ok"], report
    assert report["shards_missing"] == 0, report
    assert report["shards_damaged"] == 0, report
    assert report["packs_unreadable"] == 0, report
    assert report["members_down"] == {}, report
    return report


def _held(friend: LocalNode, owner: LocalNode) -> Path:
    return friend.home / "held" / owner.keys.node_id.hex()


def _ledger(owner: LocalNode) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{owner.home / 'ledger.sqlite'}?mode=ro", uri=True)


def _stored_on(owner: LocalNode, friend: LocalNode) -> set[str]:
    """The shards the owner's ledger says ``friend`` acknowledged, as file names."""
    db = _ledger(owner)
    try:
        rows = db.execute(
            "SELECT s.pack_id, s.idx FROM shards s JOIN packs p ON p.pack_id = s.pack_id "
            "WHERE s.holder = ? AND s.stored = 1 AND p.state = 'stored'",
            (bytes(friend.keys.node_id),),
        ).fetchall()
    finally:
        db.close()
    return {f"{bytes(pack).hex()}.{idx}" for pack, idx in rows}


def _shard_counts(owner: LocalNode) -> dict[str, tuple[int, int, int]]:
    """Stored pack → (stored shards, k, n)."""
    db = _ledger(owner)
    try:
        rows = db.execute(
            "SELECT p.pack_id, COUNT(s.idx), p.k, p.n FROM packs p LEFT JOIN shards s "
            "ON s.pack_id = p.pack_id AND s.stored = 1 WHERE p.state = 'stored' "
            "GROUP BY p.pack_id"
        ).fetchall()
    finally:
        db.close()
    return {bytes(pack).hex(): (count, k, n) for pack, count, k, n in rows}


def _sealed(owner: LocalNode) -> int:
    db = _ledger(owner)
    try:
        (count,) = db.execute("SELECT COUNT(*) FROM packs WHERE state = 'sealed'").fetchone()
    finally:
        db.close()
    return int(count)


def _holder_files_check_out(store: Path, expected: set[str]) -> None:
    """Nothing half-written anywhere: no temporary file left, nothing but the store's
    own names, and every shard under its final name whole (its Merkle root) and one the
    owner's ledger counts on this holder."""
    assert sorted(p.name for p in (store / "incoming").iterdir()) == []
    assert {p.name for p in store.iterdir()} <= {"shards", "incoming", "trash", "manifest"}
    found = set()
    for path in (store / "shards").rglob("*"):
        if path.is_dir():
            continue
        shard = Shard.from_bytes(path.read_bytes())  # raises on a short or damaged shard
        assert path.name == ShardKey(shard.header.pack_id, shard.header.index).text
        found.add(path.name)
    assert found == expected


def _tree(root: Path, megabytes: int, seed: int) -> Path:
    make_tree(root, megabytes << 20, files=40, seed=seed)
    return root


def _wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {DEADLINE:.0f} s"
        time.sleep(0.05)  # polling a state that must come, with a deadline


def _fill(path: Path) -> int:
    """Write zeros to ``path`` until the disk refuses: the errno it gave."""
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(b"\0" * (64 << 10))
            except OSError as exc:
                return exc.errno or 0


def _shards(keys: NodeKeys, size: int) -> list[Shard]:
    """The 2-of-3 shards of one real pack of ``size`` random bytes (each about half)."""
    rnd = random.Random(size)
    writer = PackWriter(keys.data_key, size + (1 << 20))
    data = rnd.randbytes(size)
    ident = crypto.chunk_id(keys.chunk_id_key, data)
    writer.add(prepare_blob(BlobType.DATA, ident, data, None), rnd.randbytes(24))
    pack_id, view, entries = writer.seal(rnd.randbytes(24))
    _, shards = make_shards(ErasureCode(2, 3), pack_id, view, entries)
    return [Shard(s.header, bytes(s.data)) for s in shards]


def _alive(node: LocalNode) -> bool:
    return node.proc is not None and node.proc.poll() is None


# --- 1. the disk fills in the middle of a put ---------------------------------------------


def test_a_holder_disk_that_fills_mid_put_loses_nothing(
    make_pool: Callable[[Setup], list[LocalNode]], mount: Mount, tmp_path: Path
) -> None:
    def setup(nodes: list[LocalNode]) -> None:
        # 3 MiB take one 2 MiB shard, not two: with ~10 data packs, each placed on three
        # of the four friends, this one is given a second (and fails it) all but surely.
        _configure(nodes[1], reserve_free="0")
        mount(_held(nodes[1], nodes[0]), "3m")

    pool = make_pool(setup)
    owner, full = pool[0], pool[1]
    store = _held(full, owner)
    src = _tree(tmp_path / "src", 40, seed=7)

    t0 = time.monotonic()
    summary, warnings = _backup(owner, src)
    print(f"\nbackup with a holder filling up: {time.monotonic() - t0:.2f} s, {summary}")
    print(warnings)

    # The fault happened: a put ran out of room on its way, and said so in one line.
    refused = [line for line in warnings.splitlines() if f" to {full.name}: " in line]
    assert refused, warnings
    assert any("the disk is full (No space left on device)" in line for line in refused)
    assert shutil.disk_usage(store).free < SHARD_SIZE  # no other shard would have fit
    assert summary["members_up"] == len(pool) - 2  # the full one, left out after it failed
    assert summary["manifest_copies"] == len(pool) - 2

    # Nothing half-written, and the ledger counts exactly what the holder has.
    on_full = _stored_on(owner, full)
    _holder_files_check_out(store, on_full)
    counts = _shard_counts(owner)
    assert all(stored >= k for stored, k, _ in counts.values()), counts
    short = [pack for pack, (stored, _, n) in counts.items() if stored < n]
    assert short, counts  # the pack whose put failed: stored on k, its shard is repair work
    print(f"packs short of a shard (repair work): {len(short)} of {len(counts)}")

    report = _check(owner)
    assert report["packs_read"] == len(counts)
    _restores(owner, summary["snapshot_id"], src, tmp_path / "restored")

    # Full to the last byte: the next backup's puts there fail the same way, and so does
    # a manifest; neither leaves anything half-written.
    filler = store / "filler"
    assert _fill(filler) == errno.ENOSPC
    again, warnings = _backup(owner, src)
    refused = [line for line in warnings.splitlines() if f" to {full.name}: " in line]
    assert refused, warnings
    assert all(line.endswith("the disk is full (No space left on device)") for line in refused)
    assert again["manifest_copies"] == len(pool) - 2
    # (A backup always adds a little metadata, so its shards, not its manifest, are what
    # reaches the full disk: the manifest is given to it directly.)
    newest = (_held(pool[2], owner) / "manifest").read_bytes()
    with pytest.raises(StorageError) as refusal:
        asyncio.run(_put_manifest(owner, full, newest))
    assert str(refusal.value) == (
        "peer refused (storage): cannot store the owner's manifest: the disk is full "
        "(No space left on device)"
    )
    filler.unlink()
    _holder_files_check_out(store, _stored_on(owner, full))
    _restores(owner, again["snapshot_id"], src, tmp_path / "restored-again")
    assert _alive(full)


# --- 2. nearly full from the start: refused up front ---------------------------------------


def _link(owner: LocalNode, holder: LocalNode) -> PeerLink:
    return PeerLink(
        NodeId(bytes(holder.keys.node_id)),
        [f"127.0.0.1:{holder.status()['port']}"],
        ssh_public_key(holder.keys),
        private_key(owner.keys.ssh_seed),
        timeout=30,
    )


async def _put_manifest(owner: LocalNode, holder: LocalNode, blob: bytes) -> None:
    link = _link(owner, holder)
    try:
        await link.put_manifest(blob)
    finally:
        await link.close()


async def _put_both(owner: LocalNode, holder: LocalNode, shards: list[Shard]) -> list[str]:
    """Put ``shards`` to ``holder`` at the same time, each over a link of its own that
    is already logged in; "stored" or the error of each."""
    links = [_link(owner, holder) for _ in shards]

    async def put(link: PeerLink, shard: Shard) -> str:
        try:
            await link.put(ShardKey(shard.header.pack_id, shard.header.index), shard)
        except StorageError as exc:
            return str(exc)
        return "stored"

    try:
        await asyncio.gather(*(link.space() for link in links))
        puts = (put(link, shard) for link, shard in zip(links, shards, strict=True))
        return list(await asyncio.gather(*puts))
    finally:
        for link in links:
            await link.close()


def test_a_nearly_full_holder_is_refused_up_front(
    make_pool: Callable[[Setup], list[LocalNode]], mount: Mount, tmp_path: Path
) -> None:
    """The holder's floor and the owner's placement both see the small disk: a put that
    would cross the floor is refused before a byte is written, also when two arrive at
    once (each fits alone, not both), and a backup places its shards elsewhere."""

    def setup(nodes: list[LocalNode]) -> None:
        _configure(nodes[2], reserve_free="6MiB")
        mount(nodes[2].home / "held", "8m")

    pool = make_pool(setup)
    owner, small = pool[0], pool[2]
    held = small.home / "held"
    floor = 6 << 20
    store = _held(small, owner)

    # Two shards of 70 % of what is left above the floor, put at the same time.
    spare = shutil.disk_usage(held).free - floor
    assert spare > 1 << 20
    shards = _shards(owner.keys, spare * 14 // 10)
    assert shards[0].header.size < spare < shards[0].header.size + shards[1].header.size
    outcomes = asyncio.run(_put_both(owner, small, shards[:2]))
    print(f"\ntwo puts at once with {spare} bytes above the floor: {outcomes}")
    assert sorted(outcomes)[-1] == "stored", outcomes
    assert re.fullmatch(
        r"peer refused \(no-space\): shard \S+: storing \d+ bytes would leave less than "
        r"the 6291456 bytes this holder keeps free",
        sorted(outcomes)[0],
    ), outcomes
    assert shutil.disk_usage(held).free >= floor
    extra = {ShardKey(s.header.pack_id, s.header.index).text for s in shards[:2]}
    extra &= {p.name for p in (store / "shards").rglob("*.*")}
    assert len(extra) == 1
    _holder_files_check_out(store, extra)

    src = _tree(tmp_path / "src", 12, seed=8)
    t0 = time.monotonic()
    summary, warnings = _backup(owner, src)
    print(f"backup with a nearly full holder: {time.monotonic() - t0:.2f} s, {summary}")
    print(warnings)
    for line in warnings.splitlines():  # any put it got was refused up front, clearly
        assert f" to {small.name}: " in line, line
        assert "peer refused (no-space)" in line, line
    on_small = _stored_on(owner, small)
    counts = _shard_counts(owner)
    assert all(stored >= k for stored, k, _ in counts.values()), counts
    placed = sum(stored for stored, _, _ in counts.values())
    print(f"shards on the nearly full holder: {len(on_small)} of {placed}")
    assert shutil.disk_usage(held).free >= floor  # the floor held
    _holder_files_check_out(store, on_small | extra)
    assert _alive(small)
    _check(owner)
    _restores(owner, summary["snapshot_id"], src, tmp_path / "restored")


# --- 3. the disk turns read-only -------------------------------------------------------------


def test_a_holder_disk_turned_read_only_refuses_clearly_and_recovers(
    make_pool: Callable[[Setup], list[LocalNode]], mount: Mount, tmp_path: Path
) -> None:
    def setup(nodes: list[LocalNode]) -> None:
        _configure(nodes[1], reserve_free="0")
        mount(nodes[1].home / "held", "64m")

    pool = make_pool(setup)
    owner, ro = pool[0], pool[1]
    held = ro.home / "held"
    store = _held(ro, owner)
    src = _tree(tmp_path / "src", 24, seed=9)  # 6+ packs: it holds some, all but surely
    first, _ = _backup(owner, src)
    assert _stored_on(owner, ro)  # it holds shards of the first snapshot

    # A shard the owner deleted 60 days ago: due for the purge, which needs a write.
    copied = next((store / "shards").rglob("*.*"))
    aged = store / "trash" / f"{copied.name}.0"
    shutil.copyfile(copied, aged)
    old = time.time() - 60 * 86400
    os.utime(aged, (old, old))

    _remount(held, "ro")
    (src / "new.bin").write_bytes(random.Random(1).randbytes(6 << 20))
    t0 = time.monotonic()
    second, warnings = _backup(owner, src)
    print(f"\nbackup with a read-only holder: {time.monotonic() - t0:.2f} s, {second}")
    print(warnings)
    refused = [line for line in warnings.splitlines() if f" to {ro.name}: " in line]
    assert refused, warnings
    assert all(line.endswith("Read-only file system") for line in refused), refused
    assert _alive(ro)
    _restores(owner, second["snapshot_id"], src, tmp_path / "restored")  # its reads still work

    # Its own node answers (status counts what it holds without writing anything) ...
    status = _last(_cli(ro, "status"))
    assert status["daemon_error"] == ""
    # ... and it starts again on the read-only disk, saying why its trash stays.
    assert ro.stop() == 0
    ro.start()
    _wait_for("told", lambda: "trash not purged this time" in ro.log.read_text())
    line = next(x for x in ro.log.read_text().splitlines() if "trash not purged" in x)
    assert line.endswith("Read-only file system"), line
    assert aged.exists()

    # Forgetting the first snapshot: its shards there cannot go to the trash yet.
    forget = _cli(owner, "forget", "--keep-last", "1", "--prune")
    pruned = _last(forget)["prune"]
    print(f"prune with a read-only holder: {pruned}\n{forget.stderr}")
    assert _alive(ro)
    _check(owner)

    _remount(held, "rw")
    third, warnings = _backup(owner, src)
    assert ro.keys.node_id.short not in warnings, warnings
    assert third["members_up"] == len(pool) - 1
    assert third["manifest_copies"] == len(pool) - 1
    assert _sealed(owner) == 0  # what the prune could not delete there is deleted now
    _holder_files_check_out(store, _stored_on(owner, ro))
    _check(owner)
    _restores(owner, third["snapshot_id"], src, tmp_path / "restored-after")
    # The next purge (at start here; hourly in a long run) frees the aged shard.
    assert ro.stop() == 0
    ro.start()
    _wait_for("purged", lambda: not aged.exists())
    assert first["snapshot_id"] not in {s["id"] for s in _snapshot_rows(owner)}


def _snapshot_rows(owner: LocalNode) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = owner.cli("snapshots")
    return rows
