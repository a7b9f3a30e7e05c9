"""peerbak.core.wire: every message round-trips, framing survives any split, hostile input is
refused as a protocol error (and nothing else), errors cross the wire as their class."""

from __future__ import annotations

import array
import struct
import typing
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbak.core import errors, pool, wire
from peerbak.core.errors import PeerbakError, RemoteProtocolError
from peerbak.core.ids import PackId
from peerbak.core.pack import MAX_PACK, build_shard_header
from peerbak.services.holder import NoSpace, QuotaExceeded

# --- strategies, derived from the messages' own msgspec schema ------------------------------

#: Fields whose rule msgspec.Meta cannot state (checked in __post_init__).
_OVERRIDES: dict[tuple[type[Any], str], st.SearchStrategy[Any]] = {
    (wire.List, "after"): st.one_of(st.just(b""), st.binary(min_size=33, max_size=33)),
}


def _field(t: mi.Type) -> st.SearchStrategy[Any]:
    """Values within the declared limits; sizes capped so examples stay small."""
    if isinstance(t, mi.BytesType):
        lo = t.min_length or 0
        return st.binary(min_size=lo, max_size=max(lo, min(t.max_length or 64, 64)))
    if isinstance(t, mi.IntType):
        return st.integers(t.ge, t.le)
    if isinstance(t, mi.StrType):
        hi = min(t.max_length or 40, 40)
        if t.pattern:
            return st.from_regex(t.pattern).filter(lambda s: (t.min_length or 0) <= len(s) <= hi)
        return st.text(min_size=t.min_length or 0, max_size=hi)
    if isinstance(t, mi.ListType):
        lo = t.min_length or 0
        return st.lists(_field(t.item_type), min_size=lo, max_size=max(lo, 4))
    if isinstance(t, mi.BoolType):
        return st.booleans()
    raise AssertionError(f"no strategy for {t}")


def message(cls: type[wire.Message]) -> st.SearchStrategy[wire.Message]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = {f.name: _OVERRIDES.get((cls, f.name), _field(f.type)) for f in info.fields}
    return st.builds(cls, **fields)


any_message = st.one_of([message(cls) for cls in wire.MESSAGES])

SAMPLES: list[wire.Message] = [
    wire.Hello(versions=[1, 2], software="peerbak 0.1.0"),
    wire.Welcome(version=1, software="peerbak 0.1.0", node=bytes(range(32))),
    wire.PutShard(header=bytes(100)),
    wire.Data(data=b"x" * 300),
    wire.Stored(),
    wire.GetRange(pack=bytes(32), index=31, offset=5, length=4096),
    wire.List(after=b"", limit=10),
    wire.ShardList(shards=[bytes(33)], more=True),
    wire.Error(code="not-found", message="gone"),
]


def frame(obj: object) -> bytes:
    """A frame holding any msgpack, built without peerbak.core.wire."""
    body = msgspec.msgpack.encode(obj)
    return struct.pack(">I", len(body)) + body


def feed_all(framer: wire.Framer, data: bytes, cuts: list[int]) -> list[wire.Message]:
    got: list[wire.Message] = []
    at = 0
    for cut in cuts:
        got += framer.feed(data[at : at + cut])
        at += cut
    return got + framer.feed(data[at:])


# --- round trips ------------------------------------------------------------------------------


def test_messages_lists_exactly_the_union() -> None:
    assert set(wire.MESSAGES) == set(typing.get_args(wire.Message))
    tags = [getattr(mi.type_info(c), "tag", None) for c in wire.MESSAGES]
    assert tags == [c.__name__ for c in wire.MESSAGES]


