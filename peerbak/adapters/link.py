"""A member, seen from this node: the Member port over SSH, and the join call.

The requests are written once, in :class:`MemberClient`, over any
:class:`~peerbak.ports.Channel`: :class:`PeerLink` runs them on SSH channels, and the
in-process member of :mod:`peerbak.tools.mempool` on a pipe to a holder in the same
process, so the services' tests exercise this very code.

Each request runs on one of a few channels of one SSH connection, under a timeout.
A member that fails to answer is marked down for a backoff period (1 s doubling to
5 min): meanwhile requests fail at once with PeerUnavailable, so a dead member costs
one timeout for a whole backup or restore, not one per shard.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, TypeVar

from peerbak import __version__
from peerbak.adapters import transport
from peerbak.adapters.sshlib import asyncssh
from peerbak.adapters.transport import FramedChannel
from peerbak.core import wire
from peerbak.core.errors import (
    InputError,
    IntegrityError,
    PeerbakError,
    PeerUnavailable,
    RemoteProtocolError,
)
from peerbak.core.ids import NodeId, PackId, ShardKey
from peerbak.core.pack import Shard, ShardHeader
from peerbak.ports import Channel, ShardInfo

T = TypeVar("T", bound=wire.Message)

SOFTWARE: Final = f"peerbak {__version__}"
BACKOFF_MIN: Final = 1.0
#: The slowest transfer rate taken for a live member (bytes/s; 2 Mbit/s): a request's
#: deadline grows by its bytes at this rate, so a Pi on a thin uplink is not called dead.
MIN_RATE: Final = 256 * 1024
BACKOFF_MAX: Final = 300.0
#: Deadline bytes granted to a ReachMe: 15 s at MIN_RATE (the member dials for up to 10 s).
REACH_ALLOWANCE: Final = 15 * MIN_RATE


async def handshake(chan: FramedChannel, expect_node: bytes) -> wire.Welcome:
    """Hello → Welcome; the answering node must be the one we meant to reach."""
    await chan.send(wire.Hello(versions=[wire.PROTOCOL_VERSION], software=SOFTWARE))
    welcome = await expect(chan, wire.Welcome)
    if welcome.node != expect_node:
        raise RemoteProtocolError(
            f"expected node {expect_node.hex()[:12]}, reached {welcome.node.hex()[:12]}"
        )
    return welcome


async def handshake_any(chan: FramedChannel) -> wire.Welcome:
    """Hello → Welcome with a node whose id we learn from its answer (recovery only:
    what it then says is checked against our own signed manifest)."""
    await chan.send(wire.Hello(versions=[wire.PROTOCOL_VERSION], software=SOFTWARE))
    return await expect(chan, wire.Welcome)


async def expect(chan: Channel, kind: type[T]) -> T:
    """The next message, which must be ``kind``; an Error reply is raised as its error."""
    msg = await chan.recv()
    if isinstance(msg, kind):
        return msg
    if isinstance(msg, wire.Error):
        wire.raise_for(msg)
    got = "end of channel" if msg is None else type(msg).__name__
    raise RemoteProtocolError(f"expected {kind.__name__}, got {got}")


async def _collect(chan: Channel, length: int) -> bytearray:
    out = bytearray()
    while len(out) < length:
        data = await expect(chan, wire.Data)
        out += data.data
        if len(out) > length:
            raise RemoteProtocolError(f"{len(out)} bytes sent where {length} were announced")
    return out


class Call:
    """One request in flight: its channel and its deadline (None: no deadline)."""

    def __init__(self, chan: Channel, deadline: asyncio.Timeout | None) -> None:
        self.chan = chan
        self._deadline = deadline

    def allow(self, nbytes: int) -> None:
        """Extend the deadline for ``nbytes`` more at MIN_RATE (a size the peer announced)."""
        if self._deadline is None:
            return
        when = self._deadline.when()
        if when is not None:
            self._deadline.reschedule(when + nbytes / MIN_RATE)


class MemberClient:
    """The Member port's requests, over whatever channel ``_request`` provides."""

    node: NodeId

    def _request(
        self, *, reuse_after_error: bool = True, nbytes: int = 0
    ) -> AbstractAsyncContextManager[Call]:
        """A channel for one request, under a deadline of the link's choosing;
        ``reuse_after_error`` says whether an error reply leaves the channel usable."""
        raise NotImplementedError

    # -- the ShareStore port ------------------------------------------------------------------

    async def put(self, key: ShardKey, shard: Shard) -> None:
        if (shard.header.pack_id, shard.header.index) != (key.pack, key.index):
            # The holder files a shard under its header's key: a mismatch is our bug.
            raise InputError(
                f"shard {shard.header.pack_id.hex()}.{shard.header.index} put as {key.text}"
            )
        async with self._request(reuse_after_error=False, nbytes=len(shard.data)) as call:
            chan = call.chan
            await chan.send(wire.PutShard(header=shard.header.to_bytes()))
            try:
                await chan.send_data(shard.data)
            except PeerUnavailable:
                await expect(chan, wire.Stored)  # the holder refused early: surface why
                raise
            await expect(chan, wire.Stored)

    async def get(self, key: ShardKey, *, verify: bool = True) -> Shard:
        async with self._request() as call:
            chan = call.chan
            await chan.send(wire.GetShard(pack=bytes(key.pack), index=key.index))
            follows = await expect(chan, wire.ShardFollows)
            header = ShardHeader.parse(follows.header)
            call.allow(header.shard_length)
            data = await _collect(chan, header.shard_length)
        if (header.pack_id, header.index) != (key.pack, key.index):
            raise IntegrityError(
                f"member {self.node.short} sent shard {header.pack_id.hex()}.{header.index} "
                f"for {key.text}",
                obj="shard",
                ident=key.text,
                check="key",
            )
        shard = Shard(header, data)
        if verify:
            await asyncio.to_thread(shard.verify)
        return shard

    async def get_range(self, key: ShardKey, offset: int, length: int) -> bytes:
        async with self._request(nbytes=length) as call:
            chan = call.chan
            await chan.send(
                wire.GetRange(pack=bytes(key.pack), index=key.index, offset=offset, length=length)
            )
            follows = await expect(chan, wire.RangeFollows)
            if follows.length != length:
                raise RemoteProtocolError(f"asked {length} bytes, offered {follows.length}")
            return bytes(await _collect(chan, length))

    async def stat(self, key: ShardKey) -> ShardInfo:
        async with self._request() as call:
            chan = call.chan
            await chan.send(wire.Stat(pack=bytes(key.pack), index=key.index))
            answer = await expect(chan, wire.ShardStat)
        return ShardInfo(key, ShardHeader.parse(answer.header), answer.size)

    async def list(self) -> AsyncIterator[ShardKey]:
        after = b""
        while True:
            async with self._request() as call:
                chan = call.chan
                await chan.send(wire.List(after=after, limit=10_000))
                page = await expect(chan, wire.ShardList)
            for raw in page.shards:
                yield ShardKey(PackId(raw[:32]), raw[32])
            if not page.more or not page.shards:
                return
            after = page.shards[-1]

    async def delete(self, key: ShardKey) -> None:
        async with self._request() as call:
            chan = call.chan
            await chan.send(wire.Delete(pack=bytes(key.pack), index=key.index))
            await expect(chan, wire.Deleted)

    # -- beyond the port ----------------------------------------------------------------------

    async def space(self) -> wire.SpaceInfo:
        async with self._request() as call:
            chan = call.chan
            await chan.send(wire.Space())
            return await expect(chan, wire.SpaceInfo)

    async def reach_me(self, port: int) -> wire.Reached:
        """Ask the member to dial us back on ``port`` (at the address it sees us from)."""
        # The member may take up to 10 s to dial: allow that on top of the usual deadline.
        async with self._request(nbytes=REACH_ALLOWANCE) as call:
            await call.chan.send(wire.ReachMe(port=port))
            return await expect(call.chan, wire.Reached)

    async def put_manifest(self, blob: bytes) -> int:
        """Give the member our manifest; returns the sequence it keeps (ours, or a
        newer one it already had)."""
        async with self._request(nbytes=len(blob)) as call:
            await call.chan.send(wire.PutManifest(manifest=blob))
            return (await expect(call.chan, wire.ManifestStored)).sequence

    async def get_manifest(self) -> bytes:
        async with self._request(nbytes=wire.MANIFEST_MAX) as call:
            await call.chan.send(wire.GetManifest())
            return (await expect(call.chan, wire.ManifestIs)).manifest

    async def challenge(self, key: ShardKey, nonce: bytes, leaves: Sequence[int]) -> wire.Proof:
        """Ask for leaves of a shard with their audit paths; the caller checks them."""
        async with self._request(nbytes=len(leaves) * 8192) as call:
            await call.chan.send(
                wire.Challenge(
                    pack=bytes(key.pack), index=key.index, nonce=nonce, leaves=list(leaves)
                )
            )
            return await expect(call.chan, wire.Proof)

    async def undelete(self) -> wire.Undeleted:
        async with self._request() as call:
            await call.chan.send(wire.Undelete())
            return await expect(call.chan, wire.Undeleted)

    async def trashed_manifest(self, before: int) -> bytes:
        async with self._request(nbytes=wire.MANIFEST_MAX) as call:
            await call.chan.send(wire.GetTrashedManifest(before=before))
            return (await expect(call.chan, wire.ManifestIs)).manifest

    async def get_roster(self) -> builtins.list[bytes]:
        async with self._request() as call:
            await call.chan.send(wire.GetRoster())
            return list((await expect(call.chan, wire.RosterIs)).records)

    async def push_roster(self, records: Sequence[bytes]) -> int:
        async with self._request() as call:
            chan = call.chan
            await chan.send(wire.RosterPush(records=[bytes(r) for r in records]))
            return (await expect(chan, wire.RosterAck)).accepted


