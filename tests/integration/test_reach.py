"""``peerbak reach`` on a real pool: members dial the owner back at the address they see."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbak.tools.localpool import LocalNode, make_pool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[LocalNode]]:
    base = Path(tempfile.mkdtemp(prefix="pbk-reach-"))
    pool = make_pool(base, ["owner", "f1", "f2"])
    try:
        yield pool
    finally:
        for node in pool:
            node.kill()
        shutil.rmtree(base, ignore_errors=True)


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
