import contextlib
import random

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbak.core import crypto
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import BlobType, Compression, NodeKeys
from peerbak.core.errors import InputError, IntegrityError, PeerbakError
from peerbak.core.pack import (
    SHARD_HEADER_LEN,
    PackWriter,
    PlainBlob,
    ShardHeader,
    make_shards,
    open_blob,
    pack_id_of,
    prepare_blob,
    read_pack_header,
    verify_shard,
)

KEYS = NodeKeys.derive(bytes(range(32)))


def _pack(
    contents: list[bytes], seed: int = 0, target: int = 16 << 20
) -> tuple[memoryview, list[bytes]]:
    rnd = random.Random(seed)
    writer = PackWriter(KEYS.data_key, target)
    zstd = zstandard.ZstdCompressor(level=3)
    for data in contents:
        ident = crypto.chunk_id(KEYS.chunk_id_key, data)
        writer.add(prepare_blob(BlobType.DATA, ident, data, zstd), rnd.randbytes(24))
    pack_id, view, entries = writer.seal(rnd.randbytes(24))
    assert pack_id == pack_id_of(view)
    assert [e.ident for e in entries] == [crypto.chunk_id(KEYS.chunk_id_key, d) for d in contents]
    return view, contents


def test_pack_round_trip_compresses_only_what_pays() -> None:
    text = b"all work and no play " * 5000
    noise = random.Random(2).randbytes(50_000)
    view, contents = _pack([text, noise, b"x"])
    entries = read_pack_header(KEYS.data_key, view)
    assert [e.compression for e in entries] == [
        Compression.ZSTD,
        Compression.NONE,
        Compression.NONE,
    ]
    assert entries[0].length < len(text) // 10
    for entry, original in zip(entries, contents, strict=True):
        blob = view[entry.offset : entry.offset + entry.length]
        assert open_blob(KEYS.data_key, KEYS.chunk_id_key, entry, blob) == original


def test_writer_buffer_is_reused_between_packs() -> None:
    writer = PackWriter(KEYS.data_key, 1 << 16)
    blob = prepare_blob(BlobType.DATA, crypto.chunk_id(KEYS.chunk_id_key, b"a"), b"a", None)
    writer.add(blob, bytes(24))
    _, first, _ = writer.seal(bytes(24))
    writer.add(blob, bytes(24))
    _, second, _ = writer.seal(bytes(24))
    assert first.obj is second.obj


def test_full_pack_refuses_more_and_empty_pack_cannot_be_sealed() -> None:
    writer = PackWriter(KEYS.data_key, 100)
    with pytest.raises(InputError):
        writer.seal(bytes(24))
    data = bytes(200)
    blob = prepare_blob(BlobType.DATA, crypto.chunk_id(KEYS.chunk_id_key, data), data, None)
    writer.add(blob, bytes(24))
    assert writer.full
    with pytest.raises(InputError):
        writer.add(blob, bytes(24))


def test_every_flipped_bit_in_a_pack_is_detected() -> None:
    view, _ = _pack([b"first chunk", b"second chunk" * 3])
    pack = bytes(view)

    def read_all(damaged: bytearray) -> None:
        for entry in read_pack_header(KEYS.data_key, damaged):
            stored = damaged[entry.offset : entry.offset + entry.length]
            open_blob(KEYS.data_key, KEYS.chunk_id_key, entry, stored)

    for bit in range(0, len(pack) * 8, 3):
        damaged = bytearray(pack)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(IntegrityError):
            read_all(damaged)


def test_wrong_key_reading_a_pack() -> None:
    view, _ = _pack([b"data"])
    with pytest.raises(IntegrityError):
        read_pack_header(NodeKeys.derive(bytes(32)).data_key, view)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_fuzzed_packs_only_raise_peerbak_errors(data: bytes) -> None:
    with pytest.raises(PeerbakError):
        read_pack_header(KEYS.data_key, data)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_fuzzed_mutations_of_a_real_pack(data: st.DataObject) -> None:
    view, _ = _pack([b"alpha" * 100, b"beta"])
    pack = bytearray(view)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(pack) - 1))
        pack[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(pack)))
    with contextlib.suppress(PeerbakError):
        read_pack_header(KEYS.data_key, bytes(pack[:cut]))


# --- shard container ---------------------------------------------------------------------


def _shards() -> tuple[list[bytes], memoryview]:
    view, _ = _pack([random.Random(5).randbytes(30_000), b"tail"])
    _, shards = make_shards(ErasureCode(3, 5), pack_id_of(view), view, [])
    return [s.to_bytes() for s in shards], view


def test_shard_containers_verify_and_carry_the_pack() -> None:
    containers, view = _shards()
    assert len(containers) == 5
    for index, raw in enumerate(containers):
        header, _ = verify_shard(raw)
        assert header.index == index
        assert (header.k, header.n, header.pack_length) == (3, 5, len(view))
        assert header.shard_length == -(-len(view) // 3)
        assert ShardHeader.parse(header.to_bytes()) == header
    joined = b"".join(bytes(verify_shard(c)[1]) for c in containers[:3])
    assert joined[: len(view)] == bytes(view)


def test_every_flipped_header_bit_and_sampled_data_bits_are_detected() -> None:
    containers, _ = _shards()
    raw = containers[1]
    bits = list(range(SHARD_HEADER_LEN * 8)) + list(range(SHARD_HEADER_LEN * 8, len(raw) * 8, 997))
    for bit in bits:
        damaged = bytearray(raw)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(IntegrityError):
            verify_shard(damaged)


def test_truncated_or_extended_shard_is_refused() -> None:
    containers, _ = _shards()
    with pytest.raises(IntegrityError, match="data bytes"):
        verify_shard(containers[0][:-1])
    with pytest.raises(IntegrityError, match="data bytes"):
        verify_shard(containers[0] + b"\x00")
    with pytest.raises(IntegrityError):
        verify_shard(containers[0][:50])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzzed_shards_only_raise_peerbak_errors(raw: bytes) -> None:
    with pytest.raises(PeerbakError):
        verify_shard(raw)


def test_a_frame_claiming_more_than_the_header_is_refused_before_decompressing() -> None:
    """zstandard would allocate what the frame declares; the header's length bounds it."""
    plain = b"a" * 1000
    ident = crypto.chunk_id(KEYS.chunk_id_key, plain)
    liar = zstandard.ZstdCompressor().compress(b"a" * (64 << 20))  # declares 64 MiB
    writer = PackWriter(KEYS.data_key, 1 << 20)
    writer.add(PlainBlob(BlobType.DATA, Compression.ZSTD, ident, len(plain), liar), bytes(24))
    _, view, entries = writer.seal(bytes(24))
    entry = entries[0]
    with pytest.raises(IntegrityError, match="claims"):
        open_blob(
            KEYS.data_key,
            KEYS.chunk_id_key,
            entry,
            view[entry.offset : entry.offset + entry.length],
        )
