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


MILLION = 1_000_000


def _make_small_files(root: Path, count: int) -> None:
    """``count`` files of 64 to 511 random bytes, a thousand to a directory."""
    rnd = random.Random(13)
    for d in range(count // 1000):
        folder = root / f"d{d:04}"
        folder.mkdir(parents=True)
        for i in range(1000):
            (folder / f"f{i:04}").write_bytes(rnd.randbytes(rnd.randrange(64, 512)))


def _listing(root: Path) -> list[str]:
    """Every entry's path, type, mode, size and mtime, sorted (find, in C: a million
    entries in seconds)."""
    out = subprocess.run(
        ["find", ".", "-printf", r"%P %y %m %s %T@\n"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    rows = []
    for line in out:
        path, kind, mode, size, mtime = line.rsplit(" ", 4)
        if path:  # a directory's size is its file system's business: not compared
            rows.append(" ".join([path, kind, mode, "-" if kind == "d" else size, mtime]))
    return sorted(rows)


def _differences(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    """The first few lines that differ (a million-line diff is no assertion message)."""
    diff = [(x, y) for x, y in zip(a, b, strict=False) if x != y][:5]
    return diff or ([] if len(a) == len(b) else [(f"{len(a)} entries", f"{len(b)} entries")])


@pytest.mark.timeout(1800)
def test_a_million_small_files(pool: list[LocalNode]) -> None:
    if shutil.which("find") is None or shutil.which("diff") is None:
        pytest.skip("needs find and diff (GNU findutils and diffutils) to compare the trees")
    owner = pool[0]
    src = owner.home.parent / "million"
    began = time.monotonic()
    _make_small_files(src, MILLION)
    print(f"\n  made {MILLION} files in {time.monotonic() - began:.0f} s")

    first, seconds, peak = _run(owner.home, "backup", "--shards", "2/3", str(src))
    _figure(f"first backup of {MILLION} small files", seconds, peak)
    assert first["files_new"] == MILLION
    again, seconds, peak = _run(owner.home, "backup", "--shards", "2/3", str(src))
    _figure("no-change backup (files cache)", seconds, peak)
    assert again["files_unmodified"] == MILLION
    assert again["files_new"] == again["files_changed"] == 0

    target = owner.home.parent / "million-restored"
    restored, seconds, peak = _run(
        owner.home, "restore", first["snapshot_id"], "--target", str(target)
    )
    _figure("restore", seconds, peak)
    assert restored["files_restored"] == MILLION
    back = target / str(src).lstrip("/")
    differ = _differences(_listing(src), _listing(back))
    assert not differ, differ  # types, modes, sizes, mtimes
    same = subprocess.run(
        ["diff", "-r", "-q", str(src), str(back)], capture_output=True, check=False
    )
    assert same.returncode == 0, same.stdout[:2000].decode(errors="replace")  # contents
    shutil.rmtree(target)
    shutil.rmtree(src)
