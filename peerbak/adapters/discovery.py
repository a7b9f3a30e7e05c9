"""LAN discovery over mDNS/DNS-SD (protocol/discovery.md): the only module importing zeroconf.

Each node announces ``<first 16 hex of its node id>._peerbak._tcp.local.`` with its SSH
port and a TXT record ``id=<node id hex>``, ``v=1``, ``name=<display name>``, and browses
for the other nodes. What it learns is a *hint*: the node updates the address of a member
it already knows from the roster, and the SSH host key it pins decides who answered. A
hostile LAN can therefore at worst make us dial a wrong address, and everything it sends
is parsed defensively: malformed or oversized records are dropped, never raised into
zeroconf. If mDNS cannot work here (no multicast, no interfaces) discovery logs a
warning and does nothing; it never takes the daemon down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from peerbak.adapters import netif
from peerbak.core.errors import PeerbakError
from peerbak.core.ids import NodeId

__all__ = ["SERVICE_TYPE", "InterfaceChoice", "LanDiscovery", "OnSeen"]

log = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_peerbak._tcp.local."
TXT_VERSION: Final = "1"
#: A TXT record longer than this is not ours (ours is ~130 bytes); it is dropped unparsed.
MAX_TXT_BYTES: Final = 1024
#: Display names are cut to this many bytes of UTF-8 before they are announced.
MAX_NAME_BYTES: Final = 63
#: At most this many addresses of one peer are reported (a record may list hundreds).
MAX_ADDRESSES: Final = 16
#: Resolutions in flight at once; events beyond this are dropped (a LAN can flood us).
MAX_RESOLVING: Final = 32
#: Peers remembered for change detection; the oldest are forgotten first.
MAX_REMEMBERED: Final = 256
RESOLVE_TIMEOUT_MS: Final = 3000
#: A re-announced address flushes the old one from the cache only after one second
#: (RFC 6762 §10.2), so a second look this much later reports the settled set.
SETTLE_DELAY: Final = 1.5
#: Upper bound for start, stop and re-announce; mDNS never holds up the daemon longer.
OP_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 3.0

#: ``on_seen(node_id, addresses, port)``: called from the event loop for each resolved
#: announcement of another node.
OnSeen = Callable[[NodeId, list[str], int], None]
Interfaces = InterfaceChoice | Sequence[str]


def instance_name(node_id: NodeId) -> str:
    """The DNS-SD instance name a node announces itself under."""
    return f"{node_id.hex()[:16]}.{SERVICE_TYPE}"


def host_name(node_id: NodeId) -> str:
    """The mDNS host name carrying the node's address records."""
    return f"pbk-{node_id.hex()[:16]}.local."


