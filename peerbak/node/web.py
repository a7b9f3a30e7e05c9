"""The daemon's status page: the web adapter, fed by the dashboard service.

Each gathering runs in a thread with an event loop of its own, on a repository opened
the way a maintenance round opens one (its own ledger connection): reading the ledger
and decoding snapshots for a page never holds up the SSH server friends are talking to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from peerbak.adapters.home import Home
from peerbak.adapters.web import GATHER_TIMEOUT, WebServer
from peerbak.core.addresses import join_host_port
from peerbak.node.compose import open_repository
from peerbak.node.server import Node
from peerbak.services.dashboard import gather
from peerbak.services.maintenance import policy_of

log = logging.getLogger(__name__)


def gather_now(home: Home) -> dict[str, Any]:
    """One gathering of the page's figures, in this thread's own event loop."""

    async def go() -> dict[str, Any]:
        async with asyncio.timeout(GATHER_TIMEOUT):
            async with await open_repository(home) as repo:
                return await gather(repo, policy_of(home.config()), time.time())

    return asyncio.run(go())


async def start_web(home: Home, node: Node) -> WebServer | None:
    """The status page's server, listening as ``[web]`` says (its port in
    ``node.web_port``); None if it is turned off or its port is taken (the node serves
    its friends all the same, and says why in its log)."""
    config = home.config().web
    if not config.enabled:
        return None
    home.web_token()  # made now, so `peerbak web` and the first request find one

    async def figures() -> dict[str, Any]:
        return await asyncio.to_thread(gather_now, home)

    server = WebServer(figures, home.web_token, config.allow)
    try:
        port = await server.start(config.listen, config.port)
    except OSError as exc:
        log.warning(
            "status page: cannot listen on %s: %s (set [web] port in config.toml)",
            join_host_port(config.listen, config.port),
            exc.strerror or exc,
        )
        return None
    node.web_port = port
    log.info(
        "status page on http://%s/ (`peerbak web` prints its address with the token)",
        join_host_port(config.listen, port),
    )
    return server


async def stop_web(server: WebServer | None) -> None:
    if server is not None:
        await server.stop()
