"""``peerbak undelete``: bring back what deletes moved to the holders' trash.

Malware on the owner has the owner's key: it can delete every shard and publish an
empty manifest. Holders keep both in their trash for their own grace period (30 days by
default), which no owner message can shorten. Undelete asks every member to move its
trash back, reads every manifest the members keep or trashed (each checked: signed by
this node, decrypting with its key), and publishes one manifest with the union of their
snapshots and index packs. The ledger is rebuilt from those index packs, as recovery
does, so undelete works even when the malware wiped the ledger too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from peerbak import objects
from peerbak.errors import IntegrityError, PeerbakError, PeerUnavailable
from peerbak.objects import IndexPack, Manifest, ManifestBody, Snapshot
from peerbak.recovery import rebuild_ledger
from peerbak.repository import Member, Repository

log = logging.getLogger(__name__)

#: Trashed manifests read per member (one a day is kept: a month and then some).
MANIFESTS_PER_MEMBER: Final = 64
_TOP: Final = (1 << 63) - 1


async def _manifests(repo: Repository, m: Member) -> list[Manifest]:
    """The member's current manifest and the trashed ones, newest first (valid ones)."""
    found: list[Manifest] = []
    blobs = [await m.link.get_manifest()]
    before = _TOP
    for _ in range(MANIFESTS_PER_MEMBER):
        blob = await m.link.trashed_manifest(before)
        if not blob:
            break
        blobs.append(blob)
        _, before = objects.manifest_header(blob)
    for blob in blobs:
        if not blob:
            continue
        try:
            found.append(objects.open_manifest(repo.keys, blob))
        except IntegrityError as exc:
            log.warning("member %s keeps a bad manifest: %s", m.name, exc)
    return found


def union(manifests: list[Manifest]) -> tuple[list[Snapshot], list[IndexPack], int]:
    """Snapshots and index packs of all manifests (oldest manifest first, so a later
    entry for an index pack wins), and the highest sequence seen."""
    snaps: dict[bytes, Snapshot] = {}
    index: dict[bytes, IndexPack] = {}
    for man in sorted(manifests, key=lambda x: x.sequence):
        for s in man.body.snapshots:
            snaps[s.id] = s
        for p in man.body.index_packs:
            index.pop(p.pack, None)
            index[p.pack] = p
    top = max((x.sequence for x in manifests), default=0)
    return sorted(snaps.values(), key=lambda s: s.time), list(index.values()), top


async def undelete(repo: Repository) -> dict[str, Any]:
    """Trash back on every member that answers; one manifest with everything."""
    await repo.probe()
    up = repo.up()
    if not up:
        raise PeerUnavailable("no member is reachable: nothing can be brought back")
    restored: dict[str, dict[str, int]] = {}

    async def bring_back(m: Member) -> list[Manifest]:
        try:
            answer = await m.link.undelete()
            restored[m.name or m.node.hex()[:12]] = {
                "restored": answer.restored,
                "already": answer.already,
            }
            return await _manifests(repo, m)
        except PeerbakError as exc:
            log.warning("undelete on %s: %s", m.name, exc)
            return []

    manifests = [x for found in await asyncio.gather(*(bring_back(m) for m in up)) for x in found]
    snaps, index_packs, top = union(manifests)
    founder = repo.roster.founder or b""
    merged = Manifest(
        owner=bytes(repo.node_id),
        sequence=top,
        body=ManifestBody(
            pool=repo.roster.pool,
            founder=founder,
            time=repo.clock(),
            snapshots=snaps,
            index_packs=index_packs,
        ),
    )
    packs = await rebuild_ledger(repo, merged)
    copies = await repo.publish(snaps, index_packs)
    return {
        "members": restored,
        "shards_restored": sum(r["restored"] for r in restored.values()),
        "manifests_read": len(manifests),
        "snapshots": len(snaps),
        "packs": packs,
        "manifest_copies": copies,
    }