@pytest.mark.parametrize("cls", wire.MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_message_round_trips(cls: type[wire.Message], data: st.DataObject) -> None:
    msg = data.draw(message(cls))
    encoded = wire.encode(msg)
    assert struct.unpack(">I", encoded[:4])[0] == len(encoded) - 4
    assert wire.decode(encoded[4:]) == msg
    assert wire.Framer().feed(encoded) == [msg]


@settings(max_examples=150, deadline=None)
@given(st.lists(any_message, max_size=6), st.lists(st.integers(1, 40), max_size=12))
def test_any_split_of_any_stream_gives_the_same_messages(
    msgs: list[wire.Message], cuts: list[int]
) -> None:
    framer = wire.Framer()
    assert feed_all(framer, b"".join(map(wire.encode, msgs)), cuts) == msgs
    assert framer.buffered == 0
    assert framer.feed(b"") == []


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_one_byte_at_a_time(msg: wire.Message) -> None:
    encoded = wire.encode(msg)
    framer = wire.Framer()
    got: list[wire.Message] = []
    for i in range(len(encoded)):
        got += framer.feed(encoded[i : i + 1])
        assert framer.buffered == (i + 1) % len(encoded)
    assert got == [msg]


def test_frames_together_split_and_with_a_partial_one_kept() -> None:
    stream = b"".join(map(wire.encode, SAMPLES))
    framer = wire.Framer()
    assert framer.feed(stream + wire.encode(SAMPLES[1])[:3]) == SAMPLES
    assert framer.buffered == 3
    assert framer.feed(wire.encode(SAMPLES[1])[3:] + wire.encode(SAMPLES[0])) == SAMPLES[1::-1]
    for cut in range(len(stream)):
        framer = wire.Framer()
        assert framer.feed(stream[:cut]) + framer.feed(stream[cut:]) == SAMPLES


def test_any_bytes_like_input_and_the_callers_buffer_is_left_free() -> None:
    encoded = wire.encode(SAMPLES[0])
    buf = bytearray(encoded)
    assert wire.Framer().feed(buf) == [SAMPLES[0]]
    assert wire.Framer().feed(memoryview(encoded)[:]) == [SAMPLES[0]]
    words = array.array("I")
    words.frombytes(encoded[:4] * 2)  # a memoryview of 4-byte items is read as its bytes
    assert wire.Framer().feed(memoryview(words)) == []
    buf += b"\0\0\0\0"  # no export of the caller's bytearray outlives feed, even an error
    with pytest.raises(RemoteProtocolError) as caught:
        wire.Framer().feed(buf)
    buf.clear()  # would raise BufferError if the traceback still held a view of it
    framer = wire.Framer()
    framer.feed(encoded[:2])
    rest = bytearray(struct.pack(">H", 6) + b"\x91\xa4Nope")
    with pytest.raises(RemoteProtocolError, match="Nope"):
        framer.feed(rest)
    rest.clear()
    assert caught.value.__traceback__ is not None


# --- framing errors ---------------------------------------------------------------------------


def test_eof_on_a_boundary_is_clean_and_inside_a_frame_is_truncation() -> None:
    encoded = wire.encode(SAMPLES[1])
    framer = wire.Framer()
    assert framer.feed(encoded) == [SAMPLES[1]]
    assert framer.feed(b"") == []
    framer.feed(encoded[:10])
    with pytest.raises(RemoteProtocolError, match=f"truncated frame: 10 of {len(encoded)} bytes"):
        framer.feed(b"")
    framer = wire.Framer()
    framer.feed(encoded[:2])
    with pytest.raises(RemoteProtocolError, match="truncated frame: 2 of at least 4 bytes"):
        framer.feed(b"")


@pytest.mark.parametrize("split", [0, 1, 3])
def test_an_oversized_length_is_refused_from_its_four_bytes(split: int) -> None:
    framer = wire.Framer()
    prefix = struct.pack(">I", 0xFFFFFFFF)
    framer.feed(prefix[:split])
    with pytest.raises(
        RemoteProtocolError, match=rf"4294967295 bytes .* limit of {wire.MAX_FRAME}"
    ):
        framer.feed(prefix[split:])
    assert framer.buffered == 0


def test_the_limit_is_inclusive_and_configurable() -> None:
    msg = wire.Data(data=bytes(50))
    size = len(wire.encode(msg)) - 4
    assert wire.Framer(max_frame=size).feed(wire.encode(msg)) == [msg]
    with pytest.raises(RemoteProtocolError, match="limit"):
        wire.Framer(max_frame=size - 1).feed(wire.encode(msg)[:4])
    full = wire.Data(data=bytes(wire.DATA_MAX))
    assert wire.Framer().feed(wire.encode(full)) == [full]  # the largest Data fits MAX_FRAME
    with pytest.raises(ValueError, match="max_frame"):
        wire.Framer(max_frame=0)


def test_zero_length_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="length 0"):
        wire.Framer().feed(struct.pack(">I", 0))


