"""``peerbak tag``: add, remove or set the tags of snapshots after the fact, as restic's
``tag`` does. A snapshot keeps its id (it is random, not derived from its contents);
the members get a manifest with the new tags first, then the ledger takes them, so a
crash between leaves the pool's word, which a later publish or recovery restores."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from peerbak.core import objects
from peerbak.core.errors import InputError
from peerbak.core.objects import Snapshot
from peerbak.core.selection import EVERY, Selection
from peerbak.services.index import republish
from peerbak.services.repository import Repository

#: Tags one snapshot may carry (the snapshot format's limit).
MAX_TAGS: Final = 64


async def retag(
    repo: Repository,
    refs: Sequence[str] = (),
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    set_to: Iterable[str] | None = None,
    only: Selection = EVERY,
) -> list[Snapshot]:
    """Change the tags of the snapshots ``refs`` names (else of those ``only``
    selects); returns the snapshots changed, with their new tags. The caller holds
    the writer's lock."""
    add, remove = set(add), set(remove)
    fresh = None if set_to is None else set(set_to)
    if not (add or remove or fresh is not None):
        raise InputError("say what to change: --add, --remove or --set")
    for tag in add | (fresh or set()):
        if not tag or "," in tag or len(tag) > 255:
            raise InputError(f"{tag!r} is not a tag (1 to 255 characters, no comma)")
    await repo.probe()
    snaps = await repo.snapshots()
    chosen = {(await repo.find_snapshot(r)).id for r in refs} if refs else None
    changed: list[Snapshot] = []
    every: list[Snapshot] = []
    for old in snaps:
        snap = old
        if (old.id in chosen) if chosen is not None else (old in only):
            tags = (set(old.tags) if fresh is None else set(fresh)) | add
            new = sorted(tags - remove)
            if len(new) > MAX_TAGS:
                raise InputError(
                    f"snapshot {old.short} would have {len(new)} tags; at most {MAX_TAGS}"
                )
            if new != old.tags:
                snap = msgspec.structs.replace(old, tags=new)
                changed.append(snap)
        every.append(snap)
    if changed:
        await republish(repo, every, unless="no tag was changed")
        for snap in changed:
            await repo.ledger.add_snapshot(snap.id, snap.time, objects.encode(snap))
    return changed
