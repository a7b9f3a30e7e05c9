"""``peerbak demo``: the whole promise on one machine, in about a minute.

A throwaway pool of six real nodes (the owner and five friends, each its own daemon
process with its own SSH server on 127.0.0.1) in a temporary directory. The owner
backs up a generated tree (or ``--source``) 3-of-5, two friends' daemons are killed
with SIGKILL, and the tree is restored from the three that remain and compared byte
for byte, with types, modes, mtimes and links. Then everything is removed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peerbak.core.errors import IntegrityError
from peerbak.tools.localpool import LocalNode, make_pool
from peerbak.tools.sample import differences, make_tree

NAMES = ["owner", "friend-1", "friend-2", "friend-3", "friend-4", "friend-5"]


def run_demo(
    source: Path | None,
    size: int,
    *,
    keep: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="peerbak-demo-"))
    nodes: list[LocalNode] = []
    try:
        t0 = time.monotonic()
        say(f"Starting 6 nodes (owner + 5 friends) under {base} ...")
        nodes = make_pool(base, NAMES)
        owner, friends = nodes[0], nodes[1:]
        pool_seconds = time.monotonic() - t0
        if source is None:
            source = base / "sample"
            say(f"Writing a sample tree of {size / 2**20:.0f} MiB ...")
            make_tree(
                source, size, files=max(200, size // (200 << 10)), big=min(size // 4, 64 << 20)
            )
        say(f"Backing up {source} (3-of-5) ...")
        backup = owner.cli("backup", "--shards", "3/5", str(source), timeout=3600)
        killed = [friends[1], friends[3]]
        for node in killed:
            node.kill()
        say(f"Killed {', '.join(n.name for n in killed)} (SIGKILL). Restoring ...")
        target = base / "restored"
        restore = owner.cli("restore", "latest", "--target", str(target), timeout=3600)
        restored = target / source.resolve().relative_to("/")
        diffs = differences(source, restored)
        if diffs:
            raise IntegrityError("the restored tree differs: " + "; ".join(diffs))
        return {
            "source": str(source),
            "files": backup["total_files_processed"],
            "bytes": backup["total_bytes_processed"],
            "k": backup["k"],
            "n": backup["n"],
            "stored_bytes": backup["stored_added"],
            "pool_seconds": round(pool_seconds, 1),
            "backup_seconds": backup["total_duration"],
            "backup_mb_s": round(
                backup["total_bytes_processed"] / max(backup["total_duration"], 1e-9) / 1e6, 1
            ),
            "killed": [n.name for n in killed],
            "restore_seconds": restore["total_duration"],
            "restore_mb_s": restore["mb_per_s"],
            "served_by": restore["served_by"],
            "identical": True,
        }
    finally:
        for node in nodes:
            node.kill()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
