"""One node's LAN discovery alone, for the namespace test; run inside ``ip netns exec``.

usage: python _discovery_peer.py NODE_ID_HEX PORT

Prints ``{"started": NODE_ID_HEX}`` once announced, then one JSON line per ``on_seen``:
``{"id": ..., "addresses": [...], "port": ...}``. Commands on stdin, one per line:
``port N`` announces a new port; ``refresh`` re-reads this host's addresses and
announces again; anything else is ignored. Exits at stdin EOF.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from peerbak.adapters.discovery import LanDiscovery
from peerbak.core.ids import NodeId


def _emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def main(node: str, port: int) -> None:
    def seen(peer: NodeId, addresses: list[str], peer_port: int) -> None:
        _emit({"id": peer.hex(), "addresses": addresses, "port": peer_port})

    discovery = LanDiscovery(NodeId.from_hex(node), port, seen, name="test peer", rescan_interval=0)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        await discovery.start()
        _emit({"started": node, "running": discovery.running})
        while line := await reader.readline():
            command, _, arg = line.decode(errors="replace").strip().partition(" ")
            if command == "port" and arg.isdigit():
                await discovery.update_port(int(arg))
            elif command == "refresh":
                await discovery.refresh()
            else:
                continue
            _emit({"done": command})
    finally:
        await discovery.stop()
        transport.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("zeroconf").setLevel(logging.INFO)  # it defaults itself to WARNING
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
