import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerbak.core.errors import InputError, PeerbakError
from peerbak.core.ids import ChunkId, NodeId, PackId, ShardKey


def test_hex_round_trip_and_types_stay_apart() -> None:
    raw = bytes(range(32))
    pack = PackId(raw)
    assert PackId.from_hex(pack.text) == pack
    assert isinstance(PackId.from_hex(pack.text), PackId)
    assert pack.short == raw.hex()[:12]
    assert "PackId" in repr(pack)


def test_node_id_base32_round_trip() -> None:
    node = NodeId(bytes(range(100, 132)))
    assert len(node.b32) == 52
    assert NodeId.from_b32(node.b32) == node


@pytest.mark.parametrize(
    "text",
    [
        "../" + "a" * 61,
        "/" + "a" * 63,
        "a" * 63 + "\x00",
        "A" * 64,
        "a" * 63,
        "a" * 65,
        "",
        "a" * 10_000,
        " " + "a" * 63,
    ],
)
def test_ids_that_could_be_paths_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        ChunkId.from_hex(text)


@pytest.mark.parametrize(
    "name",
    [
        "x.0",
        "../" + "a" * 64 + ".0",
        "a" * 64 + ".32",
        "a" * 64 + ".01",
        "a" * 64,
        "a" * 64 + ".-1",
    ],
)
def test_bad_shard_names_are_refused(name: str) -> None:
    with pytest.raises(InputError):
        ShardKey.from_text(name)


def test_shard_key_round_trip_and_ordering() -> None:
    a = ShardKey(PackId(bytes(32)), 3)
    b = ShardKey(PackId(bytes(31) + b"\x01"), 0)
    assert ShardKey.from_text(a.text) == a
    assert sorted([b, a]) == [a, b]
    assert len({a, ShardKey.from_text(a.text)}) == 1


@given(st.text(max_size=200))
def test_fuzzed_text_only_raises_peerbak_errors(text: str) -> None:
    for parse in (ChunkId.from_hex, NodeId.from_b32, ShardKey.from_text):
        with contextlib.suppress(PeerbakError):
            parse(text)


def test_wrong_length_raw_id_is_refused() -> None:
    with pytest.raises(InputError):
        NodeId(b"short")
