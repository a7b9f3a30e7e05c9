"""``peerbak reach`` on a real pool: members dial the owner back at the address they see."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from peerbak.tools.localpool import LocalNode, temporary_pool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[LocalNode]]:
    with temporary_pool(["owner", "f1", "f2"], "pbk-reach-") as pool:
        yield pool


def test_every_member_reaches_the_owner_then_none_once_it_stops(nodes: list[LocalNode]) -> None:
    owner = nodes[0]
    report = owner.cli("reach")
    port = report["port"]
    assert port > 0
    assert report["direct_v4"] == "yes"
    assert report["direct_v6"] == "unknown"
    assert sorted(r["name"] for r in report["members"]) == ["f1", "f2"]
    for row in report["members"]:
        assert row["ok"], row
        assert row["address"] == f"127.0.0.1:{port}"

    owner.stop()  # nothing listens on the port the owner's record names now
    out = owner.cli("reach", check=False)
    assert out.returncode == 75, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["direct_v4"] == "no"
    assert not report["reachable"]
    assert report["port"] == port
    assert len(report["errors_v4"]) == 2
    for row in report["members"]:
        assert row["up"]
        assert not row["ok"]
        assert row["address"] == f"127.0.0.1:{port}"
        assert f"127.0.0.1:{port}" in row["error"]
