"""``status`` tells the truth against the in-process pool: a member that stops answering
is unreachable at once, whether every snapshot can be restored from the members
reachable now leads, and the last backup of each path set and who missed the manifest
are shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peerbak.core.config import default_config_text, parse_config
from peerbak.core.health import RepairPolicy
from peerbak.services.backup import run_backup
from peerbak.services.jobs import run_job
from peerbak.services.repository import Repository
from peerbak.services.status import pool_health
from peerbak.tools.mempool import MemoryPool
from tests.services.kit import write

#: Repair at the first missing shard, as the default does.
POLICY = RepairPolicy()


async def _health(repo: Repository, mempool: MemoryPool) -> dict[str, Any]:
    await repo.probe()
    return await pool_health(repo, POLICY, mempool.clock(), probed=True)


def _states(health: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["state"] for m in health["members"]}


async def test_a_member_that_stops_answering_is_unreachable_now(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    write(tmp_path / "src" / "a.bin", 300_000, seed=1)
    await run_backup(repo, [tmp_path / "src"], code=(2, 4))
    well = await _health(repo, mempool)
    assert well["verdict"].startswith("healthy")
    assert set(_states(well).values()) == {"ok"}
    assert well["restorable_now"] is True
    mempool.member(1).up = False
    mempool.clock.advance(60)  # a minute: its records still say it was seen
    h = await _health(repo, mempool)
    assert _states(h)["m1"] == "unreachable"
    assert h["unreachable"] == ["m1"]
    assert h["restorable_now"] is True  # 2-of-4: three shards answer
    assert h["verdict"].startswith("degraded")
    assert any("m1 is unreachable" in line for line in h["advice"])


async def test_too_many_unreachable_is_not_restorable_now_and_says_who(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    write(tmp_path / "src" / "a.bin", 300_000, seed=2)
    await run_backup(repo, [tmp_path / "src"], code=(3, 4))
    for i in (1, 2, 3, 4, 5):
        mempool.member(i).up = i == 5  # one member left of five: below k for every pack
    h = await _health(repo, mempool)
    assert h["restorable_now"] is False
    assert h["packs_below_k_now"] == h["packs"]
    assert h["packs_below_k"] == 0  # their shards still count: they may come back
    assert h["verdict"].startswith("NOT RESTORABLE NOW")
    assert sorted(h["unreachable"]) == ["m1", "m2", "m3", "m4"]
    assert "cannot be restored until" in h["advice"][0]


async def test_the_last_backup_of_each_path_set_and_who_missed_the_manifest(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    write(tmp_path / "photos" / "p.jpg", 1000, seed=3)
    write(tmp_path / "docs" / "d.txt", 1000, seed=4)
    await run_backup(repo, [tmp_path / "photos"], code=(2, 4))
    mempool.clock.advance(3600)
    mempool.member(2).up = False
    docs = await run_backup(repo, [tmp_path / "docs"], code=(2, 4))
    assert docs["members_missed"] == ["m2"]
    mempool.clock.advance(60)
    h = await _health(repo, mempool)
    ages = {tuple(b["paths"]): b["age_seconds"] for b in h["last_backups"]}
    assert ages == {(str(tmp_path / "photos"),): 3660.0, (str(tmp_path / "docs"),): 60.0}
    reach = h["last_publish"]
    assert reach["reached"] == 4
    assert reach["members"] == 5
    assert list(reach["missed"]) == ["m2"]


async def test_each_job_shows_its_last_success_and_its_last_failure(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "photos"
    write(src / "a.jpg", 10_000, seed=5)
    text = default_config_text("owner", 0) + (
        f'[[job]]\nname = "photos"\npaths = ["{src}"]\nschedule = "daily"\n'
    )
    mempool.home.config_path.write_text(text)
    (job,) = parse_config(text).job
    assert (await run_job(repo, job)).ok
    done = mempool.clock()
    mempool.clock.advance(3600)
    for i in (1, 2, 3, 4, 5):
        mempool.member(i).up = False  # the next run cannot reach anyone
    await repo.probe()
    assert not (await run_job(repo, job)).ok
    h = await pool_health(repo, POLICY, mempool.clock(), probed=True)
    (row,) = h["jobs"]
    assert row["name"] == "photos"
    assert row["last_success"] == done
    assert row["last_success_age"] == 3600.0
    assert row["last"]["result"] == "failed"
    assert row["last"]["error"]
