"""``peerbak check --restore-drill N``: restore a random sample of files and compare them.

The files are drawn uniformly from the latest snapshot (reservoir sampling over a
streamed listing, so memory stays flat), restored into a temporary directory through
the same path as ``restore`` (every chunk verified), and each one is compared with the
file on disk when that file still has the size and mtime the snapshot recorded. A file
changed since the backup is counted, not compared: it proves nothing either way.
"""

from __future__ import annotations

import filecmp
import os
import random
import tempfile
from pathlib import Path
from typing import Any

from peerbak.services.repository import Repository
from peerbak.services.restore import Restorer, list_tree

_SPECIAL = set("\\*?[]!# ")


def _literal(path: str) -> str:
    """A gitignore pattern matching exactly ``path`` (from the snapshot's root)."""
    return "/" + "".join("\\" + c if c in _SPECIAL else c for c in path.lstrip("/"))


async def restore_drill(
    repo: Repository, sample: int, rng: random.Random, scratch: Path
) -> dict[str, Any]:
    snapshot = await repo.find_snapshot("latest")
    picked: list[dict[str, Any]] = []
    seen = 0
    async for row in list_tree(repo, snapshot):
        if row["type"] != "file":
            continue
        seen += 1
        if len(picked) < sample:
            picked.append(row)
        elif (j := rng.randrange(seen)) < sample:
            picked[j] = row
    report: dict[str, Any] = {
        "snapshot": snapshot.id.hex(),
        "files_sampled": len(picked),
        "files_in_snapshot": seen,
        "restored": 0,
        "matched": 0,
        "changed_since": 0,
        "problems": [],
    }
    if not picked:
        return report
    with tempfile.TemporaryDirectory(prefix="peerbak-drill-", dir=scratch) as tmp:
        restorer = Restorer(repo, Path(tmp), [_literal(r["path"]) for r in picked])
        try:
            await restorer.run(snapshot)
        finally:
            restorer.close()
        for row in picked:
            restored = Path(tmp) / row["path"].lstrip("/")
            if not restored.is_file() or restored.stat().st_size != row["size"]:
                report["problems"].append(f"not restored whole: {row['path']}")
                continue
            report["restored"] += 1
            try:
                live = os.stat(row["path"])
            except OSError:
                report["changed_since"] += 1
                continue
            if live.st_size != row["size"] or live.st_mtime_ns != row["mtime_ns"]:
                report["changed_since"] += 1
            elif filecmp.cmp(restored, row["path"], shallow=False):
                report["matched"] += 1
            else:
                report["problems"].append(
                    f"differs from the file on disk, unchanged since the backup: {row['path']}"
                )
    return report
