"""protocol/vectors/wire.json, both ways: encode → frame, frame → message, invalid refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peerbak import wire
from peerbak.errors import RemoteProtocolError

VECTORS = json.loads((Path(__file__).parents[2] / "protocol" / "vectors" / "wire.json").read_text())
VALID = [t for t in VECTORS["tests"] if t["result"] == "valid"]
INVALID = [t for t in VECTORS["tests"] if t["result"] == "invalid"]


def _value(v: Any) -> Any:
    if isinstance(v, dict):
        return bytes.fromhex(v["hex"])
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def _message(case: dict[str, Any]) -> wire.Message:
    cls = getattr(wire, case["type"])
    result: wire.Message = cls(**{k: _value(v) for k, v in case["fields"].items()})
    return result


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["name"])
def test_building_gives_the_frame(case: dict[str, Any]) -> None:
    assert wire.encode(_message(case)).hex() == case["frame"]


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["name"])
def test_parsing_gives_the_message(case: dict[str, Any]) -> None:
    assert wire.Framer().feed(bytes.fromhex(case["frame"])) == [_message(case)]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["name"])
def test_invalid_frames_are_refused(case: dict[str, Any]) -> None:
    assert case["error"] == "RemoteProtocolError"

    def feed_then_eof() -> None:
        framer = wire.Framer()
        framer.feed(bytes.fromhex(case["frame"]))
        framer.feed(b"")

    with pytest.raises(RemoteProtocolError):
        feed_then_eof()


def test_the_vector_count_is_stated() -> None:
    assert VECTORS["numberOfTests"] == len(VECTORS["tests"])
