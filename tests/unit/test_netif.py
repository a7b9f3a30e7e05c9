"""This host's addresses (peerbak.adapters.netif) and what a node makes of them: the roster
record's addresses (node.server.local_addresses) and the LAN announcement (discovery)."""

from __future__ import annotations

import pytest

from peerbak.adapters import discovery, netif
from peerbak.adapters.netif import HostAddress
from peerbak.core.config import Config, default_config_text, parse_config
from peerbak.node import server

HOST = [
    HostAddress("192.0.2.10", 2),
    HostAddress("fe80::1", 2),
    HostAddress("198.51.100.7", 3),
    HostAddress("192.0.2.10", 4),  # the same address on a second interface
    HostAddress("2001:db8::5", 3),
    HostAddress("203.0.113.1", 5),
    HostAddress("203.0.113.2", 6),
]


def _config(old: str = "", new: str = "") -> Config:
    return parse_config(default_config_text("n", 7420).replace(old, new))


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> list[HostAddress]:
    found = list(HOST)
    monkeypatch.setattr(netif, "host_addresses", lambda: list(found))
    return found


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("192.0.2.1", True),
        ("fe80::1%eth0", True),
        ("2001:db8::1", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("224.0.0.251", False),
        ("0.0.0.0", False),
        ("::", False),
        ("not an address", False),
    ],
)
def test_usable(address: str, ok: bool) -> None:
    assert netif.usable(address) is ok


def test_host_addresses_are_usable_and_name_their_interface() -> None:
    for address, interface in netif.host_addresses():
        assert netif.usable(address)
        assert interface is None or interface >= 0


def test_the_record_gets_the_hosts_ipv4_addresses_then_loopback(host: list[HostAddress]) -> None:
    assert server.local_addresses(_config(), 7000) == [
        "192.0.2.10:7000",
        "198.51.100.7:7000",
        "203.0.113.1:7000",
        "127.0.0.1:7000",
    ]


def test_the_record_fits_an_invite_token(host: list[HostAddress]) -> None:
    assert len(server.local_addresses(_config(), 7000)) == server.MAX_HOST_ADDRESSES + 1


def test_without_interfaces_the_record_has_loopback(
    host: list[HostAddress], monkeypatch: pytest.MonkeyPatch
) -> None:
    host.clear()
    assert server.local_addresses(_config(), 7000) == ["127.0.0.1:7000"]

    def broken() -> list[HostAddress]:
        raise OSError("no interfaces here")

    monkeypatch.setattr(netif, "host_addresses", broken)
    assert server.local_addresses(_config(), 7000) == ["127.0.0.1:7000"]


def test_advertise_and_listen_come_first(host: list[HostAddress]) -> None:
    advertised = _config("advertise = []", 'advertise = ["[2001:db8::5]:22", "a.example:1"]')
    assert server.local_addresses(advertised, 7000) == ["[2001:db8::5]:22", "a.example:1"]
    assert server.local_addresses(_config('"0.0.0.0"', '"::1"'), 7000) == ["[::1]:7000"]
    assert server.local_addresses(_config('"0.0.0.0"', '"192.0.2.10"'), 7) == ["192.0.2.10:7"]
    assert server.local_addresses(_config('"0.0.0.0"', '"::"'), 7)[-1] == "127.0.0.1:7"


def test_the_lan_announcement_has_every_address_ipv4_first(host: list[HostAddress]) -> None:
    assert discovery.announced_addresses() == [
        "192.0.2.10",
        "198.51.100.7",
        "203.0.113.1",
        "203.0.113.2",
        "fe80::1",
        "2001:db8::5",
    ]
    assert discovery.announced_addresses(["2001:db8::5", "192.0.2.99", "junk"]) == ["2001:db8::5"]
