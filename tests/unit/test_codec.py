"""The erasure code: any k shards give the pack back, and the bytes are reedsolo's.

Random data comes from ``random.Random(seed)`` with the seed drawn by hypothesis, so a
failure shrinks to a seed and a length rather than to hundreds of KiB of example bytes.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from array import array
from typing import Any

import pytest
import reedsolo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbak.core.codec import MAX_SHARDS, ErasureCode
from peerbak.core.errors import InputError, IntegrityError, NotEnoughShares, PeerbakError

FAST = settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])


def reference_shards(k: int, n: int, data: bytes) -> list[bytes]:
    """The definition, slowly: pad, cut into k contiguous shards, RSCodec(m) on each column."""
    size = -(-len(data) // k)
    padded = data + bytes(size * k - len(data))
    data_shards = [padded[i * size : (i + 1) * size] for i in range(k)]
    parity = [bytearray(size) for _ in range(n - k)]
    rs = reedsolo.RSCodec(n - k)
    for j in range(size):
        ecc = rs.encode(bytes(s[j] for s in data_shards))[k:]
        for i, byte in enumerate(ecc):
            parity[i][j] = byte
    return data_shards + [bytes(p) for p in parity]


def codes(max_n: int = MAX_SHARDS) -> st.SearchStrategy[tuple[int, int]]:
    """Uniform over (k, n) pairs, half the time among n <= 8 where every subset is tried."""
    pairs = [(k, n) for n in range(2, max_n + 1) for k in range(1, n)]
    return st.one_of(st.sampled_from([p for p in pairs if p[1] <= 8]), st.sampled_from(pairs))


@st.composite
def lengths(draw: st.DrawFn, k: int, big: int) -> int:
    """Lengths at the pad-to-k edges are drawn as often as arbitrary ones."""
    edge = draw(st.sampled_from([1, max(1, k - 1), k, k + 1, 2 * k - 1, 2 * k + 1]))
    mid = min(4096, big)
    return draw(st.one_of(st.just(edge), st.integers(1, mid), st.integers(mid, big)))


def random_bytes(seed: int, length: int) -> bytes:
    return random.Random(seed).randbytes(length)


def subsets(n: int, k: int, rng: random.Random, sample: int = 12) -> list[tuple[int, ...]]:
    """Every k-subset for n <= 8, otherwise a seeded sample plus the worst case (last k)."""
    if n <= 8:
        return list(itertools.combinations(range(n), k))
    picked = [tuple(sorted(rng.sample(range(n), k))) for _ in range(sample)]
    return [*picked, tuple(range(n - k, n)), tuple(range(k))]


# -- round trips ---------------------------------------------------------------------------


@FAST
@given(st.data(), codes(), st.integers(0, 2**32))
def test_decode_from_any_k_shards_gives_the_pack(
    data: st.DataObject, code: tuple[int, int], seed: int
) -> None:
    k, n = code
    pack = random_bytes(seed, data.draw(lengths(k, 300 * 1024)))
    ec = ErasureCode(k, n)
    shards = ec.encode(pack)
    size = ec.shard_length(len(pack))
    assert len(shards) == n
    assert all(len(s) == size for s in shards)
    for subset in subsets(n, k, random.Random(seed)):
        assert ec.decode({i: shards[i] for i in subset}, len(pack)) == pack


@pytest.mark.parametrize("n", range(2, MAX_SHARDS + 1))
def test_every_code_round_trips_from_its_parity_heaviest_subset(n: int) -> None:
    rng = random.Random(n)
    for k in range(1, n):
        pack = rng.randbytes(rng.randrange(1, 5 * k))
        ec = ErasureCode(k, n)
        shards = ec.encode(pack)
        assert [bytes(s) for s in shards] == reference_shards(k, n, pack)
        last = {i: shards[i] for i in range(n - k, n)}
        assert ec.decode(last, len(pack)) == pack


def test_data_shards_are_contiguous_zero_copy_slices() -> None:
    pack = bytes(range(256)) * 3  # 768 = 3 * 256, no padding
    shards = ErasureCode(3, 5).encode(pack)
    for i in range(3):
        assert shards[i].obj is pack
        assert bytes(shards[i]) == pack[i * 256 : (i + 1) * 256]


def test_padding_is_zero_and_whole_padding_shards_exist() -> None:
    ec = ErasureCode(4, 6)
    shards = ec.encode(b"\x07")
    assert [bytes(s) for s in shards[:4]] == [b"\x07", b"\x00", b"\x00", b"\x00"]
    assert ec.decode({4: shards[4], 5: shards[5], 1: shards[1], 3: shards[3]}, 1) == b"\x07"


def test_extra_shards_are_ignored_and_data_preferred() -> None:
    ec = ErasureCode(2, 4)
    pack = b"hello, world"
    shards = ec.encode(pack)
    garbage = b"\xff" * len(shards[2])
    given_shards: dict[int, bytes | memoryview] = {
        0: shards[0],
        1: shards[1],
        2: garbage,
        3: garbage,
    }
    assert ec.decode(given_shards, len(pack)) == pack


def test_non_byte_buffers_are_read_as_their_bytes() -> None:
    words = array("I", range(1000))
    ec = ErasureCode(3, 5)
    assert [bytes(s) for s in ec.encode(memoryview(words))] == [
        bytes(s) for s in ec.encode(words.tobytes())
    ]


def test_parity_out_and_decode_into_reuse_caller_memory() -> None:
    ec = ErasureCode(3, 5)
    pack = random_bytes(1, 10_001)
    size = ec.shard_length(len(pack))
    parity = [bytearray(size), bytearray(size)]
    shards = ec.encode(pack, parity_out=parity)
    assert [bytes(p) for p in parity] == [bytes(s) for s in shards[3:]]
    out = bytearray(len(pack))
    ec.decode_into({2: shards[2], 3: parity[0], 4: parity[1]}, len(pack), out)
    assert out == pack


@pytest.mark.parametrize(("k", "n"), [(1, 2), (3, 5), (4, 7), (10, 16)])
@pytest.mark.parametrize("length", [1, 2, 9, 10, 11, 1001])
def test_decode_into_equals_decode_for_every_missing_pattern(k: int, n: int, length: int) -> None:
    ec = ErasureCode(k, n)
    pack = random_bytes(length, length)
    shards = ec.encode(pack)
    for subset in subsets(n, k, random.Random(length)):
        out = bytearray(b"\xaa" * length)
        ec.decode_into({i: shards[i] for i in subset}, length, out)
        assert out == pack


# -- the bytes are reedsolo's --------------------------------------------------------------


@FAST
@given(st.data(), codes(), st.integers(0, 2**32))
def test_parity_equals_reedsolo_column_by_column(
    data: st.DataObject, code: tuple[int, int], seed: int
) -> None:
    k, n = code
    pack = random_bytes(seed, data.draw(lengths(k, 1500)))
    assert [bytes(s) for s in ErasureCode(k, n).encode(pack)] == reference_shards(k, n, pack)


# -- range rebuild -------------------------------------------------------------------------


@FAST
@given(st.data(), codes(), st.integers(0, 2**32))
def test_rebuild_of_a_range_equals_that_range_of_the_encode(
    data: st.DataObject, code: tuple[int, int], seed: int
) -> None:
    k, n = code
    pack = random_bytes(seed, data.draw(lengths(k, 64 * 1024)))
    ec = ErasureCode(k, n)
    shards = [bytes(s) for s in ec.encode(pack)]
    size = len(shards[0])
    start = data.draw(st.integers(0, size))
    stop = data.draw(st.integers(start, size))
    rng = random.Random(seed)
    lost = rng.sample(range(n), rng.randint(1, n - k))
    have = rng.sample([i for i in range(n) if i not in lost], k)
    given_shards = {i: memoryview(shards[i])[start:stop] for i in have}
    rebuilt = ec.rebuild(given_shards, lost)
    assert rebuilt == {w: shards[w][start:stop] for w in lost}
    into = {w: bytearray(stop - start) for w in lost}
    ec.rebuild_into(given_shards, into)
    assert into == {w: bytearray(shards[w][start:stop]) for w in lost}


def test_rebuild_handles_odd_ranges_and_present_shards() -> None:
    ec = ErasureCode(3, 6)
    shards = [bytes(s) for s in ec.encode(random_bytes(7, 3001))]
    given_shards = {i: shards[i][5:12] for i in (1, 4, 5)}  # 7 bytes: odd tail byte
    assert ec.rebuild(given_shards, [0, 2, 3, 4]) == {w: shards[w][5:12] for w in (0, 2, 3, 4)}
    assert ec.rebuild({i: b"" for i in (0, 1, 2)}, [5]) == {5: b""}


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n"), [(0, 2), (1, 1), (3, 3), (4, 3), (-1, 5), (1, 33), (32, 33), (5, 100)]
)
def test_k_n_out_of_range_is_input_error(k: int, n: int) -> None:
    with pytest.raises(InputError):
        ErasureCode(k, n)


def test_fewer_than_k_shards_is_not_enough_shares() -> None:
    ec = ErasureCode(3, 5)
    shards = ec.encode(b"x" * 100)
    with pytest.raises(NotEnoughShares) as info:
        ec.decode({0: shards[0], 4: shards[4]}, 100)
    assert (info.value.have, info.value.need) == (2, 3)
    with pytest.raises(NotEnoughShares):
        ec.rebuild({1: shards[1]}, [0])


def test_shard_lengths_must_match() -> None:
    ec = ErasureCode(3, 5)
    shards = [bytes(s) for s in ec.encode(b"y" * 100)]
    with pytest.raises(IntegrityError) as info:
        ec.decode({0: shards[0], 1: shards[1][:-1], 4: shards[4]}, 100)
    assert info.value.check == "length"
    with pytest.raises(IntegrityError):
        ec.decode({0: shards[0], 1: shards[1], 2: shards[2]}, 200)
    with pytest.raises(IntegrityError):
        ec.rebuild({0: shards[0], 1: shards[1], 4: shards[4][:5]}, [2])


def test_bad_indices_and_lengths_are_input_errors() -> None:
    ec = ErasureCode(2, 3)
    shards = ec.encode(b"abcd")
    with pytest.raises(InputError):
        ec.decode({0: shards[0], 3: shards[1]}, 4)
    with pytest.raises(InputError):
        ec.rebuild({0: shards[0], 1: shards[1]}, [3])
    with pytest.raises(InputError):
        ec.encode(b"")
    with pytest.raises(InputError):
        ec.shard_length(0)
    with pytest.raises(InputError):
        ec.encode(b"abcd", parity_out=[memoryview(bytes(2))])  # read-only
    with pytest.raises(InputError):
        ec.decode_into(dict(enumerate(shards)), 4, bytearray(3))


hashable_garbage = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.binary(max_size=40),
)
garbage = st.one_of(
    hashable_garbage, st.floats(allow_nan=True), st.lists(st.integers(-3, 40), max_size=4)
)
garbage_shards = st.one_of(
    garbage,
    st.dictionaries(
        st.one_of(st.integers(-3, 40), hashable_garbage),
        st.one_of(st.binary(max_size=12), garbage),
    ),
)


@settings(deadline=None, max_examples=300)
@given(codes(max_n=8), garbage_shards, garbage, garbage)
def test_garbage_raises_only_peerbak_errors(
    code: tuple[int, int], shards: Any, pack_length: Any, want: Any
) -> None:
    ec = ErasureCode(*code)
    for call in (
        lambda: ec.decode(shards, pack_length),
        lambda: ec.rebuild(shards, want),
        lambda: ec.encode(pack_length),
        lambda: ec.shard_length(pack_length),
        lambda: ec.decode_into(shards, pack_length, bytearray(8)),
    ):
        with contextlib.suppress(PeerbakError):
            call()


@settings(deadline=None, max_examples=300)
@given(
    codes(max_n=8),
    st.dictionaries(st.integers(-2, 9), st.binary(max_size=12), max_size=9),
    st.integers(-2, 40),
    st.lists(st.integers(-2, 9), max_size=4),
)
def test_nearly_valid_input_raises_only_peerbak_errors(
    code: tuple[int, int], shards: dict[int, bytes], pack_length: int, want: list[int]
) -> None:
    """Plausible shapes with wrong details reach the deep checks that pure garbage cannot."""
    ec = ErasureCode(*code)
    try:
        pack = ec.decode(shards, pack_length)
    except PeerbakError:
        pass
    else:
        assert len(pack) == pack_length
    try:
        rebuilt = ec.rebuild(shards, want)
    except PeerbakError:
        pass
    else:
        assert set(rebuilt) == set(want)
