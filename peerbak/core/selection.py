"""Which snapshots a command considers, as restic's ``--host``, ``--path`` and ``--tag``
say, and ``SNAPSHOT:subpath`` references."""

from __future__ import annotations

from dataclasses import dataclass

from peerbak.core.objects import Snapshot


@dataclass(frozen=True)
class Selection:
    """Any of the hosts, every one of the paths, any of the tag lists (each list all its
    tags). Empty: every snapshot."""

    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    tags: tuple[frozenset[str], ...] = ()

    def __contains__(self, snap: object) -> bool:
        if not isinstance(snap, Snapshot):
            return False
        if self.hosts and snap.hostname not in self.hosts:
            return False
        if self.paths and not set(self.paths) <= set(snap.paths):
            return False
        return not self.tags or any(wanted <= set(snap.tags) for wanted in self.tags)

    def __bool__(self) -> bool:
        return bool(self.hosts or self.paths or self.tags)

    def __str__(self) -> str:
        parts = [f"host {h}" for h in self.hosts] + [f"path {p}" for p in self.paths]
        parts += [f"tags {','.join(sorted(t))}" for t in self.tags]
        return ", ".join(parts) or "every snapshot"


def split_ref(text: str) -> tuple[str, str]:
    """``latest:/home/me/photos`` → (``latest``, ``/home/me/photos``): a snapshot and a
    directory inside it, as restic writes them; no colon, no subpath."""
    ref, _, sub = text.partition(":")
    return ref, ("/" + sub.strip("/") if sub.strip("/") else "")


#: The selection of every snapshot (the default).
EVERY = Selection()
