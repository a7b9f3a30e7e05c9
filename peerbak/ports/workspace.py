"""The node's own place on disk, as services need it: its config, the writer's lock,
room for scratch files, and what it holds for others.

:class:`~peerbak.adapters.home.Home` implements it; services never learn its layout.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from peerbak.core.config import Config
from peerbak.core.ids import NodeId


@dataclass(frozen=True, slots=True)
class Held:
    """What this node keeps for one owner: bytes on disk (live and trash), and the
    owner's replaced manifests in the trash (count, bytes)."""

    size: int
    manifests: int
    manifest_bytes: int


class Workspace(Protocol):
    def config(self) -> Config:
        """The node's config, read now (the user may have edited it)."""
        ...

    def lock(self, who: str, *, wait: float = 0.0) -> AbstractContextManager[None]:
        """One writer of this node's packs at a time (backup, repair, prune, forget,
        undelete); dies with its process, kill -9 too.

        A second writer is refused at once with Locked; one finding the daemon's
        ``maintenance`` holding it waits up to ``wait`` seconds for it to let go.
        """
        ...

    @property
    def scratch_dir(self) -> Path:
        """A private directory for a command's temporary files."""
        ...

    def held_for(self, owner: NodeId) -> Held:
        """What this node keeps for ``owner`` (blocking: walks its directory)."""
        ...

    def manifest_received(self, owner: NodeId) -> float | None:
        """When this node last took a new manifest from ``owner`` (its last backup
        that reached us), or None if it never did."""
        ...
