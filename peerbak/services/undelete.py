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
from dataclasses import dataclass, field
from typing import Any, Final

from peerbak.core import objects
from peerbak.core.errors import IntegrityError, PeerbakError, PeerUnavailable
from peerbak.core.objects import IndexPack, Manifest, ManifestBody, Snapshot
from peerbak.services.recovery import rebuild_ledger
from peerbak.services.repository import Peer, Repository, crash_point

log = logging.getLogger(__name__)

#: Trashed manifests read per member at most: a holder keeps at most its
#: ``storage.keep_manifests`` (2000 by default); this only stops a lying one.
MANIFESTS_PER_MEMBER: Final = 100_000
_TOP: Final = (1 << 63) - 1


@dataclass
class Union:
    """Snapshots and index packs of every manifest read, merged as each is read (memory
    grows with what the union holds, not with how many manifests a member kept).

    For an index pack listed by several manifests, the entry of the newest manifest wins
    (its placement after a repair), and the list keeps manifests' order: recovery applies
    index packs in list order."""

    snaps: dict[bytes, Snapshot] = field(default_factory=dict)
    index: dict[bytes, tuple[int, int, IndexPack]] = field(default_factory=dict)
    top: int = 0
    read: int = 0

    def add(self, man: Manifest) -> None:
        self.read += 1
        self.top = max(self.top, man.sequence)
        for s in man.body.snapshots:
            self.snaps[s.id] = s
        for at, p in enumerate(man.body.index_packs):
            held = self.index.get(p.pack)
            if held is None or held[:2] < (man.sequence, at):
                self.index[p.pack] = (man.sequence, at, p)

    def result(self) -> tuple[list[Snapshot], list[IndexPack]]:
        snaps = sorted(self.snaps.values(), key=lambda s: s.time)
        return snaps, [p for _, _, p in sorted(self.index.values(), key=lambda x: x[:2])]


async def _read_all(repo: Repository, m: Peer, into: Union) -> None:
    """The member's current manifest and every trashed one, newest first, each checked
    (signed by this node, decrypting with its key, naming this pool) and merged."""

    def take(blob: bytes) -> None:
        try:
            into.add(repo.open_manifest(blob))
        except IntegrityError as exc:
            log.warning("member %s keeps a bad manifest: %s", m.name, exc)

    current = await m.link.get_manifest()
    if current:
        take(current)
    before = _TOP
    for _ in range(MANIFESTS_PER_MEMBER):
        blob = await m.link.trashed_manifest(before)
        if not blob:
            return
        # Unchecked, only to ask for the next older one: a damaged manifest is skipped
        # (``take`` logs it), not the end of this member's trash.
        _, sequence = objects.manifest_sequence(blob)
        if sequence >= before:
            raise IntegrityError(
                f"member {m.name} answered a trashed manifest {sequence}, not below {before}",
                obj="manifest",
                check="order",
            )
        before = sequence
        take(blob)
    log.warning("member %s keeps more than %d manifests: read no further", m.name, before)


async def undelete(repo: Repository) -> dict[str, Any]:
    """Trash back on every member that answers; one manifest with everything."""
    await repo.probe()
    up = repo.up()
    if not up:
        raise PeerUnavailable("no member is reachable: nothing can be brought back")
    restored: dict[str, dict[str, int]] = {}

    merged_in = Union()

    async def bring_back(m: Peer) -> None:
        try:
            answer = await m.link.undelete()
            restored[m.name or m.node.hex()[:12]] = {
                "restored": answer.restored,
                "already": answer.already,
            }
            await _read_all(repo, m, merged_in)
        except PeerbakError as exc:
            log.warning("undelete on %s: %s", m.name, exc)

    await asyncio.gather(*(bring_back(m) for m in up))
    crash_point("undelete-moved")
    snaps, index_packs = merged_in.result()
    top = merged_in.top
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
        "manifests_read": merged_in.read,
        "snapshots": len(snaps),
        "packs": packs,
        "manifest_copies": copies,
    }
