"""The holder side: what a node does with the shards its friends (owners) give it.

The owner is always the member the SSH key authenticated, never something a message
says, so an owner can only ever touch its own ``held/<owner-id>/``. Quota (what this
node lends that owner) and the free-space floor are checked, with the shard's
declared size reserved, before a byte is written. Any error during a put ends the
session after the Error reply: the rest of the stream could not be framed reliably.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Callable
from typing import Final

from peerbak.core import merkle, objects, wire
from peerbak.core.errors import (
    InputError,
    IntegrityError,
    RemoteProtocolError,
    StorageError,
)
from peerbak.core.ids import NodeId, PackId, ShardKey
from peerbak.core.pack import SHARD_HEADER_LEN, ShardHeader
from peerbak.ports import Channel, HeldStore

#: Shard keys per List answer.
LIST_PAGE: Final = 10_000


class QuotaExceeded(StorageError):
    """The owner would use more than this holder lends it."""

    code = "quota"


class NoSpace(StorageError):
    """The write would take the disk below the holder's free-space floor."""

    code = "no-space"


class Holder:
    """Serves owners' requests on their own shards, within what this node lends them."""

    def __init__(
        self,
        store_for: Callable[[NodeId], HeldStore],
        lend_for: Callable[[NodeId], int],
        free_bytes: Callable[[], int],
        reserve: int,
    ) -> None:
        self._store_for = store_for
        self._lend_for = lend_for
        self._free_bytes = free_bytes
        self._reserve = reserve
        self._used: dict[NodeId, int] = {}
        self._reserved: dict[NodeId, int] = {}
        self._lock = asyncio.Lock()

    async def used(self, owner: NodeId) -> int:
        """Bytes of the owner's live shards held here (counted once, then kept current)."""
        if owner not in self._used:
            store = self._store_for(owner)
            self._used[owner] = await asyncio.to_thread(store.usage)
        return self._used[owner]

    def forget_usage(self, owner: NodeId) -> None:
        """Count the owner's usage anew next time (after the holder purged its trash)."""
        self._used.pop(owner, None)

    async def handle(self, owner: NodeId, chan: Channel, msg: wire.Message) -> bool:
        """Answer one holder request; False if ``msg`` is not one (the caller decides).

        Returns normally after an error reply that leaves the session usable; raises
        after one that does not (a failed put).
        """
        store = self._store_for(owner)
        match msg:
            case wire.PutShard():
                await self._put(owner, store, chan, msg)
            case wire.GetShard(pack=pack, index=index):
                key = _key(pack, index)
                info = await store.stat(key)
                await chan.send(wire.ShardFollows(header=info.header.to_bytes()))
                await self._send_data(chan, store, key, 0, info.header.shard_length)
            case wire.GetRange(pack=pack, index=index, offset=offset, length=length):
                key = _key(pack, index)
                pieces = store.read_data(key, offset, length)
                first = await anext(pieces)  # range errors surface before the reply
                await chan.send(wire.RangeFollows(length=length))
                await chan.send_data(first)
                async for piece in pieces:
                    await chan.send_data(piece)
            case wire.Stat(pack=pack, index=index):
                info = await store.stat(_key(pack, index))
                await chan.send(wire.ShardStat(header=info.header.to_bytes(), size=info.size))
            case wire.List(after=after, limit=limit):
                keys = sorted([_raw(k) async for k in store.list()])
                start = bisect.bisect_right(keys, bytes(after)) if after else 0
                page = keys[start : start + min(limit, LIST_PAGE)]
                more = start + len(page) < len(keys)
                await chan.send(wire.ShardList(shards=page, more=more))
            case wire.Delete(pack=pack, index=index):
                # Moved to the trash, the shard still counts against the owner's quota
                # until the holder purges it (see forget_usage).
                await store.delete(_key(pack, index))
                await chan.send(wire.Deleted())
            case wire.PutManifest(manifest=blob):
                signer, sequence = objects.manifest_header(blob)
                if signer != bytes(owner):
                    raise IntegrityError(
                        f"a manifest signed by {signer.hex()[:12]} offered by {owner.short}",
                        obj="manifest",
                        check="owner",
                    )
                kept = await store.put_manifest(blob, sequence)
                await chan.send(wire.ManifestStored(sequence=kept))
            case (
                wire.GetManifest() | wire.Challenge() | wire.Undelete() | wire.GetTrashedManifest()
            ):
                await chan.send(await self._answer(owner, store, msg))
            case wire.Space():
                used = await self.used(owner)
                free = max(0, self._free_bytes() - self._reserve)
                await chan.send(wire.SpaceInfo(quota=self._lend_for(owner), used=used, free=free))
            case _:
                return False
        return True

    async def _answer(
        self,
        owner: NodeId,
        store: HeldStore,
        msg: wire.GetManifest | wire.Challenge | wire.Undelete | wire.GetTrashedManifest,
    ) -> wire.Message:
        """The requests answered by one message."""
        match msg:
            case wire.GetManifest():
                return wire.ManifestIs(manifest=await store.get_manifest())
            case wire.Challenge():
                return await _prove(store, msg)
            case wire.Undelete():
                restored, already = await store.undelete()
                self.forget_usage(owner)
                return wire.Undeleted(restored=restored, already=already)
            case wire.GetTrashedManifest(before=before):
                return wire.ManifestIs(manifest=await store.trashed_manifest(before))

    async def _send_data(
        self, chan: Channel, store: HeldStore, key: ShardKey, offset: int, length: int
    ) -> None:
        async for piece in store.read_data(key, offset, length):
            await chan.send_data(piece)

    async def _put(
        self, owner: NodeId, store: HeldStore, chan: Channel, msg: wire.PutShard
    ) -> None:
        header = ShardHeader.parse(msg.header)
        key = ShardKey(header.pack_id, header.index)
        size = SHARD_HEADER_LEN + header.shard_length
        async with self._lock:  # check and reserve together: two puts cannot both fit
            used = await self.used(owner) + self._reserved.get(owner, 0)
            lend = self._lend_for(owner)
            if used + size > lend:
                raise QuotaExceeded(
                    f"shard {key.text} ({size} bytes) would exceed the {lend} bytes lent "
                    f"to this owner ({used} used)"
                )
            # Puts in flight (any owner's) have not written all they reserved yet.
            in_flight = sum(self._reserved.values())
            if self._free_bytes() - in_flight - size < self._reserve:
                raise NoSpace(
                    f"shard {key.text}: storing {size} bytes would leave less than the "
                    f"{self._reserve} bytes this holder keeps free"
                )
            self._reserved[owner] = self._reserved.get(owner, 0) + size
        try:
            await store.put_stream(key, header, _data_frames(chan, header.shard_length))
            self._used[owner] = self._used.get(owner, 0) + size
        finally:
            self._reserved[owner] -= size
        await chan.send(wire.Stored())


