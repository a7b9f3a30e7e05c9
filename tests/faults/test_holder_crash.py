"""kill -9 of a holder in the middle of a put: no partial shard ever shows, a retry works."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from peerbak.codec import ErasureCode
from peerbak.errors import PeerUnavailable
from peerbak.ids import NodeId, ShardKey
from peerbak.link import PeerLink
from peerbak.pack import make_shards, pack_id_of
from peerbak.pool import ssh_public_key
from tests.integration.nodes import Daemon

pytestmark = pytest.mark.slow


async def _incoming_file_growing(incoming: Path, put: asyncio.Task[None]) -> None:
    """Wait (bounded by the put itself) until the holder has started writing the shard."""
    while not put.done():
        files = list(incoming.iterdir()) if incoming.exists() else []
        if files and files[0].stat().st_size > (1 << 20):
            return
        await asyncio.sleep(0.005)  # polling an observable condition, not a timing guess
    raise AssertionError("the put finished before the holder could be killed")


async def test_kill_9_mid_put_leaves_nothing_and_the_retry_succeeds(tmp_path: Path) -> None:
    holder, owner = Daemon(tmp_path, "holder"), Daemon(tmp_path, "owner")
    try:
        for node in (holder, owner):
            node.init()
            node.start()
        owner.cli("join", holder.cli("invite")["token"])
        pack = memoryview(os.urandom(48 << 20))  # 1-of-2: a 48 MiB shard takes a while
        record, shards = make_shards(ErasureCode(1, 2), pack_id_of(pack), pack, [])
        key = ShardKey(record.pack_id, 0)
        held = holder.home / "held" / owner.keys.node_id.hex()

        def link() -> PeerLink:
            status = holder.status() if holder.proc else {"addresses": addresses}
            return PeerLink(
                NodeId(bytes(holder.keys.node_id)),
                status["addresses"],
                ssh_public_key(holder.keys),
                owner.ssh_key,
                timeout=30,
            )

        addresses = holder.status()["addresses"]
        first = link()
        put = asyncio.create_task(first.put(key, shards[0]))
        await _incoming_file_growing(held / "incoming", put)
        holder.kill()
        with pytest.raises(PeerUnavailable):
            await put
        await first.close()
        assert not (held / "shards" / key.text[:2] / key.text).exists()

        holder.start()
        assert list((held / "incoming").iterdir()) == []  # swept at start
        retry = link()
        try:
            await retry.put(key, shards[0])
            assert (await retry.stat(key)).size == shards[0].header.size
        finally:
            await retry.close()
    finally:
        holder.kill()
        owner.kill()
