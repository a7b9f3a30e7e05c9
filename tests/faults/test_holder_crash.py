"""kill -9 of a holder in the middle of a put: no partial shard ever shows, a retry works."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from peerbak.adapters import transport
from peerbak.adapters.link import PeerLink, handshake
from peerbak.core import wire
from peerbak.core.codec import ErasureCode
from peerbak.core.ids import NodeId, ShardKey
from peerbak.core.pack import make_shards, pack_id_of
from peerbak.core.pool import ssh_public_key
from tests.integration.nodes import Daemon

pytestmark = pytest.mark.slow


async def _written(incoming: Path, at_least: int) -> None:
    """Until the holder has written ``at_least`` bytes of the half-sent shard (bounded)."""
    async with asyncio.timeout(30):
        while True:
            files = list(incoming.iterdir()) if incoming.exists() else []
            if files and files[0].stat().st_size >= at_least:
                return
            await asyncio.sleep(0.01)  # polling a state that must come, not a timing guess


async def test_kill_9_mid_put_leaves_nothing_and_the_retry_succeeds(tmp_path: Path) -> None:
    holder, owner = Daemon(tmp_path, "holder"), Daemon(tmp_path, "owner")
    try:
        for node in (holder, owner):
            node.init()
            node.start()
        owner.cli("join", holder.cli("invite")["token"])
        pack = memoryview(os.urandom(8 << 20))
        record, shards = make_shards(ErasureCode(1, 2), pack_id_of(pack), pack, [])
        key = ShardKey(record.pack_id, 0)
        held = holder.home / "held" / owner.keys.node_id.hex()
        address = holder.status()["addresses"][0]

        # Half a put: the header and half the data, then the holder dies for real.
        conn = await transport.connect(address, ssh_public_key(holder.keys), owner.ssh_key, 20)
        chan = await transport.open_channel(conn)
        await handshake(chan, bytes(holder.keys.node_id))
        await chan.send(wire.PutShard(header=shards[0].header.to_bytes()))
        half = len(shards[0].data) // 2
        await chan.send_data(memoryview(shards[0].data)[:half])
        await _written(held / "incoming", 1 << 20)
        holder.kill()
        conn.close()
        assert not (held / "shards" / key.text[:2] / key.text).exists()

        holder.start()
        assert list((held / "incoming").iterdir()) == []  # swept at start
        status = holder.status()
        retry = PeerLink(
            NodeId.from_hex(status["node"]),
            status["addresses"],
            ssh_public_key(holder.keys),
            owner.ssh_key,
            timeout=30,
        )
        try:
            await retry.put(key, shards[0])
            assert (await retry.stat(key)).size == shards[0].header.size
            assert (await retry.get(key)).to_bytes() == shards[0].to_bytes()
        finally:
            await retry.close()
    finally:
        holder.kill()
        owner.kill()
