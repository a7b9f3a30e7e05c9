"""The snapshots as a read-only file system sees them: what ``peerbak mount`` serves.

:class:`~peerbak.services.browse.Browser` implements it over a repository; the FUSE
adapter (:mod:`peerbak.adapters.fuse`) answers the kernel from it and knows nothing of
snapshots, trees or packs. Paths are raw bytes, absolute from the mount's root
(``b"/snapshots/latest"``): not every name is UTF-8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Stat:
    """One entry's attributes. ``mode`` holds the file type bits (``S_IFDIR`` …) too."""

    mode: int
    size: int = 0
    mtime_ns: int = 0
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    rdev: int = 0
    target: bytes = b""  # a symbolic link's target


class Browsable(Protocol):
    """A read-only tree of snapshots.

    Every method raises FileNotFoundError (or NotADirectoryError) for a path with
    nothing there, and a :class:`~peerbak.core.errors.PeerbakError` when the pool
    cannot give what the snapshot has (not enough shards, damaged bytes).
    """

    async def stat(self, path: bytes) -> Stat: ...

    async def listdir(self, path: bytes) -> list[tuple[bytes, Stat]]:
        """The entries of the directory ``path``, by name (``.`` and ``..`` not listed).

        :raises NotADirectoryError: ``path`` is not a directory.
        """
        ...

    async def read(self, path: bytes, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of the file ``path`` from ``offset`` (fewer at its end).

        :raises IsADirectoryError: ``path`` is a directory.
        """
        ...
