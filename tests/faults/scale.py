"""Helpers of the scale rows: commands measured (wall time, the child's own peak RSS),
and a backup and restore of a million small files compared with ``find`` and ``diff``.

The million-file run is used by ``test_owner_stopped.py``: a friend backs up the million
files while the stopped owner waits out its ten minutes, so the two rows share that time.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from peerbak.tools.localpool import LocalNode

MILLION = 1_000_000


def measured(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float, int]:
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


def run(home: Path, *args: str) -> tuple[Any, float, int]:
    done, seconds, peak = measured(home, *args)
    assert done.returncode == 0, (args, done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else None), seconds, peak


def figure(what: str, seconds: float, peak: int) -> None:
    print(f"\n  {what}: {seconds:.1f} s, peak RSS {peak / 2**20:.0f} MiB")


def make_small_files(root: Path, count: int) -> None:
    """``count`` files of 64 to 511 random bytes, a thousand to a directory."""
    rnd = random.Random(13)
    for d in range(count // 1000):
        folder = root / f"d{d:04}"
        folder.mkdir(parents=True)
        for i in range(1000):
            (folder / f"f{i:04}").write_bytes(rnd.randbytes(rnd.randrange(64, 512)))


def listing(root: Path) -> list[str]:
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


def differences(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    """The first few lines that differ (a million-line diff is no assertion message)."""
    diff = [(x, y) for x, y in zip(a, b, strict=False) if x != y][:5]
    return diff or ([] if len(a) == len(b) else [(f"{len(a)} entries", f"{len(b)} entries")])


def a_million_small_files(owner: LocalNode, work: Path) -> None:
    """``owner`` backs up a million small files (then again, unchanged) and restores
    them; the trees must be the same, and the figures are printed."""
    if shutil.which("find") is None or shutil.which("diff") is None:
        pytest.skip("needs find and diff (GNU findutils and diffutils) to compare the trees")
    src = work / "million"
    began = time.monotonic()
    make_small_files(src, MILLION)
    print(f"\n  made {MILLION} files in {time.monotonic() - began:.0f} s")

    first, seconds, peak = run(owner.home, "backup", "--shards", "2/3", str(src))
    figure(f"first backup of {MILLION} small files", seconds, peak)
    assert first["files_new"] == MILLION
    again, seconds, peak = run(owner.home, "backup", "--shards", "2/3", str(src))
    figure("no-change backup (files cache)", seconds, peak)
    assert again["files_unmodified"] == MILLION
    assert again["files_new"] == again["files_changed"] == 0

    target = work / "million-restored"
    restored, seconds, peak = run(
        owner.home, "restore", first["snapshot_id"], "--target", str(target)
    )
    figure("restore", seconds, peak)
    assert restored["files_restored"] == MILLION
    back = target / str(src).lstrip("/")
    differ = differences(listing(src), listing(back))
    assert not differ, differ  # types, modes, sizes, mtimes
    same = subprocess.run(
        ["diff", "-r", "-q", str(src), str(back)], capture_output=True, check=False
    )
    assert same.returncode == 0, same.stdout[:2000].decode(errors="replace")  # contents
    shutil.rmtree(target)
    shutil.rmtree(src)
