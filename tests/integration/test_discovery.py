"""LAN discovery (mDNS): two nodes in separate network namespaces find each other and
follow a change of address; plus the parser's refusals, without any network.

The namespace test needs root, iproute2 and the right to make network namespaces
(CAP_SYS_ADMIN); where any is missing it skips and says why. Everything it makes lives
inside the two namespaces (a veth pair, addresses in 10.213.x.0/24) and is deleted
afterwards, pass or fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from zeroconf import ServiceInfo, ServiceStateChange

from peerbak.adapters.discovery import MAX_TXT_BYTES, SERVICE_TYPE, LanDiscovery, instance_name
from peerbak.core.ids import NodeId

PEER_SCRIPT = Path(__file__).with_name("_discovery_peer.py")
#: Bound on every single wait for a peer's line; the whole test stays well under 60 s.
STEP = 12.0
PORT_A, PORT_B = 7001, 7002

Seen = tuple[NodeId, list[str], int]


# -- network namespaces -----------------------------------------------------------------


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@dataclass
class Net:
    ns_a: str
    ns_b: str
    dev_b: str
    prefix: str  # "10.213.N"


@pytest.fixture
def net() -> Iterator[Net]:
    if sys.platform != "linux":
        pytest.skip("network namespaces are Linux only")
    if os.geteuid() != 0:
        pytest.skip("making network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("`ip` (iproute2) is not installed")
    tag = secrets.token_hex(3)
    ns_a, ns_b = f"pbk-{tag}-a", f"pbk-{tag}-b"
    dev_a, dev_b = f"pbk{tag}a", f"pbk{tag}b"  # at most 15 characters
    prefix = f"10.213.{secrets.randbelow(250) + 1}"
    made: list[str] = []
    try:
        try:
            for ns in (ns_a, ns_b):
                _ip("netns", "add", ns)
                made.append(ns)
            _ip("netns", "exec", ns_a, "true")
        except RuntimeError as exc:
            pytest.skip(f"cannot make network namespaces here: {exc}")
        try:
            _ip("link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", dev_b, "netns", ns_b)
        except RuntimeError as exc:
            pytest.skip(f"cannot make a veth pair between namespaces here: {exc}")
        for ns, dev, host in ((ns_a, dev_a, 1), (ns_b, dev_b, 2)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "multicast", "on")
            _ip("-n", ns, "addr", "add", f"{prefix}.{host}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        yield Net(ns_a, ns_b, dev_b, prefix)
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth pair, and so both
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


# -- peer processes -----------------------------------------------------------------------


class Peer:
    """One ``_discovery_peer.py`` inside a namespace: JSON lines out, commands in."""

    def __init__(
        self, label: str, proc: asyncio.subprocess.Process, log: Path, team: list[Peer]
    ) -> None:
        self.label = label
        self.proc = proc
        self.log = log
        self.lines: list[dict[str, Any]] = []
        self.team = team  # every peer of the test, for the failure report
        team.append(self)

    async def expect(self, what: str, test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The next line passing ``test``, within STEP seconds; earlier lines are skipped."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(STEP):
                while raw := await self.proc.stdout.readline():
                    event: dict[str, Any] = json.loads(raw)
                    self.lines.append(event)
                    if test(event):
                        return event
        except TimeoutError:
            pass
        stories = "\n".join(peer.story() for peer in self.team)
        pytest.fail(f"peer {self.label} never reported {what}\n{stories}")

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    def story(self) -> str:
        log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
        return f"--- peer {self.label}: lines {self.lines}\nlog:\n{log}"


async def _spawn(label: str, ns: str, node: NodeId, port: int, tmp: Path, team: list[Peer]) -> Peer:
    log = tmp / f"peer-{label}.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *("ip", "netns", "exec", ns, sys.executable, str(PEER_SCRIPT), node.hex(), str(port)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            cwd=Path(__file__).parents[2],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return Peer(label, proc, log, team)


async def _end(peer: Peer) -> None:
    """EOF on stdin asks the peer to leave; it is killed if it does not within seconds."""
    proc = peer.proc
    if proc.returncode is None and proc.stdin is not None:
        proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5.0)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


@pytest.fixture
async def pair(net: Net, tmp_path: Path) -> AsyncIterator[tuple[Peer, Peer, NodeId, NodeId]]:
    id_a, id_b = NodeId(secrets.token_bytes(32)), NodeId(secrets.token_bytes(32))
    peers: list[Peer] = []
    try:
        for label, ns, node, port in (("A", net.ns_a, id_a, PORT_A), ("B", net.ns_b, id_b, PORT_B)):
            peer = await _spawn(label, ns, node, port, tmp_path, peers)
            started = await peer.expect("its start", lambda e: "started" in e)
            assert started == {"started": node.hex(), "running": True}, peer.story()
        yield peers[0], peers[1], id_a, id_b
    finally:
        await asyncio.gather(*(_end(p) for p in peers))


def _sighting(node: NodeId, address: str, *, port: int | None = None, without: str = "") -> Any:
    def test(event: dict[str, Any]) -> bool:
        return (
            event.get("id") == node.hex()
            and address in event.get("addresses", [])
            and (port is None or event.get("port") == port)
            and without not in event.get("addresses", [""])
        )

    return test


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_nodes_in_two_namespaces_follow_a_changed_address(
    net: Net, pair: tuple[Peer, Peer, NodeId, NodeId]
) -> None:
    a, b, id_a, id_b = pair
    old, new = f"{net.prefix}.2", f"{net.prefix}.3"

    # Both see each other, with the SSH port each announces.
    await a.expect(f"B at {old}", _sighting(id_b, old, port=PORT_B))
    await b.expect(f"A at {net.prefix}.1", _sighting(id_a, f"{net.prefix}.1", port=PORT_A))

    # A new port is announced and seen.
    await a.send("port 7003")
    await a.expect("its port change", lambda e: e.get("done") == "port")
    await b.expect("A's new port", _sighting(id_a, f"{net.prefix}.1", port=7003))

    # B moves to a new address; once it re-announces, A reports the new one, and after
    # the old record's one-second flush, the new one alone.
    # (Deleted first: deleting a subnet's primary address also deletes the others, unless
    # promote_secondaries is set.)
    _ip("-n", net.ns_b, "addr", "del", f"{old}/24", "dev", net.dev_b)
    _ip("-n", net.ns_b, "addr", "add", f"{new}/24", "dev", net.dev_b)
    await b.send("refresh")
    await b.expect("its refresh", lambda e: e.get("done") == "refresh")
    moved = await a.expect(f"B at {new} (not {old})", _sighting(id_b, new, without=old))
    assert moved["port"] == PORT_B


# -- the parser, without a network ---------------------------------------------------------

ME = NodeId(bytes(range(32)))
OTHER = NodeId(bytes(range(1, 33)))


def _info(
    props: dict[str, str | bytes | None] | bytes,
    *,
    name: str = f"{'ab' * 8}.{SERVICE_TYPE}",
    port: int = 7000,
    addresses: list[str] | None = None,
) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        name,
        port=port,
        properties=props,
        server="pbk-abababababababab.local.",
        parsed_addresses=["192.0.2.9", "fe80::1"] if addresses is None else addresses,
    )


def _discovery(seen: list[Seen]) -> LanDiscovery:
    return LanDiscovery(ME, 7000, lambda *args: seen.append(args), rescan_interval=0)


def test_malformed_announcements_are_dropped() -> None:
    seen: list[Seen] = []
    disc = _discovery(seen)
    good: dict[str, str | bytes | None] = {"id": OTHER.hex(), "v": "1", "name": "x"}
    hostile: list[ServiceInfo] = [
        _info({}),
        _info({"v": "1"}),
        _info({"id": OTHER.hex()}),  # no version
        _info({**good, "v": "2"}),
        _info({**good, "id": None}),
        _info({**good, "id": OTHER.hex().upper()}),
        _info({**good, "id": "../../etc/passwd"}),
        _info({**good, "id": OTHER.hex() + "00"}),
        _info({**good, "id": b"\xff" * 64}),
        _info({**good, **{f"p{i}": "x" * 250 for i in range(MAX_TXT_BYTES // 250)}}),  # too long
        _info(b"\x05id=zz\x80garbage"),  # TXT strings whose lengths run off the end
        _info(good, addresses=["127.0.0.1", "::1", "224.0.0.251", "0.0.0.0"]),
        _info(good, addresses=[]),
        _info(good, port=0),
    ]
    for info in hostile:
        assert disc._handle_info(info) is False
    assert seen == []

    assert disc._handle_info(_info(good)) is True
    assert seen == [(OTHER, ["192.0.2.9", "fe80::1"], 7000)]


def test_our_own_announcement_is_ignored() -> None:
    seen: list[Seen] = []
    disc = _discovery(seen)
    mine: dict[str, str | bytes | None] = {"id": ME.hex(), "v": "1"}
    assert disc._handle_info(_info(mine)) is False  # our id under another name
    own_name = _info({"id": OTHER.hex(), "v": "1"}, name=instance_name(ME))
    assert disc._handle_info(own_name) is False  # our instance name
    assert seen == []


def test_a_failing_callback_does_not_reach_zeroconf(caplog: pytest.LogCaptureFixture) -> None:
    def boom(node: NodeId, addresses: list[str], port: int) -> None:
        raise RuntimeError("callback bug")

    disc = LanDiscovery(ME, 7000, boom, rescan_interval=0)
    with caplog.at_level(logging.ERROR, logger="peerbak.adapters.discovery"):
        assert disc._handle_info(_info({"id": OTHER.hex(), "v": "1"})) is True
    assert "on_seen failed" in caplog.text


def test_same_sighting_is_reported_again_only_on_change() -> None:
    seen: list[Seen] = []
    disc = _discovery(seen)
    props: dict[str, str | bytes | None] = {"id": OTHER.hex(), "v": "1"}
    assert disc._handle_info(_info(props, addresses=["192.0.2.9"])) is True
    assert disc._handle_info(_info(props, addresses=["192.0.2.9"]), only_if_changed=True) is False
    assert disc._handle_info(_info(props, addresses=["192.0.2.10"]), only_if_changed=True)
    assert [s[1] for s in seen] == [["192.0.2.9"], ["192.0.2.10"]]


async def test_browser_events_never_raise_and_skip_ourselves() -> None:
    seen: list[Seen] = []
    disc = _discovery(seen)
    disc._aiozc = object()  # type: ignore[assignment]  # "running", without sockets
    try:
        for name in (instance_name(ME), "x" * 300 + SERVICE_TYPE, "evil._other._tcp.local."):
            disc._on_state_change(None, SERVICE_TYPE, name, ServiceStateChange.Added)  # type: ignore[arg-type]
        disc._on_state_change(None, SERVICE_TYPE, 42, ServiceStateChange.Updated)  # type: ignore[arg-type]
        assert disc._resolving == {}
    finally:
        disc._aiozc = None


async def test_start_without_usable_interfaces_is_quiet_and_stop_is_idempotent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disc = LanDiscovery(ME, 7000, lambda *_: None, interfaces=["192.0.2.77"], rescan_interval=0)
    await disc.stop()  # before start: nothing to do
    with caplog.at_level(logging.WARNING, logger="peerbak.adapters.discovery"):
        await disc.start()
    assert not disc.running
    assert "LAN discovery is off" in caplog.text
    await disc.update_port(7001)
    await disc.refresh()
    await disc.stop()
    await disc.stop()
