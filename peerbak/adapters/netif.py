"""This host's network addresses: the only module that enumerates interfaces.

Read with ifaddr (zeroconf's own dependency), so the addresses a node puts in its roster
record and those it announces on the LAN come from one list. Loopback, multicast and
unspecified addresses are left out: no friend can reach us there.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

import ifaddr

__all__ = ["HostAddress", "host_addresses", "usable"]


class HostAddress(NamedTuple):
    address: str  #: IPv4 or IPv6 text (a link-local IPv6 address has no ``%scope`` here)
    interface: int | None  #: the interface index (zeroconf binds IPv6 sockets by it)


def usable(address: str) -> bool:
    """An address worth announcing or reporting: not loopback, multicast or unspecified."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_multicast or ip.is_unspecified)


def host_addresses() -> list[HostAddress]:
    """Every usable address of this host with its interface index, in interface order."""
    found: list[HostAddress] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            if usable(text):
                found.append(HostAddress(text, adapter.index))
    return found
