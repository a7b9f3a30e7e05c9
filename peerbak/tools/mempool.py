"""A pool in one process: an owner's repository over in-process members, for the services'
tests (milliseconds a case, an injected clock and seeded randomness, faults on demand).

Each :class:`MemoryMember` is the very client code :class:`~peerbak.adapters.link.PeerLink`
runs (:class:`~peerbak.adapters.link.MemberClient`), speaking framed wire messages over a
pipe to the real holder service (:class:`~peerbak.services.holder.Holder`) on a real
:class:`~peerbak.adapters.store.DirectoryShareStore` (without fsync). Only SSH and the
network are left out, which the contract suite and the daemon tests cover. The owner's
ledger is the real SQLite ledger, in its real home directory.

A member can be taken down (``up = False``: every request fails as with a member gone)
and brought back; its shards are files a test may damage or delete.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from peerbak.adapters.home import Home
from peerbak.adapters.ledger import Ledger
from peerbak.adapters.link import Call, MemberClient
from peerbak.adapters.store import DirectoryShareStore
from peerbak.core import pool, wire
from peerbak.core.config import default_config_text
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import PeerbakError, PeerUnavailable, RemoteProtocolError
from peerbak.core.ids import NodeId
from peerbak.services.holder import Holder
from peerbak.services.repository import Repository

#: Bytes a member lends and has free unless a test says otherwise.
PLENTY: Final = 1 << 40
#: Data frames on the pipe, as the SSH transport cuts them.
DATA_FRAME: Final = 256 * 1024


class ManualClock:
    """Wall-clock time that moves only when a test says so."""

    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _End:
    """One end of a pipe: what it sends is framed, and parsed again by the other end."""

    def __init__(self, inbox: asyncio.Queue[wire.Message | None], outbox: _Outbox) -> None:
        self._inbox = inbox
        self._out = outbox

    async def recv(self) -> wire.Message | None:
        return await self._inbox.get()

    async def send(self, msg: wire.Message) -> None:
        self._out.put(wire.encode(msg))

    async def send_data(self, data: bytes | bytearray | memoryview) -> None:
        for frame in wire.data_frames(memoryview(data), DATA_FRAME):
            self._out.put(frame)

    def close(self) -> None:
        self._out.close()


class _Outbox:
    """Frames into the peer's inbox through a real framer (sizes capped, fields checked)."""

    def __init__(self, inbox: asyncio.Queue[wire.Message | None]) -> None:
        self._inbox = inbox
        self._framer = wire.Framer(wire.MAX_FRAME)
        self.closed = False

    def put(self, frame: bytes) -> None:
        if self.closed:
            raise PeerUnavailable("the channel is closed")
        for msg in self._framer.feed(frame):
            self._inbox.put_nowait(msg)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._inbox.put_nowait(None)


def _pipe() -> tuple[_End, _End]:
    a: asyncio.Queue[wire.Message | None] = asyncio.Queue()
    b: asyncio.Queue[wire.Message | None] = asyncio.Queue()
    return _End(a, _Outbox(b)), _End(b, _Outbox(a))


