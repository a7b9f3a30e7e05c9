"""Trust, but verify, on a real pool: the owner and six friends, 3-of-5, small packs.

In order, on one pool (each test leaves it whole for the next):

1. A friend silently deletes 10 % of our shards: challenges driven by a seeded schedule
   and a clock the test steps find it within the count the formula predicts; it is
   marked failing, an audit finds every shard it dropped, and those are rebuilt on
   other members.
2. A friend killed and kept offline past the grace (by the clock, not by waiting): its
   packs are repaired; back again, its superfluous shards are released.
3. The owner's daemon is SIGKILLed mid-repair: restarted, repair completes; no pack was
   below k, and no placement points at a shard its holder does not have.
4. `check --read-data` finds a corrupted shard, and repair replaces it.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerbak.adapters.home import Home
from peerbak.core.health import challenges_to_detect
from peerbak.node.compose import open_repository
from peerbak.services.maintenance import Maintainer
from peerbak.services.repair import RepairReport
from peerbak.tools.localpool import set_config
from peerbak.tools.sample import differences
from tests.integration.nodes import Daemon, make_pool

pytestmark = pytest.mark.slow

K, N = 3, 5


class Clock:
    """Time as the test says: a round per step, days without waiting."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _maintenance(node: Daemon, enabled: bool) -> None:
    set_config(node.home, "maintenance", "enabled", str(enabled).lower())


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    base = tmp_path_factory.mktemp("care")
    nodes: list[Daemon] = make_pool(base, ["owner", "f1", "f2", "f3", "f4", "f5", "f6"])  # type: ignore[assignment]
    try:
        owner = nodes[0]
        _maintenance(owner, False)  # the tests drive maintenance with their own clock
        owner.stop()
        owner.start()
        source = base / "source"
        source.mkdir()
        rnd = random.Random(1)
        for i in range(96):  # one chunk each, four to a 256 KiB pack: ~24 data packs
            (source / f"photo-{i:02}.jpg").write_bytes(rnd.randbytes(60_000 + i))
        owner.cli("backup", "--shards", f"{K}/{N}", "--pack-size", "256KiB", str(source))
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def _ledger(owner: Daemon) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{owner.home / 'ledger.sqlite'}?mode=ro", uri=True)


def _placements(owner: Daemon) -> dict[bytes, list[tuple[int, bytes, int, str]]]:
    db = _ledger(owner)
    try:
        out: dict[bytes, list[tuple[int, bytes, int, str]]] = {}
        for pack, idx, holder, stored, state in db.execute(
            "SELECT p.pack_id, s.idx, s.holder, s.stored, s.state FROM packs p "
            "LEFT JOIN shards s ON s.pack_id = p.pack_id WHERE p.state = 'stored'"
        ):
            out.setdefault(bytes(pack), []).append((idx, bytes(holder), stored, state))
        return out
    finally:
        db.close()


def _node(d: Daemon) -> bytes:
    return bytes(d.keys.node_id)


def _live_shards(holder: Daemon, owner: Daemon) -> list[Path]:
    root = holder.home / "held" / owner.keys.node_id.hex() / "shards"
    return sorted(p for p in root.rglob("*") if p.is_file())


def _assert_whole(pool: list[Daemon], avoid: frozenset[bytes] = frozenset()) -> None:
    """Every pack: n acknowledged, healthy shards on distinct members, none on ``avoid``,
    and each one really on its holder's disk."""
    owner = pool[0]
    by_node = {_node(d): d for d in pool[1:]}
    for pack, rows in _placements(owner).items():
        holders = [h for _, h, _, _ in rows]
        assert len(rows) == N, (pack.hex(), rows)
        assert all(stored == 1 and state == "ok" for _, _, stored, state in rows), rows
        assert len(set(holders)) == N
        assert not set(holders) & avoid
        for idx, holder, _, _ in rows:
            names = {p.name for p in _live_shards(by_node[holder], owner)}
            assert f"{pack.hex()}.{idx}" in names


async def _repair_all(m: Maintainer) -> RepairReport:
    """Rounds until repair has no batch left; the reports of this call summed."""
    first = len(m.reports)
    await m.round(repair_now=True)
    while m.reports[-1].packs_left:
        await m.round(repair_now=True)
    total = RepairReport()
    for r in m.reports[first:]:
        total.packs_repaired += r.packs_repaired
        total.shards_released += r.shards_released
        total.stuck += r.stuck
    return total


def _restores(owner: Daemon, tmp_path: Path) -> None:
    target = tmp_path / "restored"
    owner.cli("restore", "latest", "--target", str(target))
    source = owner.home.parent / "source"
    assert differences(source, target / str(source).lstrip("/")) == []


