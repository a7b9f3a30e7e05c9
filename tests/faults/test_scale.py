"""Scale: a thousand snapshots, and a tree of a million small files.

Each row backs up for real on a pool of daemon processes (owner + three friends, 2-of-3)
and then runs the commands a user would as subprocesses, measuring each one's wall time
and peak RSS (``os.wait4``). The figures are printed (``pytest -s``); the assertions are
about what must hold at any size: every snapshot listed, retention keeping exactly what
its rules say, the kept snapshots restoring byte for byte.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerbak.home import Home
from peerbak.localpool import LocalNode, make_pool
from peerbak.sample import describe
from peerbak.snapshots import run_backup

pytestmark = pytest.mark.slow

SNAPSHOTS = 1000
HOUR = 3600.0


def _measured(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run ``peerbak ARGS --json``: the process, its wall seconds and its own peak RSS
    (bytes), which ``os.wait4`` reports for exactly that child."""
    cmd = [sys.executable, "-m", "peerbak", "--home", str(home), *args, "--json"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
    return done, seconds, usage.ru_maxrss * 1024


def _run(home: Path, *args: str) -> tuple[Any, float, int]:
    done, seconds, peak = _measured(home, *args)
    assert done.returncode == 0, (args, done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else None), seconds, peak


def _figure(what: str, seconds: float, peak: int) -> None:
    print(f"\n  {what}: {seconds:.1f} s, peak RSS {peak / 2**20:.0f} MiB")


@pytest.fixture(scope="module")
def pool() -> Iterator[list[LocalNode]]:
    base = Path(tempfile.mkdtemp(prefix="pbk-scale-"))
    nodes = make_pool(base, ["owner", "f1", "f2", "f3"])
    try:
        owner = nodes[0]
        config = owner.home / "config.toml"  # no challenges or repair in between
        config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
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
    home = Home.open(owner.home)
    start = time.time() - SNAPSHOTS * HOUR
    made: dict[str, dict[str, tuple[object, ...]]] = {}

    async def hourly() -> None:
        for hour in range(SNAPSHOTS):
            (src / f"f{hour % 20:02}.txt").write_bytes(rnd.randbytes(3000))  # an edit an hour
            summary = await run_backup(
                home,
                [src],
                code=(2, 3),
                clock=functools.partial(float, start + hour * HOUR),
            )
            if hour >= SNAPSHOTS - 3 or hour % 250 == 0:
                made[summary["snapshot_id"]] = describe(src)

    began = time.monotonic()
    asyncio.run(hourly())
    print(f"\n  {SNAPSHOTS} backups in-process: {time.monotonic() - began:.0f} s")

    rows, seconds, peak = _run(owner.home, "snapshots")
    _figure(f"snapshots ({SNAPSHOTS})", seconds, peak)
    assert len(rows) == SNAPSHOTS
    times = sorted(r["time"] for r in rows)
    assert times[-1] - times[0] == pytest.approx((SNAPSHOTS - 1) * HOUR, abs=1)

    rules = ("--keep-last", "3", "--keep-daily", "7", "--keep-weekly", "4")
    _, seconds, peak = _run(owner.home, "forget", *rules)
    _figure("forget --keep-last 3 --keep-daily 7 --keep-weekly 4", seconds, peak)
    report, seconds, peak = _run(owner.home, "prune")
    _figure("prune", seconds, peak)
    print(f"  prune: {json.dumps(report)}")

    kept = {r["id"] for r in _run(owner.home, "snapshots")[0]}
    # 3 last, then one a day for 7 days (the last's day already counted), then one a
    # week for 4 weeks (the first days' weeks already counted): restic's own rules.
    assert 7 <= len(kept) <= 3 + 7 + 4
    assert set(list(made)[-3:]) <= kept  # the three newest are always kept
    for snap in set(made) & kept:
        target = owner.home.parent / f"restored-{snap[:8]}"
        _run(owner.home, "restore", snap, "--target", str(target))
        assert describe(target / str(src).lstrip("/")) == made[snap]
    done, _, _ = _measured(owner.home, "check", "--read-data")
    assert done.returncode == 0, done.stdout
