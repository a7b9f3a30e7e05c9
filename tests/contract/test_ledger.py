"""The ledger on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from peerbak.adapters.ledger import MIGRATIONS, InviteStatus, Ledger
from peerbak.core.errors import LedgerError


async def test_meta_and_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with await Ledger.open(path, create=True) as ledger:
        await ledger.set_meta("pool", b"p" * 16)
        await ledger.set_meta("pool", b"q" * 16)
        assert await ledger.add_records([b"one", b"two", b"one"], 1.0) == 2
        await ledger.touch_member(b"n" * 32, 5.0)
        await ledger.touch_member(b"n" * 32, 9.0)
    async with await Ledger.open(path, create=True) as ledger:
        assert await ledger.get_meta("pool") == b"q" * 16
        assert await ledger.get_meta("nothing") is None
        assert sorted(await ledger.records()) == [b"one", b"two"]
        row = await ledger.member(b"n" * 32)
        assert row is not None
        assert (row.first_seen, row.last_seen) == (5.0, 9.0)
        await ledger.forget_records([b"two"])
        assert await ledger.records() == [b"two"]


async def test_wal_mode_is_on(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.sqlite", create=True):
        pass
    with sqlite3.connect(tmp_path / "l.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_invites_expire_and_are_used_up(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.sqlite", create=True) as ledger:
        await ledger.add_invite(b"i" * 16, b"v" * 32, now=0.0, expires=100.0, uses=1)
        assert await ledger.has_open_invites(50.0)
        assert not await ledger.has_open_invites(100.0)
        assert await ledger.use_invite(b"x" * 16, 10.0, b"j" * 32) == (InviteStatus.UNKNOWN, None)
        assert await ledger.use_invite(b"i" * 16, 150.0, b"j" * 32) == (InviteStatus.EXPIRED, None)
        assert await ledger.use_invite(b"i" * 16, 10.0, b"j" * 32) == (InviteStatus.OK, b"v" * 32)
        assert await ledger.use_invite(b"i" * 16, 10.0, b"j" * 32) == (InviteStatus.USED_UP, None)
        await ledger.refund_invite(b"i" * 16)
        assert (await ledger.use_invite(b"i" * 16, 10.0, b"k" * 32))[0] is InviteStatus.OK


async def test_twenty_racers_for_one_use_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with await Ledger.open(path, create=True) as ledger:
        await ledger.add_invite(b"i" * 16, b"v" * 32, now=0.0, expires=100.0, uses=1)
    ledgers = [await Ledger.open(path, create=True) for _ in range(20)]
    try:
        results = await asyncio.gather(
            *(lg.use_invite(b"i" * 16, 1.0, bytes([n]) * 32) for n, lg in enumerate(ledgers))
        )
    finally:
        for lg in ledgers:
            await lg.close()
    assert [status for status, _ in results].count(InviteStatus.OK) == 1


async def test_a_ledger_from_a_newer_peerbak_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with await Ledger.open(path, create=True):
        pass
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS) + 1,))
    with pytest.raises(LedgerError, match="newer peerbak"):
        await Ledger.open(path, create=True)


async def test_a_file_that_is_not_a_ledger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError):
        await Ledger.open(path, create=True)


async def test_a_failing_mark_clears_after_a_day_of_passed_challenges(tmp_path: Path) -> None:
    from peerbak.adapters.ledger import CLEAR_AFTER

    member, pack = b"m" * 32, b"p" * 32
    async with await Ledger.open(tmp_path / "ledger.sqlite", create=True) as ledger:
        await ledger.record_challenge(member, pack, 0, "fail", "the holder does not have it", 1.0)
        assert (await ledger.member_stats())[member].failing_since == 1.0
        for i in range(CLEAR_AFTER - 1):
            await ledger.record_challenge(member, pack, 1, "pass", "", 2.0 + i)
        assert (await ledger.member_stats())[member].failing_since == 1.0  # not yet
        await ledger.record_challenge(member, pack, 2, "fail", "damaged", 100.0)  # again
        for i in range(CLEAR_AFTER - 1):
            await ledger.record_challenge(member, pack, 1, "pass", "", 200.0 + i)
        assert (await ledger.member_stats())[member].failing_since == 1.0  # the run restarted
        await ledger.record_challenge(member, pack, 1, "pass", "", 300.0)
        stats = (await ledger.member_stats())[member]
        assert stats.failing_since is None
        assert (stats.passed, stats.failed) == (2 * CLEAR_AFTER - 1, 2)
        assert [f.evidence for f in await ledger.failures()] == [
            "damaged",
            "the holder does not have it",
        ]


async def test_chunk_count_counts_distinct_stored_chunks(tmp_path: Path) -> None:
    from peerbak.core.crypto import BlobType, Compression
    from peerbak.core.ids import ChunkId, PackId
    from peerbak.core.pack import BlobEntry, PackRecord

    def record(tag: int, chunks: list[bytes]) -> PackRecord:
        entries = tuple(
            BlobEntry(BlobType.DATA, Compression.NONE, ChunkId(c), 100 * i, 100, 60)
            for i, c in enumerate(chunks)
        )
        return PackRecord(PackId(bytes([tag]) * 32), 1, 1, 100 * len(chunks), (b"r" * 32,), entries)

    async with await Ledger.open(tmp_path / "ledger.sqlite", create=True) as ledger:
        await ledger.add_pack(record(1, [b"a" * 32, b"b" * 32]), 0, [b"m" * 32], 1.0)
        assert await ledger.chunk_count() == 0  # sealed, not stored
        await ledger.import_pack(record(1, [b"a" * 32, b"b" * 32]), 0, [b"m" * 32], True, 1.0)
        await ledger.import_pack(record(2, [b"b" * 32, b"c" * 32]), 0, [b"m" * 32], True, 1.0)
        assert await ledger.chunk_count() == 3
