"""Recovery key test vectors (protocol/recovery-key.md): pin the format byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peerbak.core import errors
from peerbak.core.textcode import decode_recovery_key, encode_recovery_key

VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors" / "recovery-key.json"
DOC: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
TESTS: list[dict[str, Any]] = DOC["tests"]


def test_file_is_consistent() -> None:
    assert DOC["algorithm"] == "peerbak-recovery-key-v1"
    assert DOC["numberOfTests"] == len(TESTS)
    assert [t["tcId"] for t in TESTS] == list(range(1, len(TESTS) + 1))
    assert {f for t in TESTS for f in t["flags"]} == set(DOC["notes"])
    for t in TESTS:
        assert t["result"] in {"valid", "invalid"}
        assert ("corrected" in t) == (t["result"] == "valid")
        assert ("error" in t) == (t["result"] == "invalid")
    flags = {f for t in TESTS for f in t["flags"]}
    assert {"Canonical", "Typo", "Erasure", "TooManyTypos", "WrongVersion", "WrongLength"} <= flags


@pytest.mark.parametrize("t", TESTS, ids=lambda t: f"tc{t['tcId']}")
def test_vector(t: dict[str, Any]) -> None:
    secret = bytes.fromhex(t["secret"])
    if t["result"] == "valid":
        if "Canonical" in t["flags"]:
            assert encode_recovery_key(secret) == t["text"]
        got = decode_recovery_key(t["text"])
        assert got.secret == secret
        assert got.corrected == t["corrected"]
    else:
        error = getattr(errors, t["error"])
        assert issubclass(error, errors.PeerbakError)
        with pytest.raises(error):
            decode_recovery_key(t["text"])
