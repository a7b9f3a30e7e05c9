"""Hourly backups must not grow the manifest without end: once it lists many index
packs, the newest small ones are merged into one, and a node recovered from the pool
afterwards still has every snapshot, each restorable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbak.adapters.home import Home
from peerbak.node.compose import open_repository
from peerbak.services import index
from peerbak.tools.sample import differences
from tests.integration.nodes import Daemon, backup_in_process, make_pool, peerbak

pytestmark = pytest.mark.slow


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[list[Daemon]]:
    nodes = make_pool(tmp_path, ["owner", "f1", "f2", "f3"])
    try:
        yield nodes  # type: ignore[misc]
    finally:
        for node in nodes:
            node.kill()


async def test_index_packs_are_merged_and_recovery_still_sees_everything(
    pool: list[Daemon], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index, "INDEX_LIST_MAX", 3)
    owner = pool[0]
    source = tmp_path / "source"
    source.mkdir()
    ids = []
    for i in range(7):
        (source / f"file-{i}.txt").write_text(f"backup {i}\n" * 1000)
        summary = await backup_in_process(owner.home, [source], code=(2, 3))
        ids.append(summary["snapshot_id"])
        repo = await open_repository(Home(owner.home))
        async with repo:
            listed = await repo.index_packs()
        assert len(listed) <= 3  # merged as it grows, never more than the limit
    key = tmp_path / "key"
    key.write_text(owner.info["recovery_key"])
    owner.kill()
    recovered = tmp_path / "recovered-home"
    address = f"127.0.0.1:{pool[1].status()['port']}"
    info = peerbak(
        recovered,
        "recover",
        "--from",
        address,
        "--key-file",
        str(key),
        "--port",
        "0",
        "--listen",
        "127.0.0.1",
        "--no-lan",
    )
    assert info["snapshots"] == 7
    assert [s["id"] for s in peerbak(recovered, "snapshots")] == ids
    # The first snapshot's packs are listed only by a merged index now.
    first = tmp_path / "first"
    peerbak(recovered, "restore", ids[0][:8], "--target", str(first))
    restored = first / source.relative_to("/")
    assert sorted(p.name for p in restored.iterdir()) == ["file-0.txt"]
    latest = tmp_path / "latest"
    peerbak(recovered, "restore", "latest", "--target", str(latest))
    assert differences(source, latest / source.relative_to("/")) == []