class MemoryMember(MemberClient):
    """A member served by a holder in this process; implements the Member port."""

    def __init__(self, node: NodeId, owner: NodeId, holder: Holder, name: str = "") -> None:
        self.node = node
        self.name = name
        self.owner = owner
        self.holder = holder
        self.up = True
        self.requests = 0

    @property
    def warm(self) -> bool:
        return True

    def seen_alive(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @asynccontextmanager
    async def _request(
        self, *, reuse_after_error: bool = True, nbytes: int = 0
    ) -> AsyncIterator[Call]:
        if not self.up:
            raise PeerUnavailable(f"member {self.node.short} is down")
        self.requests += 1
        client, server = _pipe()
        serving = asyncio.create_task(self._serve(server))
        try:
            yield Call(client, None)
        finally:
            client.close()
            await serving  # a bug in the holder surfaces here, not as a hang

    async def _serve(self, chan: _End) -> None:
        """One request, as the daemon's session loop answers it."""
        try:
            msg = await chan.recv()
            if msg is None:
                return
            try:
                handled = await self.holder.handle(self.owner, chan, msg)
            except PeerbakError as exc:
                await chan.send(wire.error_from(exc))
                return
            if not handled:
                raise RemoteProtocolError(f"unexpected {type(msg).__name__} from a member")
        finally:
            chan.close()


class MemoryPool:
    """An owner (node 0) and ``size`` members, each holding the owner's shards on disk
    under ``root``; :meth:`open` gives the owner's repository."""

    def __init__(
        self,
        root: Path,
        size: int = 5,
        *,
        seed: int = 0,
        clock: ManualClock | None = None,
        lend: int = PLENTY,
    ) -> None:
        self.root = root
        self.clock = clock or ManualClock()
        self.rng = random.Random(seed)  # noqa: S311 - a test pool: reproducible on purpose
        secrets = [self.rng.randbytes(32) for _ in range(size + 1)]
        self.owner_secret = secrets[0]
        self.keys = [NodeKeys.derive(s) for s in secrets]
        self.pool_id = self.rng.randbytes(16)
        self.roster = pool.Roster(self.pool_id)
        owner = self.keys[0]
        self.roster.apply(
            pool.found_pool(
                owner, self.pool_id, "owner", ["127.0.0.1:1"], pool.ssh_public_key(owner)
            )
        )
        for i, keys in enumerate(self.keys[1:], 1):
            record = pool.RosterRecord(
                self.pool_id,
                bytes(keys.node_id),
                pool.ssh_public_key(keys),
                f"m{i}",
                ("127.0.0.1:1",),
                bytes(owner.node_id),
                1,
                False,
            )
            self.roster.apply(self.roster.admit(owner, record))
        self._stores: dict[tuple[bytes, bytes], DirectoryShareStore] = {}
        self.lend = {bytes(k.node_id): lend for k in self.keys[1:]}
        self.free = {bytes(k.node_id): PLENTY for k in self.keys[1:]}
        self.members: dict[bytes, MemoryMember] = {}
        for i, keys in enumerate(self.keys[1:], 1):
            node = bytes(keys.node_id)
            self.members[node] = MemoryMember(
                keys.node_id, owner.node_id, self._holder(node), name=f"m{i}"
            )
        self.home = self._new_home("owner")

    @property
    def owner(self) -> NodeKeys:
        return self.keys[0]

    def _holder(self, node: bytes) -> Holder:
        def store_for(owner: NodeId) -> DirectoryShareStore:
            return self.store(node, owner)

        return Holder(
            store_for,
            lend_for=lambda _owner: self.lend[node],
            free_bytes=lambda: self.free[node],
            reserve=0,
        )

    def store(self, node: bytes, owner: NodeId | None = None) -> DirectoryShareStore:
        """Member ``node``'s store of the owner's shards (its files are the test's to damage).

        One per member and owner, opened once as the daemon opens it: opening a store
        sweeps its unfinished writes, so a store per request would sweep a put in flight.
        """
        owner = owner or self.owner.node_id
        key = (node, bytes(owner))
        store = self._stores.get(key)
        if store is None:
            root = self.root / "members" / node.hex()[:12] / "held" / owner.hex()
            store = self._stores[key] = DirectoryShareStore(root, durable=False)
        return store

    def member(self, i: int) -> MemoryMember:
        """The i-th member, counted from 1 as their names are."""
        return self.members[bytes(self.keys[i].node_id)]

    def _new_home(self, name: str) -> Home:
        return Home.create(self.root / name, self.owner_secret, default_config_text("owner", 0))

    async def open(self) -> Repository:
        """The owner's repository over the members, with the pool's clock and a seeded
        random source; its ledger is created, with the roster, on first use."""
        path = self.home.ledger_path
        fresh = not path.exists()
        ledger = await Ledger.open(path, create=fresh)
        if fresh:
            await ledger.add_records(self.roster.blobs(), self.clock())
            await ledger.set_meta("pool", self.pool_id)
        return Repository(
            self.owner,
            ledger,
            self.roster,
            self.members,
            home=self.home,
            clock=self.clock,
            random_bytes=self.rng.randbytes,
            hostname="owner-host",
        )

    def lose_owner(self) -> None:
        """The owner's machine is gone: a new, empty home (the members keep everything)."""
        self.home = self._new_home(f"owner-{self.rng.randbytes(4).hex()}")
