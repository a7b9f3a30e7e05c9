"""``host:port`` parsing and joining (peerbak.core.addresses), used by config, dialler and node."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerbak.core.addresses import join_host_port, split_host_port
from peerbak.core.config import default_config_text, parse_config
from peerbak.core.errors import ConfigError, InputError, RemoteProtocolError

ports = st.integers(1, 65535)
names = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,40}[A-Za-z0-9])?", fullmatch=True)
hosts = st.one_of(
    names,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)


@given(host=hosts, port=ports)
def test_split_undoes_join(host: str, port: int) -> None:
    assert split_host_port(join_host_port(host, port)) == (host, port)


@given(host=st.ip_addresses(v=6).map(str), port=ports)
def test_ipv6_hosts_are_bracketed(host: str, port: int) -> None:
    text = join_host_port(host, port)
    assert text.startswith("[")
    assert text.endswith(f"]:{port}")


@given(host=hosts, port=ports)
def test_join_undoes_split_of_canonical_text(host: str, port: int) -> None:
    text = join_host_port(host, port)
    assert join_host_port(*split_host_port(text)) == text


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("example.org:7420", "example.org", 7420),
        ("192.0.2.1:1", "192.0.2.1", 1),
        ("[::1]:65535", "::1", 65535),
        ("[fe80::1%eth0]:22", "fe80::1%eth0", 22),
        ("::1:80", "::1", 80),  # unbracketed: the port follows the last colon
        ("host:0080", "host", 80),
    ],
)
def test_split(text: str, host: str, port: int) -> None:
    assert split_host_port(text) == (host, port)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "host",
        "host:",
        ":7420",
        "[]:7420",
        "host:0",
        "host:65536",
        "host:-1",
        "host:7e3",
        "host: 80",
        "host:\u00b2",
        "host:\u0663",
    ],
)
def test_refusals_name_the_text(text: str) -> None:
    with pytest.raises(InputError) as info:
        split_host_port(text)
    assert str(info.value) == f"not a host:port address: {text!r}"


def test_the_caller_chooses_the_error() -> None:
    with pytest.raises(RemoteProtocolError, match="not a host:port address"):
        split_host_port("nowhere", RemoteProtocolError)


@pytest.mark.parametrize("address", ["host:\u00b2", "[::1]:0", "no way:7420"])
def test_config_refuses_a_bad_advertised_address_by_line_and_key(address: str) -> None:
    text = default_config_text("n", 7420).replace("advertise = []", f'advertise = ["{address}"]')
    with pytest.raises(ConfigError, match=r"line \d+: node\.advertise: not a"):
        parse_config(text)
