"""Framing and message validation: whole, byte by byte, split, trailing; hostile input."""

from __future__ import annotations

import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbak import wire
from peerbak.errors import (
    ConflictError,
    NotFoundError,
    PeerbakError,
    RemoteProtocolError,
    StorageError,
)

SAMPLES: list[wire.Message] = [
    wire.Hello(versions=[1, 2], software="peerbak 0.1.0"),
    wire.Welcome(version=1, software="peerbak 0.1.0", node=bytes(range(32))),
    wire.PutShard(header=bytes(100)),
    wire.Data(data=b"x" * 1000),
    wire.Stored(),
    wire.GetShard(pack=bytes(32), index=31),
    wire.ShardFollows(header=bytes(100)),
    wire.GetRange(pack=bytes(32), index=0, offset=5, length=4096),
    wire.RangeFollows(length=4096),
    wire.Stat(pack=bytes(32), index=2),
    wire.ShardStat(header=bytes(100), size=1234),
    wire.List(after=b"", limit=10),
    wire.ShardList(shards=[bytes(33)], more=False),
    wire.Delete(pack=bytes(32), index=1),
    wire.Deleted(),
    wire.Space(),
    wire.SpaceInfo(quota=10, used=5, free=100),
    wire.JoinRequest(invite=bytes(16), proof=bytes(64), record=b"r" * 100),
    wire.JoinAccepted(roster=[b"a", b"b"]),
    wire.RosterPush(records=[b"c"]),
    wire.RosterAck(accepted=1),
    wire.Error(code="not-found", message="gone"),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_whole_and_byte_by_byte(msg: wire.Message) -> None:
    frame = wire.encode(msg)
    assert wire.Framer().feed(frame) == [msg]
    framer = wire.Framer()
    got: list[wire.Message] = []
    for i in range(len(frame)):
        got += framer.feed(frame[i : i + 1])
    assert got == [msg]
    assert framer.buffered == 0


def test_many_frames_in_one_feed_and_a_partial_one_kept() -> None:
    frames = b"".join(wire.encode(m) for m in SAMPLES)
    framer = wire.Framer()
    assert framer.feed(frames + wire.encode(SAMPLES[0])[:3]) == SAMPLES
    assert framer.buffered == 3


def test_eof_mid_frame_is_truncation() -> None:
    framer = wire.Framer()
    framer.feed(wire.encode(SAMPLES[1])[:10])
    with pytest.raises(RemoteProtocolError, match="truncated"):
        framer.feed(b"")


def test_oversized_length_is_refused_from_its_four_bytes() -> None:
    framer = wire.Framer()
    with pytest.raises(RemoteProtocolError, match="limit"):
        framer.feed(struct.pack(">I", wire.MAX_FRAME + 1))
    with pytest.raises(RemoteProtocolError, match="already failed"):
        framer.feed(wire.encode(wire.Stored()))


def _frame(obj: object) -> bytes:
    body = msgspec.msgpack.encode(obj)
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">I", 0),
        _frame(["Nope"]),
        _frame(["Stat", "a string", 0]),
        _frame(["Stat", bytes(31), 0]),
        _frame(["Stat", bytes(33), 0]),
        _frame(["Stat", bytes(32), 32]),
        _frame(["Stat", bytes(32), -1]),
        _frame(["GetRange", bytes(32), 0, -5, 10]),
        _frame(["GetRange", bytes(32), 0, 0, wire.RANGE_MAX + 1]),
        _frame(["Data", bytes(wire.DATA_MAX + 1)]),
        _frame(["List", b"", 0]),
        _frame(["ShardList", [bytes(33)] * (wire.LIST_MAX + 1), False]),
        _frame(["Stat", bytes(32), 0, "extra"]),
        _frame(["PutShard", bytes(99)]),
        _frame(["Hello", [], "x"]),
        _frame({"t": "Stat"}),
    ],
)
def test_invalid_messages_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        wire.Framer().feed(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 50), max_size=10))
def test_fuzzed_bytes_in_random_splits_only_raise_peerbak_errors(
    data: bytes, cuts: list[int]
) -> None:
    framer = wire.Framer(max_frame=4096)
    try:
        at = 0
        for cut in cuts:
            framer.feed(data[at : at + cut])
            at += cut
        framer.feed(data[at:])
        framer.feed(b"")
    except PeerbakError:
        pass


def test_data_frames_cover_the_view_in_order() -> None:
    view = memoryview(bytes(range(256)) * 10)
    framer = wire.Framer()
    got = [m for f in wire.data_frames(view, chunk=1000) for m in framer.feed(f)]
    assert b"".join(m.data for m in got if isinstance(m, wire.Data)) == bytes(view)
    assert len(got) == 3


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (NotFoundError("x"), NotFoundError),
        (ConflictError("x"), ConflictError),
        (StorageError("x"), StorageError),
        (RemoteProtocolError("x"), RemoteProtocolError),
    ],
)
def test_errors_cross_the_wire_as_their_class(exc: PeerbakError, cls: type[PeerbakError]) -> None:
    with pytest.raises(cls):
        wire.raise_for(wire.error_from(exc))


def test_unknown_error_codes_are_plain_failures() -> None:
    with pytest.raises(PeerbakError):
        wire.raise_for(wire.Error(code="from-the-future", message="?"))
