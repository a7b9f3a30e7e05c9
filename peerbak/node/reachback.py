"""The member's side of ``ReachMe``: dial the asker back, at the address its session
comes from, and say whether an SSH handshake pinned to its roster host key succeeded.

The address is never taken from the wire (ReachMe has none): a member dials only the
machine that is already talking to it, so no one can use it to probe another host. One
reach-back at a time per asking member, each bounded by :data:`REACH_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Final

from peerbak.core import wire
from peerbak.core.addresses import join_host_port
from peerbak.core.errors import PeerbakError

REACH_TIMEOUT: Final = 10.0

#: Dial ``address`` trusting only ``host_key``, within ``timeout`` s; raises on failure.
Dial = Callable[[str, bytes, float], Awaitable[None]]


def dial_host(peer: str) -> str:
    """The host to dial for a session's peer address: an IPv4-mapped IPv6 address is
    dialled as the IPv4 address it carries (that is the family it came over)."""
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return peer
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return peer


class ReachBack:
    """Answers ReachMe requests for a node; ``host_key_of`` gives a member's pinned key."""

    def __init__(
        self,
        host_key_of: Callable[[bytes], bytes | None],
        dial: Dial,
        *,
        timeout: float = REACH_TIMEOUT,
    ) -> None:
        self._host_key_of = host_key_of
        self._dial = dial
        self._timeout = timeout
        self._busy: set[bytes] = set()

    async def answer(  # noqa: PLR0911 - one answer per guard
        self, node: bytes, peer: str, port: int
    ) -> wire.Reached | wire.Error:
        """``node`` asked over a session from ``peer`` (the IP the SSH connection comes
        from) to be dialled on ``port``."""
        if not 1 <= port <= 65535:
            return wire.Error(code=wire.ErrorCode.INPUT, message=f"port {port} is not 1..65535")
        if not peer:
            return wire.Error(code=wire.ErrorCode.INPUT, message="the session has no peer address")
        host_key = self._host_key_of(node)
        if host_key is None:
            return wire.Error(code=wire.ErrorCode.UNAUTHORIZED, message="not a member here")
        if node in self._busy:
            return wire.Error(
                code=wire.ErrorCode.BUSY, message="a reach-back for this member is under way"
            )
        address = join_host_port(dial_host(peer), port)
        self._busy.add(node)
        try:
            async with asyncio.timeout(self._timeout + 1):
                await self._dial(address, host_key, self._timeout)
        except TimeoutError:
            return wire.Reached(
                ok=False, address=address, error=f"no answer within {self._timeout:.0f} s"
            )
        except PeerbakError as exc:
            return wire.Reached(ok=False, address=address, error=str(exc))
        finally:
            self._busy.discard(node)
        return wire.Reached(ok=True, address=address, error="")
