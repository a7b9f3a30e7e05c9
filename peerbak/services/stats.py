"""``peerbak stats``: what the backups weigh at each step (as files, deduplicated,
compressed into packs, stored with redundancy), what each snapshot added, and what each
member holds.

For one snapshot the trees are walked (one visit per distinct tree) and its distinct
blobs, chunks and trees, counted; for the whole node the ledger answers alone. Both views
ask the ledger the same question (:meth:`Ledger.space`), so a node with one snapshot
shows the same figures either way.
"""

from __future__ import annotations

from typing import Any

from peerbak.core.objects import NodeType, Snapshot
from peerbak.services.repository import Repository


async def _snapshot_blobs(repo: Repository, snap: Snapshot) -> tuple[int, int, set[bytes]]:
    """(files, logical bytes, distinct chunk and tree ids) of one snapshot."""
    files = size = 0
    chunks: set[bytes] = set()
    seen: set[bytes] = set()
    todo = [snap.tree]
    while todo:
        tree_id = todo.pop()
        if tree_id in seen:
            continue
        seen.add(tree_id)
        tree = await repo.read_tree(tree_id)
        for entry in tree.entries:
            if entry.type is NodeType.DIR:
                todo.append(entry.subtree)
            elif entry.type is NodeType.FILE:
                files += 1
                size += entry.size
                content = entry.content
                chunks.update(content[i : i + 32] for i in range(0, len(content), 32))
    return files, size, chunks | seen


async def run_stats(repo: Repository, snapshot_ref: str | None) -> dict[str, Any]:
    snaps = await repo.snapshots()
    held = await repo.ledger.held_by_member()
    members = [
        {
            "node": node.hex(),
            "name": repo.members[node].name if node in repo.members else "",
            "shards": shards,
            "bytes": size,
        }
        for node, (shards, size) in sorted(held.items(), key=lambda kv: -kv[1][1])
    ]
    added = [
        {
            "snapshot": s.id.hex(),
            "time": s.time,
            "data_added": s.summary.data_added,
            "stored_added": s.summary.stored_added,
            "packs_added": s.summary.packs_added,
        }
        for s in snaps
    ]
    if snapshot_ref is not None:
        snap = await repo.find_snapshot(snapshot_ref)
        files, logical, blobs = await _snapshot_blobs(repo, snap)
        space = await repo.ledger.space(blobs)
        scope: dict[str, Any] = {"snapshot": snap.id.hex(), "snapshots": 1, "files": files}
    else:
        logical = sum(s.summary.total_bytes for s in snaps)
        space = await repo.ledger.space()
        scope = {
            "snapshot": "",
            "snapshots": len(snaps),
            "files": sum(s.summary.total_files for s in snaps),
        }
    return {
        **scope,
        "logical_bytes": logical,
        "deduplicated_bytes": space.plain,
        "packed_bytes": space.packed,
        "pack_bytes": space.pack_bytes,
        "stored_bytes": space.stored,
        "compression_ratio": _ratio(space.plain, space.packed),
        "redundancy": _ratio(space.stored, space.pack_bytes),
        "added_by_snapshot": added,
        "members": members,
    }


def _ratio(over: int, under: int) -> float:
    return round(over / under, 3) if under else 0.0