async def _prove(store: HeldStore, msg: wire.Challenge) -> wire.Proof:
    """The challenged leaves and their audit paths, from one read of the whole shard.

    The path is computed from the data on disk, not from a hash kept aside, so any
    damage anywhere in the shard makes every answer about it wrong: one challenge
    checks the whole shard, not just the leaves it names.
    """
    key = _key(msg.pack, msg.index)
    info = await store.stat(key)
    length = info.header.shard_length
    count = merkle.leaf_count(length)
    for i in msg.leaves:
        if i >= count:
            raise InputError(f"shard {key.text} has {count} leaves; leaf {i} was asked for")
    hasher = merkle.LeafHasher()
    wanted: dict[int, bytearray] = {i: bytearray() for i in msg.leaves}
    offset = 0
    async for piece in store.read_data(key, 0, length):
        await asyncio.to_thread(hasher.update, piece)
        end = offset + len(piece)
        for i, kept in wanted.items():
            lo, hi = max(i * merkle.LEAF_SIZE, offset), min((i + 1) * merkle.LEAF_SIZE, end)
            if lo < hi:
                kept.extend(piece[lo - offset : hi - offset])
        offset = end
    tree = merkle.MerkleTree(hasher.hashes())
    return wire.Proof(
        nonce=msg.nonce,
        leaves=[bytes(wanted[i]) for i in msg.leaves],
        paths=[tree.proof(i) for i in msg.leaves],
    )


async def _data_frames(chan: Channel, length: int) -> AsyncIterator[bytes]:
    """Exactly ``length`` bytes of Data messages; anything else breaks the protocol."""
    got = 0
    while got < length:
        msg = await chan.recv()
        if not isinstance(msg, wire.Data):
            raise RemoteProtocolError(
                f"expected shard data ({got} of {length} bytes received), got "
                f"{type(msg).__name__ if msg is not None else 'end of channel'}"
            )
        got += len(msg.data)
        if got > length:
            raise IntegrityError(
                f"{got} bytes of shard data, {length} declared", obj="shard", check="length"
            )
        yield msg.data


def _key(pack: bytes, index: int) -> ShardKey:
    return ShardKey(PackId(pack), index)


def _raw(key: ShardKey) -> bytes:
    return bytes(key.pack) + bytes((key.index,))