def test_a_failed_framer_stays_failed() -> None:
    framer = wire.Framer()
    with pytest.raises(RemoteProtocolError):
        framer.feed(frame(["Nope"]))
    for data in (wire.encode(wire.Stored()), b""):
        with pytest.raises(RemoteProtocolError, match="already failed: invalid message"):
            framer.feed(data)
    assert framer.buffered == 0


_ID = bytes(32)
INVALID = {
    "garbage-msgpack": struct.pack(">I", 4) + b"\xc1\xff\x00\x01",
    "trailing-bytes": struct.pack(">I", 9) + msgspec.msgpack.encode(["Stored"]) + b"\x00",
    "map-not-array": frame({"type": "Stat", "pack": _ID, "index": 0}),
    "not-an-array": frame("Stat"),
    "empty-array": frame([]),
    "unknown-tag": frame(["Nope"]),
    "tag-not-a-string": frame([7, _ID, 0]),
    "missing-field": frame(["Stat", _ID]),
    "extra-field": frame(["Stat", _ID, 0, "extra"]),
    "str-for-bytes": frame(["Stat", "a string of 32 characters, or so", 0]),
    "bytes-for-str": frame(["Hello", [1], b"peerbak"]),
    "bool-for-int": frame(["Stat", _ID, True]),
    "int-for-bool": frame(["ShardList", [], 0]),
    "float-for-int": frame(["Stat", _ID, 1.0]),
    "id-31": frame(["Stat", bytes(31), 0]),
    "id-33": frame(["Stat", bytes(33), 0]),
    "node-31": frame(["Welcome", 1, "x", bytes(31)]),
    "index-32": frame(["GetShard", _ID, 32]),
    "index-negative": frame(["Delete", _ID, -1]),
    "offset-negative": frame(["GetRange", _ID, 0, -5, 10]),
    "offset-too-far": frame(["GetRange", _ID, 0, MAX_PACK + 1, 10]),
    "range-zero": frame(["GetRange", _ID, 0, 0, 0]),
    "range-over": frame(["GetRange", _ID, 0, 0, wire.RANGE_MAX + 1]),
    "follows-zero": frame(["RangeFollows", 0]),
    "header-99": frame(["PutShard", bytes(99)]),
    "header-101": frame(["ShardFollows", bytes(101)]),
    "stat-size-small": frame(["ShardStat", bytes(100), 99]),
    "data-empty": frame(["Data", b""]),
    "data-over": frame(["Data", bytes(wire.DATA_MAX + 1)]),
    "hello-no-versions": frame(["Hello", [], "x"]),
    "hello-9-versions": frame(["Hello", [1] * 9, "x"]),
    "hello-version-0": frame(["Hello", [0], "x"]),
    "software-65": frame(["Hello", [1], "x" * 65]),
    "software-escape": frame(["Hello", [1], "\x1b[2J"]),
    "software-newline": frame(["Hello", [1], "peerbak\n"]),
    "list-after-5": frame(["List", b"12345", 10]),
    "list-after-34": frame(["List", bytes(34), 10]),
    "list-limit-0": frame(["List", b"", 0]),
    "list-limit-over": frame(["List", b"", wire.LIST_MAX + 1]),
    "shardlist-over": frame(["ShardList", [bytes(33)] * (wire.LIST_MAX + 1), False]),
    "shardlist-key-32": frame(["ShardList", [bytes(32)], False]),
    "space-negative": frame(["SpaceInfo", -1, 0, 0]),
    "space-over-u63": frame(["SpaceInfo", 1 << 63, 0, 0]),
    "invite-15": frame(["JoinRequest", bytes(15), bytes(64), b"r"]),
    "proof-63": frame(["JoinRequest", bytes(16), bytes(63), b"r"]),
    "record-over": frame(["JoinRequest", bytes(16), bytes(64), bytes(wire.RECORD_MAX + 1)]),
    "roster-over": frame(["JoinAccepted", [b"r"] * (wire.ROSTER_MAX + 1)]),
    "push-record-over": frame(["RosterPush", [bytes(wire.RECORD_MAX + 1)]]),
    "ack-over": frame(["RosterAck", wire.ROSTER_MAX + 1]),
    "error-code-upper": frame(["Error", "NOT-FOUND", "x"]),
    "error-code-empty": frame(["Error", "", "x"]),
    "error-code-33": frame(["Error", "x" * 33, "x"]),
    "error-message-over": frame(["Error", "internal", "x" * 1025]),
    "invalid-utf8": struct.pack(">I", 10) + b"\x93\xa4Stat\xa2\xff\xfe\x00",
}