def _clip_utf8(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _selected(interfaces: Interfaces) -> list[netif.HostAddress]:
    """This host's usable addresses, limited to the configured ones if there is a list."""
    host = netif.host_addresses()
    if isinstance(interfaces, InterfaceChoice):
        return host
    wanted = set()
    for address in interfaces:
        with contextlib.suppress(ValueError):
            wanted.add(ipaddress.ip_address(address.partition("%")[0]))
    return [h for h in host if ipaddress.ip_address(h.address) in wanted]


def announced_addresses(interfaces: Interfaces = InterfaceChoice.All) -> list[str]:
    """The addresses a node announces: this host's, IPv4 first, without loopback.

    With a list of interface addresses, those of them this host has.
    """
    unique = list(dict.fromkeys(a for a, _ in _selected(interfaces)))
    return sorted(unique, key=lambda a: ":" in a)


def _socket_plan(interfaces: Interfaces) -> tuple[list[str | int], IPVersion]:
    """What zeroconf should bind: IPv4 addresses and IPv6 interface indexes.

    Loopback is left out on purpose (there is no LAN behind it, and multicast sends on
    it fail noisily), as are addresses the host does not have (zeroconf would fail to
    start and leak its socket).
    """
    chosen = _selected(interfaces)
    v4: list[str | int] = list(dict.fromkeys(a for a, _ in chosen if ":" not in a))
    v6: list[str | int] = list(
        dict.fromkeys(index for a, index in chosen if ":" in a and index is not None)
    )
    version = IPVersion.All if v4 and v6 else IPVersion.V6Only if v6 else IPVersion.V4Only
    return [*v4, *v6], version


class LanDiscovery:
    """Announces this node and browses for others. Results are hints only: they update the
    addresses of members the node already knows; identity is always the SSH key, never
    what mDNS says."""

    def __init__(
        self,
        node_id: NodeId,
        port: int,
        on_seen: OnSeen,
        *,
        name: str = "",
        interfaces: Interfaces = InterfaceChoice.All,
        rescan_interval: float = 60.0,
    ) -> None:
        """``interfaces``: :data:`InterfaceChoice.All` or a list of this host's addresses.

        ``rescan_interval``: seconds between checks of this host's addresses; when they
        changed (a laptop moved, DHCP renewed) the node re-announces itself. 0 turns the
        check off (then call :meth:`refresh` when the addresses change).
        """
        if not 0 < port < 65536:
            raise PeerbakError(f"discovery port must be 1..65535, got {port!r}")
        self.node_id = node_id
        self.port = port
        self.name = _clip_utf8(name, MAX_NAME_BYTES)
        self._on_seen = on_seen
        if isinstance(interfaces, str):  # one address, not a sequence of characters
            interfaces = [interfaces]
        self._interfaces: Interfaces = (
            interfaces if isinstance(interfaces, InterfaceChoice) else list(interfaces)
        )
        self._rescan_interval = rescan_interval
        self._instance = instance_name(node_id)
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._registered = False
        self._announced: list[str] = []
        self._lock = asyncio.Lock()
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._last: dict[str, tuple[NodeId, tuple[str, ...], int]] = {}
        self._background: set[asyncio.Future[Any]] = set()
        self._rescan_task: asyncio.Task[None] | None = None
        self._started = False
        self._v4_only = False

    @property
    def running(self) -> bool:
        """True while mDNS sockets are open (after a :meth:`start` that could open them)."""
        return self._aiozc is not None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Announce this node and start browsing. Never raises for mDNS trouble: it logs
        a warning, and (with a rescan interval) tries again when addresses appear."""
        if self._started:
            return
        self._started = True
        await self._bring_up()
        if self._rescan_interval > 0:
            self._rescan_task = asyncio.create_task(self._rescan_loop())

    async def stop(self) -> None:
        """Say goodbye and close the sockets. Idempotent; bounded by a few seconds."""
        self._started = False
        tasks: list[asyncio.Future[Any]] = [*self._resolving.values(), *self._background]
        if self._rescan_task is not None:
            tasks.append(self._rescan_task)
            self._rescan_task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._resolving.clear()
        self._again.clear()
        self._background.clear()
        await self._close()

    async def update_port(self, port: int) -> None:
        """Announce a new SSH port (and this host's current addresses)."""
        if not 0 < port < 65536:
            raise PeerbakError(f"discovery port must be 1..65535, got {port!r}")
        self.port = port
        await self._reannounce(rebind=False)

    async def refresh(self) -> None:
        """Re-read this host's addresses, rebind the mDNS sockets and re-announce.

        Call it when the host's addresses changed; zeroconf does not notice by itself
        (the rescan loop calls it when it sees a change).
        """
        if self._started and self._aiozc is None:
            await self._bring_up()
        else:
            await self._reannounce(rebind=True)

    # -- announcing ------------------------------------------------------------------

    async def _bring_up(self) -> None:
        try:
            self._aiozc = self._open()
        except Exception as exc:
            log.warning("LAN discovery is off for now: cannot open mDNS sockets: %s", exc)
            return
        try:
            async with self._lock:
                await asyncio.wait_for(self._register(), OP_TIMEOUT)
        except Exception as exc:
            log.warning("LAN discovery: cannot announce this node: %s", exc)
        try:
            self._browser = AsyncServiceBrowser(
                self._aiozc.zeroconf, SERVICE_TYPE, handlers=[self._on_state_change]
            )
        except Exception as exc:
            log.warning("LAN discovery: cannot browse for other nodes: %s", exc)

    async def _close(self) -> None:
        aiozc, self._aiozc = self._aiozc, None
        browser, self._browser = self._browser, None
        self._registered = False
        if aiozc is None:
            return
        try:
            if browser is not None:
                await asyncio.wait_for(browser.async_cancel(), STOP_TIMEOUT)
        except Exception as exc:
            log.debug("LAN discovery: stopping the browser: %s", exc)
        try:
            await asyncio.wait_for(aiozc.async_close(), STOP_TIMEOUT)
        except Exception as exc:
            log.warning("LAN discovery: closing mDNS: %s", exc)

    def _open(self) -> AsyncZeroconf:
        sockets, version = _socket_plan(self._interfaces)
        if not sockets:
            raise _Ignored("no network interface with a non-loopback address")
        try:
            return AsyncZeroconf(interfaces=sockets, ip_version=version)
        except Exception as exc:
            v4 = [s for s in sockets if isinstance(s, str)]
            if version is not IPVersion.All or not v4:
                raise
            log.info("LAN discovery: IPv6 mDNS unavailable (%s); using IPv4 only", exc)
            self._v4_only = True
            return AsyncZeroconf(interfaces=v4, ip_version=IPVersion.V4Only)

    def _service_info(self) -> ServiceInfo:
        self._announced = announced_addresses(self._interfaces)
        return ServiceInfo(
            SERVICE_TYPE,
            self._instance,
            port=self.port,
            properties={"id": self.node_id.hex(), "v": TXT_VERSION, "name": self.name},
            server=host_name(self.node_id),
            parsed_addresses=self._announced,
        )

    async def _register(self) -> None:
        aiozc = self._aiozc
        if aiozc is None:
            return
        info = self._service_info()
        # Someone squatting on our name gets us renamed ("…-2"), not silenced.
        sent = await aiozc.async_register_service(info, allow_name_change=True)
        self._instance = info.name
        self._registered = True
        self._keep(sent)

    async def _reannounce(self, *, rebind: bool) -> None:
        if self._aiozc is None:
            return
        try:
            async with self._lock:
                await asyncio.wait_for(self._reannounce_locked(rebind=rebind), OP_TIMEOUT)
        except Exception as exc:
            log.warning("LAN discovery: cannot re-announce this node: %s", exc)

    async def _reannounce_locked(self, *, rebind: bool) -> None:
        aiozc = self._aiozc
        if aiozc is None:
            return
        if not self._registered:
            if rebind:
                await self._rebind(aiozc)
            await self._register()
            return
        # Publish the new records first, so that rebinding (which re-announces every
        # registration on the new sockets) already sends the new addresses.
        self._keep(await aiozc.async_update_service(self._service_info()))
        if rebind:
            await self._rebind(aiozc)

    async def _rebind(self, aiozc: AsyncZeroconf) -> None:
        sockets, version = _socket_plan(self._interfaces)
        update = getattr(aiozc, "async_update_interfaces", None)  # zeroconf >= 0.150
        if not sockets or update is None:
            return
        if self._v4_only:  # IPv6 failed when opening
            sockets, version = [s for s in sockets if isinstance(s, str)], IPVersion.V4Only
        await update(interfaces=sockets, ip_version=version)

    async def _rescan_loop(self) -> None:
        while True:
            await asyncio.sleep(self._rescan_interval)
            try:
                now = announced_addresses(self._interfaces)
            except Exception as exc:
                log.debug("LAN discovery: cannot read this host's addresses: %s", exc)
                continue
            if now and (self._aiozc is None or now != self._announced):
                log.info("LAN discovery: this host's addresses changed; announcing again")
                await self.refresh()

    def _keep(self, awaitable: Any) -> None:
        """Hold a zeroconf broadcast future until it is done, and retrieve its outcome."""
        if not isinstance(awaitable, asyncio.Future):
            return
        self._background.add(awaitable)
        awaitable.add_done_callback(self._background_done)

    def _background_done(self, future: asyncio.Future[Any]) -> None:
        self._background.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.debug("LAN discovery: broadcast failed: %s", future.exception())

    # -- browsing --------------------------------------------------------------------

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """Browser callback (event loop): schedule a resolution. Never raises."""
        del zeroconf
        try:
            if self._aiozc is None or service_type != SERVICE_TYPE:
                return
            if (
                not isinstance(name, str)
                or len(name) > 255
                or not name.endswith("." + SERVICE_TYPE)
            ):
                return
            if name.lower() == self._instance.lower():
                return
            if state_change is ServiceStateChange.Removed:
                self._last.pop(name, None)
                return
            if name in self._resolving:
                self._again.add(name)
                return
            if len(self._resolving) >= MAX_RESOLVING:
                log.debug("LAN discovery: too many announcements at once; dropped %r", name)
                return
            self._resolving[name] = asyncio.get_running_loop().create_task(self._resolve_loop(name))
        except Exception:
            log.exception("LAN discovery: handling an mDNS event failed")

    async def _resolve_loop(self, name: str) -> None:
        try:
            while self._aiozc is not None:
                self._again.discard(name)
                await self._resolve(name, only_if_changed=False)
                if name in self._again:
                    continue
                await asyncio.sleep(SETTLE_DELAY)
                if name in self._again:
                    continue
                await self._resolve(name, only_if_changed=True)
                if name not in self._again:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("LAN discovery: resolving %r failed: %s", name, exc)
        finally:
            self._resolving.pop(name, None)
            self._again.discard(name)

    async def _resolve(self, name: str, *, only_if_changed: bool) -> None:
        aiozc = self._aiozc
        if aiozc is None:
            return
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if await info.async_request(aiozc.zeroconf, RESOLVE_TIMEOUT_MS):
            self._handle_info(info, only_if_changed=only_if_changed)

    def _handle_info(self, info: ServiceInfo, *, only_if_changed: bool = False) -> bool:
        """Check a resolved record and report it; True when ``on_seen`` was called.

        Anything malformed, oversized or our own is dropped without a word above debug.
        """
        seen = self._parse(info)
        if seen is None:
            return False
        node_id, addresses, port = seen
        key = (node_id, tuple(addresses), port)
        previous = self._last.pop(info.name, None)
        self._last[info.name] = key
        while len(self._last) > MAX_REMEMBERED:
            del self._last[next(iter(self._last))]
        if only_if_changed and previous == key:
            return False
        try:
            self._on_seen(node_id, addresses, port)
        except Exception:
            log.exception("LAN discovery: on_seen failed for %s", node_id.short)
        return True

    def _parse(self, info: ServiceInfo) -> tuple[NodeId, list[str], int] | None:
        try:
            return self._parse_or_raise(info)
        except Exception as exc:  # hostile input: whatever it breaks, it is dropped
            log.debug("LAN discovery: dropped an announcement: %s", exc)
            return None

    def _parse_or_raise(self, info: ServiceInfo) -> tuple[NodeId, list[str], int]:
        if info.name.lower() == self._instance.lower():
            raise _Ignored("our own announcement")
        text = info.text
        if text is None or len(text) > MAX_TXT_BYTES:
            raise _Ignored(f"{info.name!r}: TXT record missing or over {MAX_TXT_BYTES} bytes")
        props = info.properties
        version, raw_id = props.get(b"v"), props.get(b"id")
        if version != TXT_VERSION.encode() or not isinstance(raw_id, bytes):
            raise _Ignored(f"{info.name!r}: not a version {TXT_VERSION} record with an id")
        node_id = NodeId.from_hex(raw_id.decode("ascii"))
        if node_id == self.node_id:
            raise _Ignored("our own node id")
        port = info.port
        if not isinstance(port, int) or not 0 < port < 65536:
            raise _Ignored(f"{info.name!r}: bad port {port!r}")
        addresses = [a for a in info.parsed_scoped_addresses() if netif.usable(a)]
        if not addresses:
            raise _Ignored(f"{info.name!r}: no usable address")
        return node_id, addresses[:MAX_ADDRESSES], port


class _Ignored(Exception):
    """An announcement to drop quietly; never leaves this module."""