class PeerLink(MemberClient):
    """One member, reached over SSH."""

    def __init__(
        self,
        node: NodeId,
        addresses: Sequence[str],
        host_key: bytes,
        client_key: asyncssh.SSHKey,
        *,
        timeout: float = 30.0,
        channels: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.addresses = list(addresses)
        self.host_key = host_key
        self.timeout = timeout
        self._client_key = client_key
        self._clock = clock
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()
        self._idle: list[FramedChannel] = []
        self._slots = asyncio.Semaphore(channels)
        self._down_until = 0.0
        self._backoff = BACKOFF_MIN
        self.last_error = ""

    # -- connection management ------------------------------------------------------------

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._connecting:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            self._drop()  # the member restarted or the network broke: dial again
            errors = []
            for address in self.addresses:
                try:
                    self._conn = await transport.connect(
                        address, self.host_key, self._client_key, self.timeout
                    )
                    return self._conn
                except PeerUnavailable as exc:
                    errors.append(str(exc))
            raise PeerUnavailable(
                f"member {self.node.short}: " + ("; ".join(errors) or "no known address")
            )

    async def _open(self) -> FramedChannel:
        conn = await self._connection()
        chan = await transport.open_channel(conn)
        await handshake(chan, bytes(self.node))
        return chan

    def seen_alive(self) -> None:
        """News that the member is up (it called us, or announced new addresses):
        forget the backoff so the next request tries at once."""
        self._down_until = 0.0
        self._backoff = BACKOFF_MIN

    def _idle_channel(self) -> FramedChannel | None:
        while self._idle:
            chan = self._idle.pop()
            if not chan.closing:
                return chan
            chan.close()
        return None

    def _mark_down(self, why: str) -> None:
        self.last_error = why
        self._down_until = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        self._drop()

    def _drop(self) -> None:
        for chan in self._idle:
            chan.close()
        self._idle.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def warm(self) -> bool:
        """A request now costs one round trip: connected, with an idle channel open."""
        conn = self._conn
        return conn is not None and not conn.is_closed() and any(not c.closing for c in self._idle)

    @property
    def cipher(self) -> str:
        """The negotiated cipher of the current connection, for reports."""
        if self._conn is None:
            return ""
        return str(self._conn.get_extra_info("send_cipher", ""))

    async def close(self) -> None:
        conn = self._conn
        self._drop()
        if conn is not None:
            await conn.wait_closed()

    @asynccontextmanager
    async def _request(
        self, *, reuse_after_error: bool = True, nbytes: int = 0
    ) -> AsyncIterator[Call]:
        """A channel for one request, under a deadline of ``timeout`` plus ``nbytes`` at
        MIN_RATE; :meth:`Call.allow` extends it once a peer announces a size."""
        wait = self._down_until - self._clock()
        if wait > 0:
            raise PeerUnavailable(
                f"member {self.node.short} is unreachable ({self.last_error}); "
                f"next try in {wait:.0f} s"
            )
        async with self._slots:
            reusable = False
            chan: FramedChannel | None = None
            try:
                async with asyncio.timeout(self.timeout + nbytes / MIN_RATE) as deadline:
                    chan = self._idle_channel() or await self._open()
                    try:
                        yield Call(chan, deadline)
                        reusable = True
                    except PeerbakError as exc:
                        reusable = reuse_after_error and not isinstance(
                            exc, (PeerUnavailable, RemoteProtocolError)
                        )
                        raise
            except TimeoutError:
                self._mark_down(f"no answer within {self.timeout:.0f} s")
                raise PeerUnavailable(
                    f"member {self.node.short} did not answer within {self.timeout:.0f} s"
                ) from None
            except PeerUnavailable as exc:
                self._mark_down(str(exc))
                raise
            finally:
                if chan is not None:
                    if reusable and self._conn is not None:
                        self._idle.append(chan)
                    else:
                        chan.close()
            self._backoff = BACKOFF_MIN


async def request_join(
    addresses: Sequence[str],
    host_key: bytes,
    inviter: bytes,
    client_key: asyncssh.SSHKey,
    request: wire.JoinRequest,
    timeout: float = 30.0,
) -> wire.JoinAccepted:
    """Ask the inviter to admit us; its host key comes from the token, never from the wire."""
    errors = []
    for address in addresses:
        try:
            conn = await transport.connect(address, host_key, client_key, timeout)
        except transport.KeyRefused:
            raise InputError(
                "the inviter has no open invite any more: this one was already used, has "
                "expired, or was not made there; ask for a new one"
            ) from None
        except PeerUnavailable as exc:
            errors.append(str(exc))
            continue
        try:
            async with asyncio.timeout(timeout):
                chan = await transport.open_channel(conn)
                await handshake(chan, inviter)
                await chan.send(request)
                return await expect(chan, wire.JoinAccepted)
        except TimeoutError:
            raise PeerUnavailable(f"{address} did not answer within {timeout:.0f} s") from None
        finally:
            conn.close()
    raise PeerUnavailable("cannot reach the inviter: " + "; ".join(errors))
