"""The interfaces services depend on; adapters implement them, fakes stand in for tests.

Here: shard stores, the files cache and a channel of wire messages; the pool's members
are in :mod:`peerbak.ports.member`, the node's own directory in
:mod:`peerbak.ports.workspace`. Time is a ``Callable[[], float]`` (as ``time.time``),
randomness a ``Callable[[int], bytes]`` (as ``os.urandom``): parameters, never globals.

Every method says which errors it raises. Only :class:`~peerbak.core.errors.PeerUnavailable`
is worth retrying; an :class:`~peerbak.core.errors.IntegrityError` means the bytes are bad
and asking again for the same bytes will not help.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from peerbak.core.ids import ShardKey
from peerbak.core.pack import Shard, ShardHeader
from peerbak.core.wire import Message


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """What a store knows of a shard without reading its data."""

    key: ShardKey
    header: ShardHeader
    size: int  # bytes of the container, header included


@dataclass(frozen=True, slots=True)
class CachedFile:
    """A file as a backup last saw it (the files cache); unchanged if all but
    ``content`` still match."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    content: bytes  # its chunk ids, concatenated


class FilesCache(Protocol):
    """What the last backups saw, one directory at a time."""

    def lookup(self, parent: bytes) -> dict[bytes, CachedFile]: ...

    def store(self, parent: bytes, files: dict[bytes, CachedFile]) -> None: ...


class ShareStore(Protocol):
    """Shards of one owner, on one holder: a directory, memory, or a friend over SSH.

    Write-once: a shard, once stored, never changes. Putting the same bytes again is a
    no-op; putting other bytes under the same key is a ConflictError. Deleting moves a
    shard to the holder's trash; only the holder empties it.
    """

    async def put(self, key: ShardKey, shard: Shard) -> None:
        """Store a shard durably (returns after fsync and rename).

        :raises IntegrityError: the container's header, length or Merkle root is wrong,
            or it is not the shard ``key`` names. Nothing is stored.
        :raises ConflictError: other bytes are already stored under ``key``.
        :raises StorageError: no room (quota, free-space floor, disk full).
        """
        ...

    async def get(self, key: ShardKey, *, verify: bool = True) -> Shard:
        """The shard, verified against its own header and Merkle root.

        ``verify=False`` checks the header only and leaves the data to the caller, who
        checks the whole rebuilt pack against its id instead (and each shard's root
        only when that fails): one hash of the pack instead of k Merkle trees.

        :raises NotFoundError: no such shard.
        :raises IntegrityError: the stored bytes are damaged.
        """
        ...

    async def get_range(self, key: ShardKey, offset: int, length: int) -> bytes:
        """``length`` bytes of the shard's data from ``offset`` (the header not counted).

        Not verified here: a range is checked by the AEAD of the chunks it holds.

        :raises NotFoundError: no such shard.
        :raises InputError: the range lies outside the shard.
        """
        ...

    async def stat(self, key: ShardKey) -> ShardInfo:
        """Header and size, without reading the data.

        :raises NotFoundError: no such shard.
        :raises IntegrityError: the header is damaged.
        """
        ...

    def list(self) -> AsyncIterator[ShardKey]:
        """Every stored shard's key, in no particular order, streamed."""
        ...

    async def delete(self, key: ShardKey) -> None:
        """Move the shard to the trash. Deleting a missing shard is a no-op."""
        ...


class Channel(Protocol):
    """One conversation with a peer: whole wire messages both ways."""

    async def recv(self) -> Message | None:
        """The next message; None when the peer closed the channel cleanly.

        :raises RemoteProtocolError: the peer sent something malformed.
        :raises PeerUnavailable: the connection broke.
        """
        ...

    async def send(self, msg: Message) -> None: ...

    async def send_data(self, data: bytes | bytearray | memoryview) -> None:
        """``data`` as a run of Data messages."""
        ...


class HeldStore(Protocol):
    """One owner's shards on this holder, as the holder service uses them."""

    async def put_stream(
        self, key: ShardKey, header: ShardHeader, data: AsyncIterator[bytes]
    ) -> None:
        """Store a shard arriving in pieces; visible only once complete and verified.

        :raises IntegrityError: length or Merkle root differ from ``header``.
        :raises ConflictError: other bytes are stored under ``key``.
        """
        ...

    def read_data(self, key: ShardKey, offset: int, length: int) -> AsyncIterator[bytes]: ...

    async def stat(self, key: ShardKey) -> ShardInfo: ...

    def list(self) -> AsyncIterator[ShardKey]: ...

    async def delete(self, key: ShardKey) -> None: ...

    async def put_manifest(self, blob: bytes, sequence: int) -> int:
        """Keep ``blob`` (signature already checked) as the owner's manifest unless one
        with a higher sequence is kept; returns the sequence kept.

        :raises ConflictError: another manifest with the same sequence is kept.
        """
        ...

    async def get_manifest(self) -> bytes:
        """The kept manifest, or b"" if none."""
        ...

    def usage(self) -> int:
        """Bytes of live and trashed shards (blocking)."""
        ...

    async def undelete(self) -> tuple[int, int]:
        """Trashed shards back to the live set: (restored, already live)."""
        ...

    async def trashed_manifest(self, before: int) -> bytes:
        """The trashed manifest with the highest sequence below ``before``, or b""."""
        ...
