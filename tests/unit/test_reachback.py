"""The member's guards on ReachMe: the address dialled is the session's, the port is
checked, one reach-back at a time per asking member."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from peerbak.core import wire
from peerbak.core.errors import PeerUnavailable, RemoteProtocolError
from peerbak.node.reachback import ReachBack, dial_host

ASKER = b"\x01" * 32
KEY = b"\x02" * 32


class Dialler:
    def __init__(self, fail: str = "") -> None:
        self.calls: list[tuple[str, bytes, float]] = []
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, address: str, host_key: bytes, timeout: float) -> None:
        self.calls.append((address, host_key, timeout))
        await self.release.wait()
        if self.fail:
            raise PeerUnavailable(self.fail)


def reach_back(dial: Dialler) -> ReachBack:
    return ReachBack(lambda node: KEY if node == ASKER else None, dial)


def test_the_request_has_no_address_field() -> None:
    assert wire.ReachMe.__struct_fields__ == ("port",)
    frame = msgspec.msgpack.encode(["ReachMe", 7700, "198.51.100.1"])
    with pytest.raises(RemoteProtocolError):
        wire.decode(frame)


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_a_port_out_of_range_is_refused_on_the_wire_and_by_the_handler(port: int) -> None:
    with pytest.raises(RemoteProtocolError):
        wire.decode(msgspec.msgpack.encode(["ReachMe", port]))
    dial = Dialler()
    answer = asyncio.run(reach_back(dial).answer(ASKER, "192.0.2.9", port))
    assert isinstance(answer, wire.Error)
    assert answer.code == "input"
    assert dial.calls == []


def test_the_session_address_is_dialled_with_the_pinned_key() -> None:
    dial = Dialler()
    answer = asyncio.run(reach_back(dial).answer(ASKER, "192.0.2.9", 7700))
    assert answer == wire.Reached(ok=True, address="192.0.2.9:7700", error="")
    assert dial.calls == [("192.0.2.9:7700", KEY, 10.0)]


def test_v6_and_v4_mapped_peers() -> None:
    dial = Dialler()
    rb = reach_back(dial)
    answer = asyncio.run(rb.answer(ASKER, "2001:db8::7", 22))
    assert isinstance(answer, wire.Reached)
    assert answer.address == "[2001:db8::7]:22"
    assert dial_host("::ffff:192.0.2.9") == "192.0.2.9"


def test_a_failure_names_the_address_tried() -> None:
    dial = Dialler(fail="cannot reach 192.0.2.9:7700: refused")
    answer = asyncio.run(reach_back(dial).answer(ASKER, "192.0.2.9", 7700))
    assert isinstance(answer, wire.Reached)
    assert (answer.ok, answer.address) == (False, "192.0.2.9:7700")
    assert "refused" in answer.error


def test_a_non_member_gets_nothing_dialled() -> None:
    dial = Dialler()
    answer = asyncio.run(reach_back(dial).answer(b"\x09" * 32, "192.0.2.9", 7700))
    assert isinstance(answer, wire.Error)
    assert answer.code == "unauthorized"
    assert dial.calls == []


def test_one_reach_back_at_a_time_per_member() -> None:
    async def go() -> tuple[wire.Message, wire.Message]:
        dial = Dialler()
        dial.release.clear()
        rb = reach_back(dial)
        first = asyncio.create_task(rb.answer(ASKER, "192.0.2.9", 7700))
        while not dial.calls:  # the first dial has started
            await asyncio.sleep(0)
        second = await rb.answer(ASKER, "192.0.2.9", 7700)
        dial.release.set()
        return await first, second

    first, second = asyncio.run(go())
    assert isinstance(second, wire.Error)
    assert second.code == "busy"
    assert isinstance(first, wire.Reached)
    assert first.ok
