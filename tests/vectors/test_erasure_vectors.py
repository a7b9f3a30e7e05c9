"""protocol/vectors/erasure.json checked both ways: our encode makes the recorded shards, and
any k of the recorded shards decode to the recorded data.

The expected values were produced once by reedsolo alone, never by peerbak.core.codec, so a bug
in the codec cannot agree with itself here. The file is append-only within peerbak-erasure-v1.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from peerbak.core import errors
from peerbak.core.codec import ErasureCode

VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors" / "erasure.json"
DOC: dict[str, Any] = json.loads(VECTORS.read_text())
TESTS: list[dict[str, Any]] = DOC["tests"]
VALID = [t for t in TESTS if t["result"] == "valid"]
INVALID = [t for t in TESTS if t["result"] == "invalid"]


def test_header() -> None:
    assert DOC["algorithm"] == "peerbak-erasure-v1"
    assert DOC["numberOfTests"] == len(TESTS)
    assert [t["tcId"] for t in TESTS] == list(range(1, len(TESTS) + 1))
    assert {f for t in TESTS for f in t["flags"]} <= set(DOC["notes"])
    assert len(VALID) + len(INVALID) == len(TESTS)


def subsets(k: int, n: int, tc_id: int) -> list[tuple[int, ...]]:
    """Every k-subset when there are few, else the data, the parity-heaviest and a sample."""
    every = list(itertools.combinations(range(n), k)) if n <= 8 else []
    if every:
        return every
    rng = random.Random(tc_id)
    sample = [tuple(sorted(rng.sample(range(n), k))) for _ in range(6)]
    return [tuple(range(k)), tuple(range(n - k, n)), *sample]


@pytest.mark.parametrize("vector", VALID, ids=lambda t: f"tc{t['tcId']}")
def test_encode_makes_the_recorded_shards(vector: dict[str, Any]) -> None:
    code = ErasureCode(vector["k"], vector["n"])
    shards = code.encode(bytes.fromhex(vector["data"]))
    assert [bytes(s).hex() for s in shards] == vector["shards"]


@pytest.mark.parametrize("vector", VALID, ids=lambda t: f"tc{t['tcId']}")
def test_any_k_recorded_shards_decode_to_the_data(vector: dict[str, Any]) -> None:
    k, n = vector["k"], vector["n"]
    code = ErasureCode(k, n)
    data = bytes.fromhex(vector["data"])
    shards = [bytes.fromhex(h) for h in vector["shards"]]
    for subset in subsets(k, n, vector["tcId"]):
        have = {i: shards[i] for i in subset}
        assert code.decode(have, len(data)) == data
        lost = [i for i in range(n) if i not in subset]
        assert code.rebuild(have, lost) == {i: shards[i] for i in lost}


@pytest.mark.parametrize("vector", INVALID, ids=lambda t: f"tc{t['tcId']}")
def test_invalid_received_shards_are_rejected(vector: dict[str, Any]) -> None:
    code = ErasureCode(vector["k"], vector["n"])
    received = {int(i): bytes.fromhex(h) for i, h in vector["received"].items()}
    error = getattr(errors, vector["error"])
    assert issubclass(error, errors.PeerbakError)
    with pytest.raises(error):
        code.decode(received, len(bytes.fromhex(vector["data"])))
