"""Backups and restores on a real pool that misbehaves (protocol/snapshots.md §7).

One pool of six daemon processes (owner + 5 friends) serves the whole module. The
owner's backup is killed at each named crash point, a second backup runs into the
first's lock, a friend lies (corrupt shards, forged manifests) or hangs (SIGSTOP):
every time, what comes back is the exact tree, or a clear refusal, never wrong bytes.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from peerbak.adapters.link import PeerLink
from peerbak.adapters.transport import private_key
from peerbak.core import objects
from peerbak.core.errors import IntegrityError
from peerbak.core.ids import NodeId
from peerbak.core.objects import ManifestBody, Snapshot
from peerbak.core.pack import SHARD_HEADER_LEN
from peerbak.core.pool import ssh_public_key
from peerbak.services.repository import CRASH_ENV, CRASH_POINTS
from peerbak.tools.localpool import LocalNode
from peerbak.tools.sample import differences, make_tree
from tests.integration.nodes import make_pool

pytestmark = pytest.mark.slow

EX_INTEGRITY = 65
EX_TEMPFAIL = 75
#: Packs are sealed at 16 MiB and a chunk is at most 4 MiB: no pack exceeds 20 MiB.
PACK_MAX = 20 << 20
#: Incompressible bytes of the big tree: at least BIG_BYTES // PACK_MAX = 6 packs.
BIG_BYTES = 120 << 20
DEADLINE = 60.0


@dataclass
class Pool:
    base: Path
    owner: LocalNode
    friends: list[LocalNode]
    key_file: Path

    @property
    def nodes(self) -> list[LocalNode]:
        return [self.owner, *self.friends]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    base = tmp_path_factory.mktemp("backup-faults")
    nodes = make_pool(base, ["owner", "f1", "f2", "f3", "f4", "f5"])
    owner = nodes[0]
    key_file = base / "owner.key"
    key_file.write_text(owner.info["recovery_key"] + "\n")
    try:
        yield Pool(base, owner, nodes[1:], key_file)
    finally:
        for node in nodes:
            if node.proc is not None:
                os.kill(node.proc.pid, signal.SIGCONT)  # in case a test left it stopped
            node.kill()


@pytest.fixture(scope="module")
def big_tree(pool: Pool) -> Path:
    """≥ 6 packs of incompressible data, and a few hundred small files around it."""
    root = pool.base / "big"
    make_tree(root, BIG_BYTES + (8 << 20), files=200, seed=99, big=BIG_BYTES)
    return root


# --- helpers ------------------------------------------------------------------------------


def _peerbak(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peerbak", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _summary(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The summary line of a --json command that must have succeeded."""
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr}"
    for line in reversed(out.stdout.splitlines()):
        row: dict[str, Any] = json.loads(line)
        if row.get("message_type") in ("summary", None):
            return row
    raise AssertionError(f"no summary in {out.stdout!r}")


