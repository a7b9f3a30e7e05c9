"""protocol/vectors/wire.json (protocol/wire.md), checked both ways.

The frames were made from plain msgpack lists, never by peerbak.core.wire, so a bug in the
messages' definitions cannot agree with itself here: encoding each message must give
the recorded frame, the framer must give back exactly the message, and every invalid
frame must be refused at the stated point (on feed, or only at the end of the stream).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peerbak.core import wire
from peerbak.core.errors import RemoteProtocolError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "protocol" / "vectors" / "wire.json").read_text(
        encoding="utf-8"
    )
)
VALID = [t for t in VECTORS["tests"] if t["result"] == "valid"]
INVALID = [t for t in VECTORS["tests"] if t["result"] == "invalid"]


def _value(v: Any) -> Any:
    if isinstance(v, dict):
        return bytes.fromhex(v["hex"])
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def _message(case: dict[str, Any]) -> wire.Message:
    cls = {c.__name__: c for c in wire.MESSAGES}[case["type"]]
    return cls(**{k: _value(v) for k, v in case["fields"].items()})


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["name"])
def test_encoding_gives_the_frame(case: dict[str, Any]) -> None:
    assert wire.encode(_message(case)).hex() == case["frame"]


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["name"])
def test_framing_gives_the_message(case: dict[str, Any]) -> None:
    framer = wire.Framer()
    assert framer.feed(bytes.fromhex(case["frame"])) == [_message(case)]
    assert framer.feed(b"") == []


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["name"])
def test_invalid_frames_are_refused_where_stated(case: dict[str, Any]) -> None:
    assert case["error"] == "RemoteProtocolError"
    framer = wire.Framer()
    if case["failsOn"] == "feed":
        with pytest.raises(RemoteProtocolError):
            framer.feed(bytes.fromhex(case["frame"]))
    else:
        assert framer.feed(bytes.fromhex(case["frame"])) == []
        with pytest.raises(RemoteProtocolError, match="truncated"):
            framer.feed(b"")


def test_every_message_has_a_vector_and_the_count_is_stated() -> None:
    assert {c["type"] for c in VALID} == {c.__name__ for c in wire.MESSAGES}
    assert VECTORS["numberOfTests"] == len(VECTORS["tests"])
    assert [t["tcId"] for t in VECTORS["tests"]] == list(range(1, len(VECTORS["tests"]) + 1))
