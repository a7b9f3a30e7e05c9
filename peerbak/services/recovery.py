"""A ledger rebuilt from the pool: the newest manifest any member keeps, and the index
objects it lists (protocol/snapshots.md §6). ``peerbak recover`` (see
:mod:`peerbak.node.recover`) and ``undelete`` use it; the ledger is a cache of what
the manifest and the index say.
"""

from __future__ import annotations

from peerbak.core import objects
from peerbak.core.objects import Manifest
from peerbak.services.repository import DATA, META, Repository


async def rebuild_from_pool(repo: Repository, first: Manifest) -> tuple[Manifest, int]:
    """The ledger's packs and snapshots from the newest of ``first`` (a manifest already
    checked) and what the members keep; returns that manifest and the packs imported."""
    await repo.probe()
    newest = await repo.latest_manifest()
    manifest = newest if newest and newest.sequence > first.sequence else first
    return manifest, await rebuild_ledger(repo, manifest)


async def rebuild_ledger(repo: Repository, manifest: Manifest) -> int:
    """The ledger's packs, blobs and snapshots from the manifest and its index objects."""
    ledger = repo.ledger
    now = repo.clock()
    packs = 0
    for listed in manifest.body.index_packs:
        await ledger.import_pack(listed.record(), META, listed.holders, True, now)
        for item in await repo.read_index(listed):
            await ledger.import_pack(item.record(), DATA, item.holders, True, now)
            packs += 1
        packs += 1
    for snap in manifest.body.snapshots:
        await ledger.add_snapshot(snap.id, snap.time, objects.encode(snap))
    await ledger.set_meta("manifest_seq", manifest.sequence.to_bytes(8, "big"))
    await ledger.set_meta(
        "index_packs", objects.encode(objects.Index(packs=manifest.body.index_packs))
    )
    return packs
