"""A member of the pool as the owner's services reach it: the shards of ours it holds,
our manifest, proofs of storage, and its room.

Two implementations: :class:`~peerbak.adapters.link.PeerLink` over SSH, and the
in-process member of :mod:`peerbak.tools.mempool` that the services' tests use. One
contract suite (``tests/contract/test_member.py``) runs against both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from peerbak.core import wire
from peerbak.core.ids import NodeId, ShardKey
from peerbak.core.pack import Shard
from peerbak.ports import ShardInfo


class Member(Protocol):
    """One member, seen from its owner. Every call may raise PeerUnavailable (the only
    error worth retrying); errors the member reports arrive as their own types."""

    node: NodeId

    @property
    def warm(self) -> bool:
        """Connected already, so a request's time is a round trip, not a dial and login."""
        ...

    def seen_alive(self) -> None:
        """Forget a backoff: the member answered another way, so ask it again at once."""
        ...

    async def close(self) -> None: ...

    # -- the ShareStore port, for our shards on it ---------------------------------------

    async def put(self, key: ShardKey, shard: Shard) -> None:
        """Store a shard durably; see :meth:`peerbak.ports.ShareStore.put`."""
        ...

    async def get(self, key: ShardKey, *, verify: bool = True) -> Shard: ...

    async def get_range(self, key: ShardKey, offset: int, length: int) -> bytes: ...

    async def stat(self, key: ShardKey) -> ShardInfo: ...

    def list(self) -> AsyncIterator[ShardKey]:
        """Our shards on the member, in order of (pack id, index), streamed in pages."""
        ...

    async def delete(self, key: ShardKey) -> None:
        """Move the shard to the member's trash (it keeps it for its grace period)."""
        ...

    # -- beyond shards ---------------------------------------------------------------------

    async def space(self) -> wire.SpaceInfo:
        """What it lends us, what we use, and its free disk above its floor."""
        ...

    async def reach_me(self, port: int) -> wire.Reached:
        """Ask it to dial us back on ``port`` at the address it sees our session from."""
        ...

    async def put_manifest(self, blob: bytes) -> int:
        """Give it our signed manifest; returns the sequence it keeps (ours or newer)."""
        ...

    async def get_manifest(self) -> bytes:
        """The manifest of ours it keeps, or b""."""
        ...

    async def challenge(self, key: ShardKey, nonce: bytes, leaves: Sequence[int]) -> wire.Proof:
        """The asked leaves of a shard with their audit paths; the caller checks them."""
        ...

    async def undelete(self) -> wire.Undeleted:
        """Every shard of ours in its trash back to the live set."""
        ...

    async def trashed_manifest(self, before: int) -> bytes:
        """The replaced manifest with the highest sequence below ``before``, or b""."""
        ...