async def test_a_holder_dropping_a_tenth_is_found_as_predicted_and_repaired_away(
    pool: list[Daemon], tmp_path: Path
) -> None:
    owner, f1 = pool[0], pool[1]
    shards = _live_shards(f1, owner)
    assert len(shards) >= 10
    dropped = random.Random(2).sample(shards, max(1, len(shards) // 10))
    for path in dropped:
        path.unlink()
    x = len(dropped) / len(shards)
    budget = challenges_to_detect(x, 0.999)

    clock = Clock()
    home = Home.open(owner.home)
    m = Maintainer(home, lambda: open_repository(home), rng=random.Random(3), clock=clock)
    asked = 0
    while True:  # one round per simulated hour: two challenges a member on average
        clock.now += 3600
        await m.round()
        mine = [o for o in m.outcomes if o.member == _node(f1)]
        failed = [i for i, o in enumerate(mine) if o.result == "fail"]
        asked = len(mine)
        if failed or asked > budget:
            break
    assert failed, f"no failure in {asked} challenges"
    assert failed[0] < budget  # found within the count that gives 99.9 %
    assert "does not have it" in mine[failed[0]].evidence

    await _repair_all(m)  # the audit after the failure found every dropped shard
    repaired = sum(r.packs_repaired for r in m.reports)
    assert repaired == len(dropped)  # one shard of a pack per member: one pack each
    assert m.reports[-1].stuck == []
    _assert_whole(pool)
    gone = {p.name for p in dropped}
    for pack, rows in _placements(owner).items():  # rebuilt elsewhere, not on f1
        for idx, holder, _, _ in rows:
            assert not (holder == _node(f1) and f"{pack.hex()}.{idx}" in gone)
    assert len(_live_shards(f1, owner)) == len(shards) - len(dropped)  # the rest stays
    _restores(owner, tmp_path)


async def test_a_friend_offline_past_the_grace_is_repaired_and_released_on_return(
    pool: list[Daemon],
) -> None:
    owner, f1, f2 = pool[0], pool[1], pool[2]
    owner.cli("peers", "trust", "f1")  # its disk was replaced: it may hold shards again
    f2.kill()
    clock = Clock()
    home = Home.open(owner.home)
    m = Maintainer(home, lambda: open_repository(home), rng=random.Random(4), clock=clock)
    clock.now += 6 * 86400
    report = await _repair_all(m)
    assert report.packs_repaired == 0  # within the 7 days' grace
    clock.now += 2 * 86400
    report = await _repair_all(m)
    assert report.packs_repaired > 0
    assert report.shards_released == 0  # f2 is away: told when it answers
    _assert_whole([p for p in pool if p is not f2], avoid=frozenset({_node(f2)}))
    assert _live_shards(f2, owner)  # still there, out of reach

    f2.start()
    report = await _repair_all(m)
    assert report.shards_released > 0
    assert _live_shards(f2, owner) == []
    assert _live_shards(f1, owner)  # it took f2's place
    _assert_whole(pool)


def test_the_daemon_killed_mid_repair_resumes_and_no_pack_dips_below_k(
    pool: list[Daemon], tmp_path: Path
) -> None:
    owner, f3 = pool[0], pool[3]
    for path in _live_shards(f3, owner)[:3]:
        path.unlink()  # lost; `check` finds and marks them
    out = owner.cli("check", check=False)
    assert out.returncode == 65
    assert json.loads(out.stdout.splitlines()[-1])["shards_missing"] == 3

    owner.stop()
    _maintenance(owner, True)
    owner.start({"PEERBAK_CRASH_AT": "repair-uploaded"})  # its first round repairs
    assert owner.proc is not None
    assert owner.proc.wait(120) == -9  # SIGKILL, by its own hand, after one upload
    owner.proc = None
    by_node = {_node(d): d for d in pool[1:]}
    for pack, rows in _placements(owner).items():
        acked = [(i, h, state) for i, h, stored, state in rows if stored]
        assert len([a for a in acked if a[2] == "ok"]) >= K, pack.hex()
        for i, holder, state in acked:  # no placement points at nothing
            live = {p.name for p in _live_shards(by_node[holder], owner)}
            assert f"{pack.hex()}.{i}" in live or state == "bad"

    _maintenance(owner, False)
    owner.start()
    r = owner.cli("repair")
    assert r["stuck"] == []
    assert r["shards_resumed"] + r["shards_placed"] >= 3
    _assert_whole(pool)
    _restores(owner, tmp_path)


def test_check_finds_a_corrupted_shard_and_repair_replaces_it(pool: list[Daemon]) -> None:
    owner, f4 = pool[0], pool[4]
    victim = _live_shards(f4, owner)[0]
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0x01
    victim.write_bytes(bytes(raw))
    out = owner.cli("check", "--read-data", check=False)
    assert out.returncode == 65
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["shards_damaged"] == 1
    r = owner.cli("repair")
    assert r["packs_repaired"] == 1
    assert r["shards_placed"] == 1
    assert r["stuck"] == []
    assert victim.name not in {p.name for p in _live_shards(f4, owner)}  # released
    _assert_whole(pool)
    out = owner.cli("check", "--read-data", check=False)
    assert out.returncode == 0, out.stdout


def test_status_and_peers_say_it_in_plain_words(pool: list[Daemon]) -> None:
    owner = pool[0]
    status: dict[str, Any] = owner.cli("status")
    health = status["health"]
    assert health["verdict"].startswith("healthy")
    assert health["packs"] == health["packs_full"] > 0
    members = {m["name"]: m for m in health["members"]}
    assert members["f1"]["challenges_failed"] >= 1
    assert members["f1"]["state"] == "ok"  # trusted again
    assert all(m["last_seen"] for m in members.values())

    out = owner.cli("challenge", "--count", "2", "--seed", "5", check=False)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 2 * 6
    assert {r["result"] for r in rows} <= {"pass", "nothing"}
    assert all(r["wire_bytes"] > 100 for r in rows if r["result"] == "pass")  # leaves + paths
    out = owner.cli("challenge", "--member", "nobody", check=False)
    assert out.returncode == 64
    assert "nobody" in out.stderr


def test_simulate_runs_on_this_pool_as_observed(pool: list[Daemon]) -> None:
    out = pool[0].cli("simulate", "--pool", "--runs", "20", "--workers", "1", check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["members"] == 6
    assert (result["k"], result["n"]) == (K, N)  # the code its backups use
    assert 0 <= result["loss_1y"]["value"] <= 1