@pytest.mark.parametrize("data", INVALID.values(), ids=INVALID.keys())
def test_invalid_messages_are_protocol_errors_with_msgspecs_reason(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match=r"invalid message: .+"):
        wire.Framer().feed(data)


VALID_EDGES = {
    "index-31": ["GetShard", _ID, 31],
    "offset-max": ["GetRange", _ID, 0, MAX_PACK, wire.RANGE_MAX],
    "hello-8-versions": ["Hello", [255] * 8, "~" * 64],
    "list-after-33": ["List", bytes(33), wire.LIST_MAX],
    "shardlist-full": ["ShardList", [bytes(33)] * wire.LIST_MAX, False],
    "space-max": ["SpaceInfo", (1 << 63) - 1, 0, 0],
    "record-max": ["JoinRequest", bytes(16), bytes(64), bytes(wire.RECORD_MAX)],
    "roster-records": ["RosterPush", [bytes(wire.RECORD_MAX)] * 100],
    "error-max": ["Error", "x" * 32, "é\n" * 512],
    "unknown-error-code": ["Error", "from-the-future", ""],
}


@pytest.mark.parametrize("obj", VALID_EDGES.values(), ids=VALID_EDGES.keys())
def test_values_at_their_limits_are_accepted(obj: list[Any]) -> None:
    (msg,) = wire.Framer().feed(frame(obj))
    assert wire.encode(msg) == frame(obj)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=10))
