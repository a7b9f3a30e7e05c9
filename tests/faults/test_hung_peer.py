"""A member that hangs costs one timeout; then it is skipped until its backoff expires."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from peerbak.adapters.link import BACKOFF_MIN, PeerLink
from peerbak.adapters.transport import private_key
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import PeerUnavailable
from peerbak.core.ids import NodeId, PackId, ShardKey
from peerbak.core.pool import ssh_public_key


class _Tarpit:
    """Accepts TCP connections and never says a word (a hung machine, a black hole)."""

    def __init__(self) -> None:
        self.connections = 0
        self._held: list[asyncio.StreamWriter] = []

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._held.append(writer)

    def close(self) -> None:
        for writer in self._held:
            writer.close()


@pytest.fixture
async def tarpit() -> AsyncIterator[tuple[_Tarpit, str]]:
    pit = _Tarpit()
    server = await asyncio.start_server(pit.accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield pit, f"127.0.0.1:{port}"
    finally:
        pit.close()
        server.close()
        await server.wait_closed()


async def test_a_hung_member_costs_one_timeout_then_waits_out_its_backoff(
    tarpit: tuple[_Tarpit, str],
) -> None:
    pit, address = tarpit
    member, me = NodeKeys.derive(bytes(range(32))), NodeKeys.derive(bytes(32))
    now = [1000.0]
    link = PeerLink(
        NodeId(bytes(member.node_id)),
        [address],
        ssh_public_key(member),
        private_key(me.ssh_seed),
        timeout=0.5,
        clock=lambda: now[0],
    )
    key = ShardKey(PackId(bytes(32)), 0)
    try:
        with pytest.raises(PeerUnavailable, match=r"did not answer|cannot reach"):
            await link.stat(key)
        assert pit.connections == 1
        for _ in range(5):  # within the backoff: refused at once, nothing dialled
            with pytest.raises(PeerUnavailable, match="next try in"):
                await link.stat(key)
        assert pit.connections == 1
        now[0] += BACKOFF_MIN + 0.01  # the backoff is over: one more real attempt
        with pytest.raises(PeerUnavailable):
            await link.stat(key)
        assert pit.connections == 2
        now[0] += BACKOFF_MIN + 0.01  # doubled now: still waiting
        with pytest.raises(PeerUnavailable, match="next try in"):
            await link.stat(key)
        assert pit.connections == 2
    finally:
        await link.close()
