"""``peerbak daemon``: the node as a long-running process.

Runs a :class:`~peerbak.node.server.Node` in the foreground: the SSH server friends talk to, the
control socket the CLI talks to, LAN discovery, gossip and trash purging on schedules,
the config's backup jobs on theirs (services/jobs.py), notifications to a person
(services/notifier.py), the status page and metrics (node/web.py), and systemd
notifications (READY, STOPPING, WATCHDOG) over ``$NOTIFY_SOCKET`` without any
dependency. SIGTERM or SIGINT stops accepting, gives sessions in flight a moment to
finish, and exits 0; an interrupted put leaves only a temporary file, swept at the next
start. One daemon per home: an flock, which dies with the process (kill -9 included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from peerbak.adapters import transport
from peerbak.adapters.home import DaemonState, Home
from peerbak.adapters.ledger import Ledger
from peerbak.core.addresses import join_host_port
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import InputError, PeerbakError, StorageError
from peerbak.core.ids import NodeId
from peerbak.node.compose import open_repository
from peerbak.node.server import Node, local_addresses
from peerbak.node.web import start_web, stop_web
from peerbak.services.jobs import run_jobs_forever
from peerbak.services.maintenance import maintain_forever
from peerbak.services.notifier import notify_forever

log = logging.getLogger(__name__)

STOP_GRACE: Final = 10.0
CONTROL_MAX_LINE: Final = 64 << 10


class _Notifier:
    """systemd's sd_notify over $NOTIFY_SOCKET (datagrams), without a dependency."""

    def __init__(self) -> None:
        path = os.environ.get("NOTIFY_SOCKET", "")
        self._address = ("\0" + path[1:]) if path.startswith("@") else path

    def __call__(self, state: str) -> None:
        if not self._address:
            return
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        ):
            sock.sendto(state.encode(), self._address)


async def _control_server(node: Node, path: Path) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if len(line) > CONTROL_MAX_LINE:
                raise InputError("control request too long")
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise TypeError
            except (ValueError, TypeError):
                raise InputError("control requests are one JSON object per line") from None
            reply: dict[str, Any] = {"ok": True, **(await node.control(request))}
        except PeerbakError as exc:
            reply = {
                "ok": False,
                "error": type(exc).__name__,
                "code": exc.exit_code,
                "message": str(exc),
            }
        except Exception as exc:
            log.exception("control request failed")
            reply = {"ok": False, "error": "InternalError", "code": 70, "message": str(exc)}
        writer.write(json.dumps(reply).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    path.unlink(missing_ok=True)
    old = os.umask(0o177)  # the socket is created 0600: only this user may control the node
    try:
        return await asyncio.start_unix_server(handle, path=str(path), limit=CONTROL_MAX_LINE)
    finally:
        os.umask(old)


async def run_daemon(home: Home) -> None:
    """Run until SIGTERM/SIGINT (or a ``stop`` control request)."""
    config = home.config()
    keys = NodeKeys.derive(home.secret())
    lock = home.lock_daemon()
    notify = _Notifier()
    ledger = await Ledger.open(home.ledger_path, verify=True)
    try:
        node = Node(home, config, keys, ledger, None)
        await node.reload_roster()
        await node.refresh_guests()
        await asyncio.to_thread(node.open_held_stores)
        try:
            acceptor = await transport.listen(
                config.node.listen, config.node.port, node.ssh_key, node
            )
        except OSError as exc:
            raise StorageError(
                f"cannot listen on {config.node.listen}:{config.node.port}: {exc.strerror or exc}"
            ) from None
        node.port = acceptor.get_port()
        node.addresses = local_addresses(config, node.port)
        control = await _control_server(node, home.control_socket)
        web = await start_web(home, node)
        home.write_state(
            DaemonState(
                pid=os.getpid(),
                listen=config.node.listen,
                port=node.port,
                started=time.time(),
                web_listen=config.web.listen if web else "",
                web_port=node.web_port,
            )
        )
        _on_signals(node.stopping.set)
        discovery = await _start_discovery(node) if config.discovery.lan else None
        await node.publish_self()
        notify(f"READY=1\nSTATUS=serving on port {node.port}\nMAINPID={os.getpid()}")
        background = [
            asyncio.create_task(_watchdog(notify)),
            asyncio.create_task(node.gossip_forever()),
            asyncio.create_task(node.purge_forever()),
            asyncio.create_task(
                maintain_forever(home, lambda: open_repository(home), node.stopping)
            ),
            asyncio.create_task(
                run_jobs_forever(
                    home,
                    lambda: open_repository(home),
                    node.stopping,
                    time.time,
                    random.SystemRandom(),
                )
            ),
            asyncio.create_task(_notify(home, node.stopping)),
        ]
        log.info("node %s serving on port %d", node.node_id.short, node.port)
        await node.stopping.wait()
        notify("STOPPING=1")
        for task in background:
            task.cancel()
        acceptor.close()
        control.close()
        await stop_web(web)
        node.end_idle_sessions()  # busy ones get the grace to finish what they do
        if node._sessions:
            await asyncio.wait(node._sessions, timeout=STOP_GRACE)
        for task in list(node._sessions):
            task.cancel()
        if discovery is not None:
            await discovery.stop()
        for link in node.links.values():
            await link.close()
        home.clear_state()
        home.control_socket.unlink(missing_ok=True)
    finally:
        await ledger.close()
        os.close(lock)


def _on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


async def _notify(home: Home, stopping: asyncio.Event) -> None:
    """The notifier (apprise is imported only when the daemon runs)."""
    from peerbak.adapters.notify import AppriseNotifier, HttpPinger

    await notify_forever(
        home, lambda: open_repository(home), stopping, AppriseNotifier, HttpPinger()
    )


async def _watchdog(notify: _Notifier) -> None:
    usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    if usec <= 0:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(usec / 2e6)


async def _start_discovery(node: Node) -> Any:
    from peerbak.adapters.discovery import LanDiscovery

    def seen(peer: NodeId, addresses: list[str], port: int) -> None:
        link = node.links.get(bytes(peer))
        if link is None:  # only members we know; mDNS never adds one
            return
        fresh = [join_host_port(a, port) for a in addresses]
        link.addresses = fresh + [a for a in link.addresses if a not in fresh]

    discovery = LanDiscovery(node.node_id, node.port, seen, name=node.config.node.name)
    await discovery.start()
    return discovery
