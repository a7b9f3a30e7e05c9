"""``peerbak benchmark backup``: peerbak to a local pool against restic to a local
repository, in one run, on one generated tree.

peerbak backs up to five friends (separate daemons on 127.0.0.1, 3-of-5), restic to a
directory. Both are timed as the commands a user runs (process start to exit) and
their peak RSS taken from the kernel (``wait4``) for the backing-up process alone.
Three steps: first backup, a second backup with nothing changed, and a restore (for
peerbak with two of the five friends killed). Each step starts after ``sync``, on a
disk with nothing left to flush from the step before (a freshly generated tree or a
deleted restore would otherwise be paid for by whoever runs next). Machines are
noisy: compare the ratios.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from peerbak.core.errors import ConfigError, PeerbakError
from peerbak.tools.benchmark import generate
from peerbak.tools.localpool import make_pool


def _run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """(seconds, CPU seconds, peak RSS in MiB, stdout) of one command, reaped with
    ``wait4`` so CPU and RSS are that process's own; a failure raises."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter, or restic
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    stderr = proc.stderr
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(stderr.read()))
    reader.start()
    out = proc.stdout.read()
    reader.join()
    _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): that drops the rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise PeerbakError(
            f"{' '.join(cmd[:5])} … exited {proc.returncode}: "
            f"{b''.join(err).decode(errors='replace')[-2000:]}"
        )
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024, out.decode(errors="replace")


def _daemon_cpu(pids: list[int]) -> float:
    """CPU seconds the friends' daemons have used so far (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def bench_backup(
    size: int,
    source: Path | None,
    workdir: Path | None,
    with_restic: bool = True,
    say: Any = lambda _: None,
) -> dict[str, Any]:
    restic = shutil.which("restic")
    if with_restic and restic is None:
        raise ConfigError("restic is not installed (apt-get install restic), or pass --no-restic")
    base = Path(tempfile.mkdtemp(prefix="peerbak-bench-", dir=workdir))
    nodes = []
    try:
        if source is None:
            say(f"generating a {size / 2**30:.1f} GiB mixed tree ...")
            source = base / "tree"
            generate(source, "mixed", size)
        files = sum(len(f) for _, _, f in os.walk(source))
        total = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
        result: dict[str, Any] = {"files": files, "bytes": total, "source": str(source)}
        say("starting a pool of 6 nodes (owner + 5 friends) ...")
        nodes = make_pool(base / "pool", ["owner", "f1", "f2", "f3", "f4", "f5"])
        owner = nodes[0]
        cli = [sys.executable, "-m", "peerbak", "--home", str(owner.home)]
        rows: dict[str, dict[str, float]] = {}

        def step(name: str, tool: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
            say(f"{tool}: {name} ...")
            os.sync()  # what the step before left dirty is not this step's cost
            pids = [n.proc.pid for n in nodes[1:] if n.proc is not None]
            before = _daemon_cpu(pids)
            seconds, cpu, rss, _ = _run(cmd, env)
            row = rows.setdefault(name, {})
            row[f"{tool}_s"] = round(seconds, 2)
            row[f"{tool}_cpu_s"] = round(cpu, 2)
            row[f"{tool}_rss_mib"] = round(rss, 1)
            if tool == "peerbak":
                row["friends_cpu_s"] = round(_daemon_cpu(pids) - before, 2)

        step("first backup", "peerbak", [*cli, "backup", "--shards", "3/5", str(source)])
        step(
            "no-change backup",
            "peerbak",
            [*cli, "backup", "--shards", "3/5", str(source)],
        )
        nodes[2].kill()
        nodes[4].kill()
        step(
            "restore, 2 down",
            "peerbak",
            [*cli, "restore", "latest", "--target", str(base / "out-peerbak")],
        )
        shutil.rmtree(base / "out-peerbak", ignore_errors=True)
        if with_restic and restic is not None:
            env = {
                **os.environ,
                "RESTIC_PASSWORD": "benchmark",
                "RESTIC_REPOSITORY": str(base / "restic"),
                "RESTIC_CACHE_DIR": str(base / "restic-cache"),
            }
            _run([restic, "init", "-q"], env)
            step("first backup", "restic", [restic, "backup", "-q", str(source)], env)
            step("no-change backup", "restic", [restic, "backup", "-q", str(source)], env)
            step(
                "restore, 2 down",
                "restic",
                [restic, "restore", "-q", "latest", "--target", str(base / "out-restic")],
                env,
            )
            for row in rows.values():
                row["ratio"] = round(row["peerbak_s"] / max(row["restic_s"], 1e-9), 2)
        result["steps"] = rows
        return result
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(base, ignore_errors=True)