def _exit_error(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The last stderr line of a --json command that failed."""
    error: dict[str, Any] = json.loads(out.stderr.strip().splitlines()[-1])
    assert error["message_type"] == "exit_error"
    return error


def _backup(home: Path, src: Path, *extra: str) -> dict[str, Any]:
    return _summary(_peerbak(home, "backup", "--json", *extra, str(src)))


def _restore(home: Path, snapshot: str, target: Path) -> dict[str, Any]:
    return _summary(_peerbak(home, "restore", snapshot, "--target", str(target), "--json"))


def _restored(target: Path, src: Path) -> Path:
    return target / os.path.abspath(src).lstrip("/")


def _ledger(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{home / 'ledger.sqlite'}?mode=ro", uri=True)


def _address(node: LocalNode) -> str:
    address: str = node.status()["addresses"][0]
    return address


def _held(friend: LocalNode, owner: LocalNode) -> Path:
    return friend.home / "held" / owner.keys.node_id.hex()


def _fresh_home(pool: Pool, name: str) -> Path:
    home = pool.base / name
    assert not home.exists()
    return home


def _recover(pool: Pool, home: Path, through: LocalNode) -> subprocess.CompletedProcess[str]:
    return _peerbak(
        home,
        "recover",
        "--from",
        _address(through),
        "--key-file",
        str(pool.key_file),
        "--port",
        "0",
        "--listen",
        "127.0.0.1",
        "--no-lan",
        "--json",
    )


def _touch_up(src: Path) -> None:
    """A slightly different tree: one file grows, one is new."""
    victim = next(p for p in sorted(src.rglob("*")) if p.is_file() and not p.is_symlink())
    with victim.open("ab") as f:
        f.write(b"one more line\n")
    (src / "new file.txt").write_bytes(os.urandom(50_000))


# --- 1. crash safety ------------------------------------------------------------------------


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_backup_killed_at_any_point_loses_nothing_and_the_next_one_cleans_up(
    pool: Pool, point: str
) -> None:
    owner = pool.owner
    src = pool.base / f"crash-{point}"
    make_tree(src, 2 << 20, files=150, seed=CRASH_POINTS.index(point) + 1)

    crashed = _peerbak(owner.home, "backup", "--json", str(src), env={CRASH_ENV: point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    _touch_up(src)
    second = _backup(owner.home, src)
    if point in ("pack-sealed", "mid-upload", "uploaded-not-recorded"):
        assert second["reclaimed_packs"] >= 1  # the killed run's unfinished pack(s)
    else:
        assert second["reclaimed_packs"] == 0  # everything was stored before the kill

    with _ledger(owner.home) as db:
        sealed = db.execute("SELECT COUNT(*) FROM packs WHERE state = 'sealed'").fetchone()[0]
        short = db.execute(
            "SELECT hex(p.pack_id), p.k, COUNT(s.idx) FROM packs p "
            "LEFT JOIN shards s ON s.pack_id = p.pack_id AND s.stored = 1 "
            "WHERE p.state = 'stored' GROUP BY p.pack_id HAVING COUNT(s.idx) < p.k"
        ).fetchall()
    db.close()
    assert sealed == 0, "a sealed pack survived the next backup"
    assert short == [], "stored packs with fewer than k stored shards"

    target = pool.base / f"restore-{point}"
    restored = _restore(owner.home, "latest", target)
    assert restored["snapshot_id"] == second["snapshot_id"]
    assert differences(src, _restored(target, src)) == []


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_after_a_killed_backup_a_recovered_node_restores_the_next_snapshot(
    pool: Pool, point: str
) -> None:
    """Until the manifest, no crash may lose anything, including for recovery: the next
    manifest must reach every pack its snapshots use (through the index objects)."""
    owner = pool.owner
    src = pool.base / f"crash-recover-{point}"
    make_tree(src, 2 << 20, files=150, seed=10 + CRASH_POINTS.index(point))

    crashed = _peerbak(owner.home, "backup", "--json", str(src), env={CRASH_ENV: point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    _touch_up(src)
    second = _backup(owner.home, src)

    home = _fresh_home(pool, f"recovered-{point}")
    _summary(_recover(pool, home, pool.friends[0]))
    target = pool.base / f"restore-recovered-{point}"
    restored = _restore(home, second["snapshot_id"], target)
    assert restored["snapshot_id"] == second["snapshot_id"]
    assert differences(src, _restored(target, src)) == []


# --- 2. one writer --------------------------------------------------------------------------


def _wait_for_lock(lock: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until ``proc`` holds the backup lock: it writes its pid there once it has it."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            if lock.read_text().split()[:1] == [str(proc.pid)]:
                return
        except FileNotFoundError:
            pass
        assert proc.poll() is None, f"the backup ended ({proc.returncode}) before it was seen"
        assert time.monotonic() < deadline, "the backup never took its lock"
        time.sleep(0.005)  # polling for a state that must come, not a timing guess


def _locked_by_another(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def test_one_backup_at_a_time_and_a_killed_one_leaves_no_stale_lock(
    pool: Pool, big_tree: Path
) -> None:
    owner = pool.owner
    lock = owner.home / "run" / "backup.lock"
    command = ["backup", "--json", str(big_tree)]
    first = subprocess.Popen(
        [sys.executable, "-m", "peerbak", "--home", str(owner.home), *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_lock(lock, first)
        # Frozen with its lock held, it cannot finish before the second one tries.
        os.kill(first.pid, signal.SIGSTOP)
        assert _locked_by_another(lock)

        second = _peerbak(owner.home, "backup", "--json", str(big_tree))
        assert second.returncode == EX_TEMPFAIL, second.stderr
        error = _exit_error(second)
        assert error["code"] == EX_TEMPFAIL
        assert "a backup of this node is running" in error["message"]
    finally:
        first.kill()  # SIGKILL ends a stopped process too
        first.wait(30)
    assert first.returncode == -signal.SIGKILL

    assert not _locked_by_another(lock)
    _backup(owner.home, big_tree)
    with _ledger(owner.home) as db:
        sealed = db.execute("SELECT COUNT(*) FROM packs WHERE state = 'sealed'").fetchone()[0]
    db.close()
    assert sealed == 0


# --- 3. bad peers ---------------------------------------------------------------------------


def _flip_shard_data(friend: LocalNode, owner: LocalNode) -> int:
    """Flip one data byte (after the header) in every shard of ``owner`` that ``friend``
    holds; doing it twice undoes it. Returns how many shards."""
    count = 0
    for path in sorted((_held(friend, owner) / "shards").rglob("*.*")):
        size = path.stat().st_size
        assert size > SHARD_HEADER_LEN
        where = SHARD_HEADER_LEN + (size - SHARD_HEADER_LEN) // 2
        with path.open("r+b") as f:
            f.seek(where)
            byte = f.read(1)
            f.seek(where)
            f.write(bytes([byte[0] ^ 0x5A]))
        count += 1
    return count


def _first_asked(pool: Pool, snapshot: str) -> LocalNode:
    """The friend a restore of ``snapshot`` surely asks: the holder of shard 0 (a data
    shard: those go first while no member has a rate yet) of its root tree's pack."""
    with _ledger(pool.owner.home) as db:
        body = db.execute(
            "SELECT body FROM snapshots WHERE id = ?", (bytes.fromhex(snapshot),)
        ).fetchone()[0]
        tree = objects.decode(body, Snapshot, "snapshot").tree
        (pack,) = db.execute("SELECT pack_id FROM blobs WHERE chunk_id = ?", (tree,)).fetchone()
        (holder,) = db.execute(
            "SELECT holder FROM shards WHERE pack_id = ? AND idx = 0", (pack,)
        ).fetchone()
    db.close()
    return next(f for f in pool.friends if bytes(f.keys.node_id) == bytes(holder))


def test_corrupt_shards_on_one_friend_are_caught_and_others_used(pool: Pool) -> None:
    owner = pool.owner
    src = pool.base / "corrupt-src"
    make_tree(src, 2 << 20, files=150, seed=31)
    snap = _backup(owner.home, src)["snapshot_id"]
    liar = _first_asked(pool, snap)
    flipped = _flip_shard_data(liar, owner)
    assert flipped > 0
    try:
        target = pool.base / "corrupt-restore"
        restored = _restore(owner.home, snap, target)
        assert differences(src, _restored(target, src)) == []
        # It was asked first, and every shard it sent failed its Merkle root: none
        # counts as served.
        assert liar.name not in restored["served_by"], restored
    finally:
        assert _flip_shard_data(liar, owner) == flipped  # put the pool back as it was


def _forged_manifest(pool: Pool, kind: str) -> bytes:
    """A manifest the owner never signed: signed by a friend as itself, or signed by a
    friend while claiming the owner (the header's owner id swapped in)."""
    forger, owner = pool.friends[1], pool.owner
    with _ledger(owner.home) as db:
        pool_id = db.execute("SELECT value FROM meta WHERE key = 'pool'").fetchone()[0]
    db.close()
    body = ManifestBody(
        pool=bytes(pool_id),
        founder=bytes(owner.keys.node_id),
        time=time.time(),
        snapshots=[],
        index_packs=[],
    )
    blob = objects.seal_manifest(forger.keys, 1 << 40, body, os.urandom)
    if kind == "claims-the-owner":
        at = 5  # magic(4) ‖ format(1) ‖ owner(32)
        blob = blob[:at] + bytes(owner.keys.node_id) + blob[at + 32 :]
    return blob


FORGERIES = ("signed-by-a-friend", "claims-the-owner")


@pytest.mark.parametrize("kind", FORGERIES)
async def test_a_holder_refuses_a_manifest_the_owner_did_not_sign(pool: Pool, kind: str) -> None:
    owner, holder = pool.owner, pool.friends[0]
    manifest = _held(holder, owner) / "manifest"
    before = manifest.read_bytes() if manifest.exists() else b""
    link = PeerLink(
        NodeId(bytes(holder.keys.node_id)),
        [_address(holder)],
        ssh_public_key(holder.keys),
        private_key(owner.keys.ssh_seed),
        timeout=30,
    )
    try:
        with pytest.raises(IntegrityError, match="manifest"):
            await link.put_manifest(_forged_manifest(pool, kind))
    finally:
        await link.close()
    after = manifest.read_bytes() if manifest.exists() else b""
    assert after == before


@pytest.mark.parametrize("kind", FORGERIES)
def test_recovery_never_accepts_a_forged_manifest(pool: Pool, kind: str) -> None:
    owner, liar, honest = pool.owner, pool.friends[1], pool.friends[2]
    src = pool.base / f"forgery-src-{kind}"
    make_tree(src, 1 << 20, files=60, seed=41 + FORGERIES.index(kind))
    _backup(owner.home, src)
    with _ledger(owner.home) as db:
        genuine = int.from_bytes(
            db.execute("SELECT value FROM meta WHERE key = 'manifest_seq'").fetchone()[0], "big"
        )
    db.close()
    manifest = _held(liar, owner) / "manifest"
    good = manifest.read_bytes()
    manifest.write_bytes(_forged_manifest(pool, kind))
    try:
        # Through the liar alone: refused before anything is created.
        home = _fresh_home(pool, f"recover-through-liar-{kind}")
        out = _recover(pool, home, liar)
        assert out.returncode == EX_INTEGRITY, out.stderr
        assert _exit_error(out)["error"] == "IntegrityError"
        assert not (home / "node.secret").exists()

        # Through an honest member, while the liar offers a "newer" forgery: ignored.
        home = _fresh_home(pool, f"recover-through-honest-{kind}")
        info = _summary(_recover(pool, home, honest))
        assert info["manifest_sequence"] == genuine
    finally:
        manifest.write_bytes(good)


def test_a_hung_member_costs_one_timeout_not_one_per_pack(pool: Pool, big_tree: Path) -> None:
    owner, hung = pool.owner, pool.friends[2]
    snap = _backup(owner.home, big_tree)["snapshot_id"]
    timeout = 2
    config = owner.home / "config.toml"
    original = config.read_text()
    config.write_text(original + f"\n[network]\ntimeout = {timeout}\n")
    assert hung.proc is not None
    os.kill(hung.proc.pid, signal.SIGSTOP)
    try:
        target = pool.base / "hung-restore"
        restored = _restore(owner.home, snap, target)
    finally:
        os.kill(hung.proc.pid, signal.SIGCONT)
        config.write_text(original)
    assert differences(big_tree, _restored(target, big_tree)) == []
    assert hung.name in restored["down"], restored
    assert "answer" in restored["down"][hung.name]  # it hung: no refusal, no reset
    assert hung.name not in restored["served_by"]
    # Random bytes do not compress and no pack passes PACK_MAX: BIG_BYTES spans more
    # than BIG_BYTES / PACK_MAX = 6 packs, each needing the hung member's shard or not.
    packs = BIG_BYTES // PACK_MAX
    assert packs >= 6
    assert restored["total_duration"] < packs * timeout, restored


# --- 4. too few members -----------------------------------------------------------------


def test_a_backup_refuses_when_fewer_than_k_plus_1_members_answer(tmp_path: Path) -> None:
    nodes = make_pool(tmp_path, ["small-owner", "small-1", "small-2", "small-3"])
    try:
        owner, gone = nodes[0], nodes[2]
        gone.kill()
        src = tmp_path / "src"
        make_tree(src, 256 << 10, files=20, seed=5)
        out = _peerbak(owner.home, "backup", "--json", "--shards", "2/3", str(src))
        assert out.returncode == EX_TEMPFAIL, out.stderr
        message = _exit_error(out)["message"]
        assert "Unreachable" in message
        assert gone.name in message
        assert "small-1" not in message
        assert "small-3" not in message
        with _ledger(owner.home) as db:
            packs = db.execute("SELECT COUNT(*) FROM packs").fetchone()[0]
        db.close()
        assert packs == 0  # refused before anything was stored
    finally:
        for node in nodes:
            node.kill()


def test_forget_with_every_member_away_forgets_nothing(tmp_path: Path) -> None:
    """The ledger drops snapshots only once a member keeps the manifest without them."""
    nodes = make_pool(tmp_path, ["lone-owner", "lone-1", "lone-2", "lone-3"])
    try:
        owner = nodes[0]
        src = tmp_path / "src"
        make_tree(src, 128 << 10, files=10, seed=6)
        for _ in range(2):
            _backup(owner.home, src, "--shards", "2/3")
        for friend in nodes[1:]:
            friend.kill()
        out = _peerbak(owner.home, "forget", "--json", "--keep-last", "1")
        assert out.returncode == EX_TEMPFAIL, out.stderr
        assert _exit_error(out)["message"] == "no member took the manifest: nothing was forgotten"
        listed = _peerbak(owner.home, "snapshots", "--json")
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 2
    finally:
        for node in nodes:
            node.kill()