def test_fuzzed_bytes_only_ever_raise_protocol_errors(data: bytes, cuts: list[int]) -> None:
    framer = wire.Framer(max_frame=512)
    try:
        feed_all(framer, data, cuts)
        framer.feed(b"")
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(any_message, st.data())
def test_mutated_frames_decode_or_are_refused(msg: wire.Message, data: st.DataObject) -> None:
    encoded = bytearray(wire.encode(msg))
    at = data.draw(st.integers(4, len(encoded) - 1))
    encoded[at] = data.draw(st.integers(0, 255))
    try:
        got = wire.Framer().feed(encoded)
    except RemoteProtocolError:
        return
    assert len(got) == 1
    assert wire.decode(wire.encode(got[0])[4:]) == got[0]


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 255, 256, 65535, 65536, wire.DATA_MAX])
def test_data_frames_are_exactly_what_encode_makes(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    (one,) = wire.data_frames(memoryview(payload))
    assert one == wire.encode(wire.Data(data=payload))


def test_data_frames_cover_the_view_in_order() -> None:
    payload = bytes(range(256)) * 10
    frames = list(wire.data_frames(memoryview(payload), chunk=1000))
    assert [len(f) for f in frames] == [1000 + 13, 1000 + 13, 560 + 13]
    got = wire.Framer().feed(b"".join(frames))
    assert b"".join(m.data for m in got if isinstance(m, wire.Data)) == payload
    assert list(wire.data_frames(memoryview(b""))) == []
    with pytest.raises(ValueError, match="chunk"):
        next(wire.data_frames(memoryview(payload), chunk=wire.DATA_MAX + 1))


def test_a_large_stream_in_small_reads_never_buffers_more_than_a_frame() -> None:
    payload = bytes(range(256)) * (12 << 12)  # 12 MiB
    stream = memoryview(b"".join(wire.data_frames(memoryview(payload))))
    framer = wire.Framer()
    out = bytearray()
    for at in range(0, len(stream), 40_000):
        for msg in framer.feed(stream[at : at + 40_000]):
            assert isinstance(msg, wire.Data)
            out += msg.data
        assert framer.buffered <= wire.MAX_FRAME + 4
    assert out == payload


def test_shard_length_of_reads_the_header_and_bad_headers_are_integrity_errors() -> None:
    data = bytes(1000)
    header = build_shard_header(PackId(bytes(32)), 2, 3, 5, 2999, data).to_bytes()
    assert wire.shard_length_of(wire.PutShard(header=header)) == 1000
    assert wire.shard_length_of(wire.ShardFollows(header=header)) == 1000
    with pytest.raises(errors.IntegrityError):
        wire.shard_length_of(wire.PutShard(header=bytes(100)))


def test_version_choice_is_the_highest_common() -> None:
    assert wire.choose_version([1]) == 1
    assert wire.choose_version([3, 1, 2], supported=(1, 2)) == 2
    assert wire.choose_version([2, 3]) == 0
    assert wire.PROTOCOL_VERSION in wire.SUPPORTED_VERSIONS


def test_limits_agree_with_the_other_formats() -> None:
    assert wire.RECORD_MAX == pool.MAX_SIGNED_RECORD
    assert wire.RANGE_MAX == MAX_PACK


# --- errors across the wire -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code", "cls"),
    [
        (RemoteProtocolError("x"), "protocol", RemoteProtocolError),
        (errors.IntegrityError("x"), "integrity", errors.IntegrityError),
        (errors.ConflictError("x"), "conflict", errors.ConflictError),
        (errors.NotFoundError("x"), "not-found", errors.NotFoundError),
        (QuotaExceeded("x"), "quota", errors.StorageError),
        (NoSpace("x"), "no-space", errors.StorageError),
        (errors.StorageError("x"), "storage", errors.StorageError),
        (errors.InputError("x"), "input", errors.InputError),
        (errors.PeerUnavailable("x"), "busy", errors.PeerUnavailable),
        (errors.LedgerError("x"), "internal", PeerbakError),
        (errors.ConfigError("x"), "internal", PeerbakError),
        (errors.NotEnoughShares("x"), "internal", PeerbakError),
        (PeerbakError("x"), "internal", PeerbakError),
    ],
)
def test_errors_cross_the_wire_as_their_class(
    exc: PeerbakError, code: str, cls: type[PeerbakError]
) -> None:
    err = wire.error_from(exc)
    assert err.code == code
    assert wire.Framer().feed(wire.encode(err)) == [err]
    with pytest.raises(cls) as caught:
        wire.raise_for(err)
    assert type(caught.value) is cls


def test_every_code_maps_to_a_class_and_unknown_codes_are_plain_failures() -> None:
    assert set(wire.CODES) == set(wire.ErrorCode)
    for code, cls in wire.CODES.items():
        with pytest.raises(cls, match=f"peer refused \\({code}\\): why"):
            wire.raise_for(wire.Error(code=code, message="why"))
    with pytest.raises(PeerbakError) as caught:
        wire.raise_for(wire.Error(code="from-the-future", message="?"))
    assert type(caught.value) is PeerbakError


def test_what_crosses_is_safe_to_send_and_to_show() -> None:
    internal = wire.error_from(errors.LedgerError("/home/me/.peerbak/ledger.db is locked"))
    assert "/home" not in internal.message
    long = wire.error_from(errors.NotFoundError("x" * 5000))
    assert len(long.message) == wire.ERROR_MESSAGE_MAX
    assert wire.Framer().feed(wire.encode(long)) == [long]
    with pytest.raises(errors.InputError) as caught:
        wire.raise_for(wire.Error(code="invite-expired", message="expired\x1b[2J\nnow"))
    assert str(caught.value) == "peer refused (invite-expired): expired?[2J?now"
