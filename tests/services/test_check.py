"""``check`` against the in-process pool: a clean pool, a missing shard, a damaged one,
a pack beyond reading, members down, leftovers, and the subsets of packs read."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from peerbak.core.errors import InputError
from peerbak.core.ids import PackId, ShardKey
from peerbak.services.backup import run_backup
from peerbak.services.check import parse_subset, run_check
from peerbak.services.repository import Repository
from peerbak.tools.mempool import MemoryPool
from tests.services.kit import damage, stored_packs

CODE = (2, 4)
PACK = 64 << 10


@pytest.fixture
async def backed_up(repo: Repository, tmp_path: Path) -> Repository:
    """A pool holding one snapshot of a dozen files, in several packs."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"f{i}.bin").write_bytes(random.Random(i).randbytes(30_000 + i))
    await run_backup(repo, [src], code=CODE, pack_size=PACK)
    return repo


async def shard_on(repo: Repository, mempool: MemoryPool, i: int) -> tuple[ShardKey, Path]:
    """One shard member ``i`` holds, and its file."""
    store = mempool.store(bytes(mempool.keys[i].node_id))
    key = min([k async for k in store.list()], key=lambda k: k.text)
    return key, store._path(key)


def clean(report: dict[str, Any]) -> bool:
    return bool(
        report["ok"]
        and report["shards_missing"] == report["shards_damaged"] == 0
        and report["packs_unreadable"] == report["shards_unknown"] == 0
        and report["problems"] == []
    )


async def test_a_clean_pool_passes_and_reading_all_reads_every_pack(
    backed_up: Repository,
) -> None:
    repo = backed_up
    packs = await stored_packs(repo)
    held = await repo.ledger.held_by_member()
    structure = await run_check(repo, None, False)
    assert clean(structure)
    assert structure["packs"] == len(packs) > 3
    assert structure["shards_expected"] == sum(c for c, _ in held.values()) == len(packs) * 4
    assert structure["packs_read"] == 0
    assert structure["read"] == []
    assert structure["members_down"] == {}

    everything = await run_check(repo, None, True)
    assert clean(everything)
    assert everything["packs_read"] == len(packs)
    assert sorted(everything["read"]) == sorted(PackId(p).hex() for p in packs)


async def test_a_missing_shard_is_named_with_its_member_and_marked_bad(
    backed_up: Repository, mempool: MemoryPool
) -> None:
    repo = backed_up
    key, path = await shard_on(repo, mempool, 2)
    path.unlink()
    report = await run_check(repo, None, True)
    assert not report["ok"]
    assert report["shards_missing"] == 1
    assert report["problems"] == [f"missing: shard {key.pack.hex()[:12]}.{key.index} on m2"]
    assert report["shards_damaged"] == report["packs_unreadable"] == 0  # read from the rest
    rows = {i: state for i, _, _, state in await repo.ledger.shard_rows(bytes(key.pack))}
    assert rows[key.index] == "bad"
    assert [s for i, s in rows.items() if i != key.index] == ["ok"] * 3


async def test_a_damaged_shard_is_found_by_reading_only(
    backed_up: Repository, mempool: MemoryPool
) -> None:
    repo = backed_up
    key, path = await shard_on(repo, mempool, 3)
    damage(path)
    assert clean(await run_check(repo, None, False))  # its file is there, its size right

    report = await run_check(repo, None, True)
    assert not report["ok"]
    assert report["shards_damaged"] == 1
    assert report["shards_missing"] == report["packs_unreadable"] == 0
    [problem] = report["problems"]
    assert problem.startswith(f"damaged: shard {key.pack.short}.{key.index} on m3")
    rows = {i: state for i, _, _, state in await repo.ledger.shard_rows(bytes(key.pack))}
    assert rows[key.index] == "bad"


async def test_a_pack_with_fewer_than_k_good_shards_is_unreadable(
    backed_up: Repository, mempool: MemoryPool
) -> None:
    repo = backed_up
    pack = min(await stored_packs(repo))
    found = await repo.ledger.pack(pack)
    assert found is not None
    record, holders = found
    by_node = {bytes(mempool.keys[i].node_id): i for i in range(1, 6)}
    for index, node in list(holders.items())[: record.n - record.k + 1]:
        damage(mempool.store(node)._path(ShardKey(record.pack_id, index)))
    report = await run_check(repo, None, True)
    assert report["packs_unreadable"] == 1
    assert report["shards_damaged"] == record.n - record.k + 1
    assert f"unreadable: pack {record.pack_id.short}: 1 good shards of 2" in report["problems"]
    damaged_on = {
        f"m{by_node[node]}" for index, node in list(holders.items())[: record.n - record.k + 1]
    }
    assert {p.rsplit(" on ", 1)[1].split(":")[0] for p in report["problems"][:-1]} == damaged_on


async def test_a_member_down_is_reported_and_its_shards_not_counted_missing(
    backed_up: Repository, mempool: MemoryPool
) -> None:
    repo = backed_up
    mempool.member(4).up = False
    report = await run_check(repo, None, True)
    assert list(report["members_down"]) == ["m4"]
    assert "down" in report["members_down"]["m4"]
    assert clean(report)
    assert report["packs_read"] == len(await stored_packs(repo))


async def test_leftovers_of_a_killed_backup_are_counted_unknown_not_a_problem(
    backed_up: Repository, mempool: MemoryPool
) -> None:
    repo = backed_up
    key, path = await shard_on(repo, mempool, 1)
    # The same bytes under a pack id the ledger does not know, as a killed run leaves them.
    stranger = ShardKey(PackId(bytes(31) + b"\x01"), key.index)
    stray = mempool.store(bytes(mempool.keys[1].node_id))._path(stranger)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(path.read_bytes())
    report = await run_check(repo, None, False)
    assert report["shards_unknown"] == 1
    assert report["ok"]
    assert report["problems"] == []


def test_subsets_n_of_m_split_the_packs_into_disjoint_slices() -> None:
    rng = random.Random(5)
    packs = [rng.randbytes(32) for _ in range(300)] + [bytes(32), b"\xff" * 32]
    for m in (1, 2, 3, 7):
        slices = [parse_subset(f"{n}/{m}") for n in range(1, m + 1)]
        for pack in packs:
            assert sum(chosen(pack) for chosen in slices) == 1
        sizes = [sum(chosen(p) for p in packs) for chosen in slices]
        assert min(sizes) > 0
    every = parse_subset(" 100% ")
    assert all(every(p) for p in packs)


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "0%", "150%", "x%", "-5%"])
def test_a_bad_subset_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError, match="read-data-subset"):
        parse_subset(text)


async def test_subset_checks_together_read_every_pack_once_and_only_theirs_find_damage(
    backed_up: Repository, mempool: MemoryPool
) -> None:
    repo = backed_up
    packs = sorted(PackId(p).hex() for p in await stored_packs(repo))
    key, path = await shard_on(repo, mempool, 5)
    damage(path)
    read: list[str] = []
    damaged_in = []
    for n in (1, 2, 3):
        report = await run_check(repo, f"{n}/3", False)
        read += report["read"]
        assert report["packs_read"] == len(report["read"])
        if report["shards_damaged"]:
            damaged_in.append(n)
            assert key.pack.hex() in report["read"]
        else:
            assert key.pack.hex() not in report["read"]
    assert sorted(read) == packs
    assert len(damaged_in) == 1
