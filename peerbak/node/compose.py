"""The composition root for one command: a node made (``init``), and the adapters a
repository needs, built from the node's home and handed in.

A backup or restore runs in the CLI's own process (so killing it never takes the
holder service down) and talks to members over SSH with the node's own key, as the
daemon does.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peerbak.adapters import transport
from peerbak.adapters.home import Home
from peerbak.adapters.ledger import Ledger
from peerbak.adapters.link import PeerLink
from peerbak.core import pool
from peerbak.core.config import default_config_text
from peerbak.core.crypto import NodeKeys, RandomBytes
from peerbak.core.errors import NoPool
from peerbak.core.ids import NodeId
from peerbak.core.textcode import encode_recovery_key
from peerbak.services.repository import RateLimit, Repository


async def open_repository(
    home: Home,
    *,
    timeout: float | None = None,
    clock: Callable[[], float] = time.time,
    limit_upload: int = 0,
    limit_download: int = 0,
) -> Repository:
    """This node's repository: its ledger, and an SSH link to each member of its pool;
    shards sent and received at most ``limit_upload``/``limit_download`` KiB/s (0: no
    limit), with bursts of one second's worth."""
    config = home.config()
    keys = NodeKeys.derive(home.secret())
    ledger = await Ledger.open(home.ledger_path)
    try:
        pool_id = await ledger.get_meta("pool")
        if pool_id is None:
            raise NoPool(
                "this node is in no pool yet: `peerbak invite` a friend, or `peerbak join TOKEN`"
            )
        roster = pool.Roster(pool_id)
        for blob in await ledger.records():
            roster.apply(blob)
    except BaseException:
        await ledger.close()
        raise
    client = transport.private_key(keys.ssh_seed)
    wait = config.network.timeout if timeout is None else timeout
    links = {
        r.node: PeerLink(NodeId(r.node), r.addresses, r.ssh_key, client, timeout=wait)
        for r in roster.members()
        if r.node != bytes(keys.node_id)
    }
    return Repository(
        keys,
        ledger,
        roster,
        links,
        home=home,
        clock=clock,
        hostname=socket.gethostname()[:255],
        upload=_limit(limit_upload),
        download=_limit(limit_download),
    )


def _limit(kib_per_second: int) -> RateLimit | None:
    per_second = kib_per_second * 1024
    return RateLimit(per_second * 3600, burst=per_second) if per_second > 0 else None


def create_node(
    root: Path,
    name: str,
    port: int,
    *,
    listen: str = "0.0.0.0",  # noqa: S104
    lan: bool = True,
    random_bytes: RandomBytes = os.urandom,
    passphrase: str | None = None,
    web_port: int = 7421,
) -> dict[str, Any]:
    """A new home with a fresh secret (sealed with ``passphrase`` if given), its config,
    an empty ledger and the recovery kit."""
    secret = random_bytes(32)
    keys = NodeKeys.derive(secret)
    config = default_config_text(name, port, listen=listen, lan=lan, web_port=web_port)
    home = Home.create(root, secret, config, passphrase=passphrase)
    asyncio.run(_empty_ledger(home))
    key_text = encode_recovery_key(secret)
    txt, png = home.write_recovery_kit(key_text, keys.node_id, name)
    return {
        "home": str(home.root),
        "node": keys.node_id.hex(),
        "ssh_key_fingerprint": transport.fingerprint(pool.ssh_public_key(keys)),
        "recovery_key": key_text,
        "recovery_kit": [str(txt), str(png)],
        "sealed": passphrase is not None,
    }


async def _empty_ledger(home: Home) -> None:
    ledger = await Ledger.open(home.ledger_path, create=True)
    await ledger.close()
