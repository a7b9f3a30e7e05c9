"""Scale: a thousand snapshots (a million small files: see ``test_owner_stopped.py``).

Each row backs up for real on a pool of daemon processes (owner + three friends, 2-of-3)
and then runs the commands a user would as subprocesses, measuring each one's wall time
and peak RSS (``os.wait4``). The figures are printed (``pytest -s``); the assertions are
about what must hold at any size: every snapshot listed, retention keeping exactly what
its rules say, the kept snapshots restoring byte for byte.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbak.tools.localpool import LocalNode, make_pool, set_config
from peerbak.tools.sample import describe
from tests.faults.scale import figure, measured, run
from tests.integration.nodes import backup_in_process

pytestmark = pytest.mark.slow

SNAPSHOTS = 1000
HOUR = 3600.0


@pytest.fixture(scope="module")
def pool() -> Iterator[list[LocalNode]]:
    base = Path(tempfile.mkdtemp(prefix="pbk-scale-"))
    nodes = make_pool(base, ["owner", "f1", "f2", "f3"])
    try:
        owner = nodes[0]
        set_config(owner.home, "maintenance", "enabled", "false")  # no care in between
        owner.stop()
        owner.start()
        yield nodes
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(1800)
def test_a_thousand_hourly_snapshots(pool: list[LocalNode]) -> None:
    owner = pool[0]
    src = owner.home.parent / "thousand"
    src.mkdir()
    rnd = random.Random(9)
    for i in range(20):
        (src / f"f{i:02}.txt").write_bytes(rnd.randbytes(3000))
    start = time.time() - SNAPSHOTS * HOUR
    made: dict[str, dict[str, tuple[object, ...]]] = {}

    async def hourly() -> None:
        for hour in range(SNAPSHOTS):
            (src / f"f{hour % 20:02}.txt").write_bytes(rnd.randbytes(3000))  # an edit an hour
            summary = await backup_in_process(
                owner.home,
                [src],
                code=(2, 3),
                clock=functools.partial(float, start + hour * HOUR),
            )
            if hour >= SNAPSHOTS - 3 or hour % 250 == 0:
                made[summary["snapshot_id"]] = describe(src)

    began = time.monotonic()
    asyncio.run(hourly())
    print(f"\n  {SNAPSHOTS} backups in-process: {time.monotonic() - began:.0f} s")

    rows, seconds, peak = run(owner.home, "snapshots")
    figure(f"snapshots ({SNAPSHOTS})", seconds, peak)
    assert len(rows) == SNAPSHOTS
    times = sorted(datetime.datetime.fromisoformat(r["time"]).timestamp() for r in rows)
    assert times[-1] - times[0] == pytest.approx((SNAPSHOTS - 1) * HOUR, abs=1)

    rules = ("--keep-last", "3", "--keep-daily", "7", "--keep-weekly", "4")
    _, seconds, peak = run(owner.home, "forget", *rules)
    figure("forget --keep-last 3 --keep-daily 7 --keep-weekly 4", seconds, peak)
    report, seconds, peak = run(owner.home, "prune")
    figure("prune", seconds, peak)
    print(f"  prune: {json.dumps(report)}")

    kept = {r["id"] for r in run(owner.home, "snapshots")[0]}
    # 3 last, then one a day for 7 days (the last's day already counted), then one a
    # week for 4 weeks (the first days' weeks already counted): restic's own rules.
    assert 7 <= len(kept) <= 3 + 7 + 4
    assert set(list(made)[-3:]) <= kept  # the three newest are always kept
    for snap in set(made) & kept:
        target = owner.home.parent / f"restored-{snap[:8]}"
        run(owner.home, "restore", snap, "--target", str(target))
        assert describe(target / str(src).lstrip("/")) == made[snap]
    done, _, _ = measured(owner.home, "check", "--read-data")
    assert done.returncode == 0, done.stdout
