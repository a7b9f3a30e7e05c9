"""``peerbak benchmark care``: what challenges and prune cost, on a real local pool.

The owner and five friends (daemons on 127.0.0.1), a tree of many small files (each its
own chunk, so the chunk count is what the user asks for), backed up twice with half
the files gone in between. Then: challenges (bytes on the wire each, and the friends'
CPU per challenge, SSH included, from /proc), and ``forget --keep-last 1 --prune``
(seconds and peak RSS from the kernel).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from peerbak.adapters.ledger import Ledger
from peerbak.tools.compare import _daemon_cpu, _run
from peerbak.tools.localpool import make_pool


def _tree(root: Path, files: int, seed: int) -> None:
    rnd = random.Random(seed)  # noqa: S311 - test data, not secrets
    per_dir = 1000
    for i in range(files):
        folder = root / f"d{i // per_dir:04}"
        if i % per_dir == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:07}.bin").write_bytes(rnd.randbytes(rnd.randrange(512, 2048)))


async def _chunk_count(path: Path) -> int:
    async with await Ledger.open(path) as ledger:
        return await ledger.chunk_count()


def bench_care(
    files: int, challenges: int, workdir: Path | None, say: Any = lambda _: None
) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="peerbak-care-", dir=workdir))
    nodes = []
    try:
        say(f"writing {files} small files ...")
        tree = base / "tree"
        _tree(tree, files, 1)
        say("starting a pool of 6 nodes (owner + 5 friends) ...")
        nodes = make_pool(base / "pool", ["owner", "f1", "f2", "f3", "f4", "f5"])
        owner = nodes[0]
        cli = [sys.executable, "-m", "peerbak", "--home", str(owner.home)]
        rows: dict[str, dict[str, float]] = {}

        def step(name: str, *args: str) -> str:
            say(f"{name} ...")
            seconds, cpu, rss, out = _run([*cli, *args, "--json"])
            rows[name] = {"s": round(seconds, 2), "cpu_s": round(cpu, 2), "rss_mib": round(rss)}
            return out

        step("first backup", "backup", "--shards", "3/5", str(tree))
        for folder in sorted(tree.iterdir())[::2]:
            shutil.rmtree(folder)  # half the files: their chunks become unused
        step("second backup", "backup", "--shards", "3/5", str(tree))
        chunks = asyncio.run(_chunk_count(owner.home / "ledger.sqlite"))
        pids = [n.proc.pid for n in nodes[1:] if n.proc is not None]
        before = _daemon_cpu(pids)
        out = step("challenges", "challenge", "--count", str(challenges))
        answered = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        passed = [r for r in answered if r["result"] == "pass"]
        holder_cpu = _daemon_cpu(pids) - before
        step("forget --prune", "forget", "--keep-last", "1", "--prune")
        return {
            "files": files,
            "chunks_before_prune": chunks,
            "steps": rows,
            "challenges": len(answered),
            "challenges_passed": len(passed),
            "wire_bytes_per_challenge": round(
                sum(r["wire_bytes"] for r in passed) / max(len(passed), 1)
            ),
            "holder_cpu_ms_per_challenge": round(1000 * holder_cpu / max(len(answered), 1), 2),
        }
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(base, ignore_errors=True)
