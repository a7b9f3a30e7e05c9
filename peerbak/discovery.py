"""LAN discovery over mDNS (zeroconf): a hint for addresses, never a source of trust.

A node announces ``<id-prefix>._peerbak._tcp.local.`` with its full node id in the TXT
record and browses for others. What it learns only updates the addresses of members
it already knows (the caller's ``on_seen`` decides); identity is always the SSH key
pinned from the roster. Any trouble (no multicast, no interface) is logged and
discovery does nothing: it never takes the daemon down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from peerbak.errors import InputError
from peerbak.ids import NodeId

log = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_peerbak._tcp.local."
MAX_TXT_VALUE: Final = 128
RESOLVE_TIMEOUT_MS: Final = 3000

OnSeen = Callable[[NodeId, list[str], int], None]


class LanDiscovery:
    """Announce this node and report others seen on the LAN."""

    def __init__(self, node_id: NodeId, port: int, on_seen: OnSeen, *, name: str = "") -> None:
        self.node_id = node_id
        self.port = port
        self.name = name[:64]
        self._on_seen = on_seen
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def instance(self) -> str:
        return f"{self.node_id.hex()[:16]}.{SERVICE_TYPE}"

    def _service_info(self) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            SERVICE_TYPE,
            self.instance,
            port=self.port,
            properties={"id": self.node_id.hex(), "v": "1", "name": self.name},
            server=f"{self.node_id.hex()[:16]}.local.",
        )

    async def start(self) -> None:
        try:
            self._zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
            self._info = self._service_info()
            await self._zc.async_register_service(self._info)
            self._browser = AsyncServiceBrowser(
                self._zc.zeroconf, SERVICE_TYPE, handlers=[self._changed]
            )
        except Exception as exc:  # discovery is a hint: never fatal
            log.warning("LAN discovery is off: %s", exc)
            await self.stop()

    async def update_port(self, port: int) -> None:
        """Re-announce (a new port, or new addresses after an interface change)."""
        self.port = port
        if self._zc is None or self._info is None:
            return
        with contextlib.suppress(Exception):
            await self._zc.async_unregister_service(self._info)
            self._info = self._service_info()
            await self._zc.async_register_service(self._info)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        zc, self._zc = self._zc, None
        if zc is None:
            return
        with contextlib.suppress(Exception):
            if self._browser is not None:
                await self._browser.async_cancel()
            if self._info is not None:
                await zc.async_unregister_service(self._info)
            await zc.async_close()
        self._browser = self._info = None

    def _changed(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change not in (ServiceStateChange.Added, ServiceStateChange.Updated):
            return
        if name == self.instance:
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        try:
            if not await info.async_request(zeroconf, RESOLVE_TIMEOUT_MS):
                return
        except Exception:  # a hostile or broken announcement: ignore it
            return
        self.handle(info)

    def handle(self, info: AsyncServiceInfo) -> None:
        """Check what a peer announced and report it; malformed announcements are ignored."""
        raw = (info.properties or {}).get(b"id")
        if not isinstance(raw, bytes) or len(raw) > MAX_TXT_VALUE:
            return
        try:
            peer = NodeId.from_hex(raw.decode("ascii", "replace"))
        except InputError:
            return
        if peer == self.node_id or not info.port:
            return
        addresses = [a for a in info.parsed_addresses() if a][:16]
        if not addresses:
            return
        try:
            self._on_seen(peer, addresses, info.port)
        except Exception:
            log.exception("handling a LAN announcement failed")
