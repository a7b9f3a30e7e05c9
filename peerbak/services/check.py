"""``peerbak check``: the ledger against the pool, and optionally the data itself.

Structure: every member that answers lists the shards it holds for us; the list is
compared, in one streaming pass, with the shards the ledger says it acknowledged (both
sorted by pack id ‖ index), so memory stays flat whatever the number of shards. Missing
shards are named; shards a member holds that the ledger does not know are counted
(leftovers of killed backups, reclaimed by the next backup).

A missing or damaged shard is marked bad in the ledger: repair rebuilds it elsewhere.

Data (``--read-data``, ``--read-data-subset n/m`` or ``x%``): every shard of the chosen
packs is read whole and checked against the Merkle root recorded before upload; the
pack is rebuilt from good shards, checked against its id, and every chunk opened (AEAD
and keyed hash). Subset n/m takes the packs whose id falls in the n-th of m slices, so
running 1/m … m/m on m days covers every pack (restic's semantics).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from peerbak.core.errors import (
    InputError,
    IntegrityError,
    NotFoundError,
    PeerbakError,
    PeerUnavailable,
)
from peerbak.core.ids import PackId, ShardKey
from peerbak.core.pack import PackRecord
from peerbak.services.fetch import read_blobs, rebuild_pack
from peerbak.services.repository import Peer, Repository

#: Packs read at once with --read-data: each holds its n shards in memory.
READ_IN_FLIGHT: Final = 2
#: Problems listed in full in the report (all are counted).
LISTED: Final = 100


@dataclass
class CheckReport:
    packs: int = 0
    shards_expected: int = 0
    shards_missing: int = 0
    shards_unknown: int = 0
    members_down: dict[str, str] = field(default_factory=dict)
    packs_read: int = 0
    shards_damaged: int = 0
    packs_unreadable: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < LISTED:
            self.problems.append(text)

    @property
    def ok(self) -> bool:
        return not (self.shards_missing or self.shards_damaged or self.packs_unreadable)


def parse_subset(text: str, rng: random.Random | None = None) -> Callable[[bytes], bool]:
    """``n/m`` (the n-th of m slices by pack id) or ``x%`` (a random share, drawn from
    ``rng``: the system's randomness unless a test gives a seeded one)."""
    text = text.strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1]) / 100
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise InputError(f"--read-data-subset wants n/m or 1%–100%, not {text!r}")
        draw = rng or random.SystemRandom()
        return lambda _pack: draw.random() < share
    n, sep, m = text.partition("/")
    if not (sep and n.isdigit() and m.isdigit() and 1 <= int(n) <= int(m)):
        raise InputError(f"--read-data-subset wants n/m with 1 ≤ n ≤ m, or x%, not {text!r}")
    slot, slices = int(n) - 1, int(m)
    return lambda pack: int.from_bytes(pack[:8], "big") * slices >> 64 == slot


async def _structure(repo: Repository, m: Peer, report: CheckReport) -> None:
    """One member's list against the ledger's (a streaming merge)."""
    name = m.label
    async for kind, pack, index in repo.compare_listing(m):
        if kind == "missing":
            report.shards_missing += 1
            report.problem(f"missing: shard {pack.hex()[:12]}.{index} on {name}")
            await repo.ledger.mark_shard_bad(pack, index)  # for repair to rebuild
        else:
            report.shards_unknown += 1


async def _read_pack(repo: Repository, pack: bytes, report: CheckReport) -> None:
    """Every shard whole against its root; the pack against its id; every chunk."""
    found = await repo.ledger.pack(pack)
    if found is None:
        return
    record, holders = found
    good: dict[int, memoryview] = {}

    async def shard(index: int, node: bytes) -> None:
        m = repo.members.get(node)
        if m is None or not m.up:
            return
        name = m.label
        try:
            got = await m.link.get(ShardKey(record.pack_id, index))  # verified: its root
            if got.header != record.header(index):
                raise IntegrityError(f"shard {index} is not the one recorded")
        except PeerUnavailable as exc:
            m.up, m.error = False, str(exc)
            report.members_down[name] = str(exc)
            return
        except NotFoundError:
            return  # missing: the comparison of lists counts it
        except PeerbakError as exc:
            report.shards_damaged += 1
            report.problem(f"damaged: shard {record.pack_id.short}.{index} on {name}: {exc}")
            await repo.ledger.mark_shard_bad(bytes(record.pack_id), index)
            return
        good[index] = memoryview(got.data)

    await asyncio.gather(*(shard(i, node) for i, node in holders.items()))
    report.packs_read += 1
    if len(good) < record.k:
        report.packs_unreadable += 1
        report.problem(
            f"unreadable: pack {record.pack_id.short}: {len(good)} good shards of {record.k}"
        )
        return
    try:
        await asyncio.to_thread(_open_all, repo, record, dict(list(good.items())[: record.k]))
    except PeerbakError as exc:
        report.packs_unreadable += 1
        report.problem(f"unreadable: pack {record.pack_id.short}: {exc}")


def _open_all(repo: Repository, record: PackRecord, shards: dict[int, memoryview]) -> None:
    pack = rebuild_pack(record, shards)
    if pack is None:
        raise IntegrityError(f"pack {record.pack_id.short} rebuilt does not match its id")
    for _ in read_blobs(repo.keys, pack, record):
        pass


async def run_check(repo: Repository, subset: str | None, read_all: bool) -> dict[str, Any]:
    chosen = parse_subset(subset) if subset else (lambda _p: True) if read_all else None
    report = CheckReport()
    await repo.probe()
    for m in repo.members.values():
        if not m.up:
            report.members_down[m.label] = m.error
    async for page in repo.ledger.stored_pack_ids():
        report.packs += len(page)
    held = await repo.ledger.held_by_member()
    report.shards_expected = sum(count for count, _ in held.values())
    await asyncio.gather(*(_structure(repo, m, report) for m in repo.up()))
    read: list[str] = []
    if chosen is not None:
        slots = asyncio.Semaphore(READ_IN_FLIGHT)

        async def one(pack: bytes) -> None:
            async with slots:
                await _read_pack(repo, pack, report)

        async for page in repo.ledger.stored_pack_ids():
            picked = [p for p in page if chosen(p)]
            read += [PackId(p).hex() for p in picked]
            await asyncio.gather(*(one(p) for p in picked))
    return {
        "message_type": "summary",
        "ok": report.ok,
        "packs": report.packs,
        "shards_expected": report.shards_expected,
        "shards_missing": report.shards_missing,
        "shards_unknown": report.shards_unknown,
        "members_down": report.members_down,
        "packs_read": report.packs_read,
        "read": read,
        "shards_damaged": report.shards_damaged,
        "packs_unreadable": report.packs_unreadable,
        "problems": report.problems,
    }
