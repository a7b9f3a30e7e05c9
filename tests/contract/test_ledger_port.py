"""The Ledger port as services rely on it, checked on the SQLite ledger.

The fixture hands the ledger out typed as :class:`peerbak.ports.ledger.Ledger`, so mypy
checks that the adapter satisfies the port, and these tests use nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peerbak.adapters.ledger import Ledger as SqliteLedger
from peerbak.core.crypto import BlobType, Compression
from peerbak.core.ids import ChunkId, PackId
from peerbak.core.pack import BlobEntry, PackRecord
from peerbak.ports import CachedFile
from peerbak.ports.ledger import UNPUBLISHED_DOOM, Ledger, Move

A, B, C, D = (bytes([m]) * 32 for m in b"abcd")


def _record(tag: int, chunks: list[bytes], k: int = 2, n: int = 3) -> PackRecord:
    entries, offset = [], 0
    for i, chunk in enumerate(chunks):
        entries.append(
            BlobEntry(BlobType.DATA, Compression.NONE, ChunkId(chunk), offset, 100, 60 + i)
        )
        offset += 100
    roots = tuple(bytes([tag, i]) * 16 for i in range(n))
    return PackRecord(PackId(bytes([tag]) * 32), k, n, offset, roots, tuple(entries))


def _chunk(i: int) -> bytes:
    return i.to_bytes(2, "big") * 16


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened: Ledger = await SqliteLedger.open(tmp_path / "ledger.sqlite", create=True)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_pack_counts_only_once_stored_and_only_on_the_holders_that_acked(
    ledger: Ledger,
) -> None:
    record = _record(1, [_chunk(1), _chunk(2)])
    await ledger.add_pack(record, 0, [A, B, C], 1.0)
    assert await ledger.sealed_packs() == [(record.pack_id, {0: A, 1: B, 2: C})]
    assert await ledger.locate([_chunk(1)]) == {}
    assert await ledger.pack(record.pack_id) is None
    await ledger.pack_stored(record, [0, 2])
    assert await ledger.sealed_packs() == []
    assert await ledger.pack(record.pack_id) == (record, {0: A, 2: C})
    assert await ledger.locate_sized([_chunk(2), _chunk(9)]) == {_chunk(2): (record.pack_id, 61)}
    assert [ids async for ids in ledger.chunk_ids()] == [[_chunk(1), _chunk(2)]]
    assert [ids async for ids in ledger.stored_pack_ids()] == [[record.pack_id]]
    assert [rows async for rows in ledger.shards_held_by(C)] == [[(record.pack_id, 2)]]
    assert [rows async for rows in ledger.shards_held_by(B)] == []
    held = await ledger.held_by_member()
    assert set(held) == {A, C}
    assert held[A][0] == 1


async def test_pages_follow_id_order_and_indexing_empties_the_unindexed(
    ledger: Ledger,
) -> None:
    records = [_record(tag, [_chunk(tag)]) for tag in (5, 3, 9, 1)]
    for record in records:
        await ledger.import_pack(record, 0, [A, B, C], False, 1.0)
    pages = [ids async for ids in ledger.stored_pack_ids(batch=3)]
    assert [len(p) for p in pages] == [3, 1]
    assert [i for page in pages for i in page] == sorted(bytes(r.pack_id) for r in records)
    unindexed = [pack async for page in ledger.unindexed_packs(batch=2) for pack in page]
    assert sorted(r.pack_id for r, _ in unindexed) == sorted(r.pack_id for r in records)
    await ledger.mark_indexed([r.pack_id for r in records[:3]])
    left = [pack async for page in ledger.unindexed_packs() for pack in page]
    assert [r.pack_id for r, _ in left] == [records[3].pack_id]


async def test_doomed_packs_leave_the_known_chunks_and_wait_for_a_manifest(
    ledger: Ledger,
) -> None:
    kept, doomed = _record(1, [_chunk(1)]), _record(2, [_chunk(2)])
    for record in (kept, doomed):
        await ledger.import_pack(record, 0, [A, B, C], True, 1.0)
    await ledger.doom_packs([doomed.pack_id], b"empty index")
    assert await ledger.locate([_chunk(1), _chunk(2)]) == {_chunk(1): kept.pack_id}
    assert await ledger.get_meta(UNPUBLISHED_DOOM) == b"1"
    assert await ledger.get_meta("index_packs") == b"empty index"
    assert [p for p, _ in await ledger.sealed_packs()] == [doomed.pack_id]
    unindexed = [r.pack_id async for page in ledger.unindexed_packs() for r, _ in page]
    assert unindexed == [kept.pack_id]  # the next index lists every other pack anew
    await ledger.drop_pack(doomed.pack_id)
    assert await ledger.sealed_packs() == []


async def test_snapshots_come_back_oldest_first_until_removed(ledger: Ledger) -> None:
    await ledger.add_snapshot(b"s2" * 8, 20.0, b"second")
    await ledger.add_snapshot(b"s1" * 8, 10.0, b"first")
    await ledger.add_snapshot(b"s3" * 8, 30.0, b"third")
    assert await ledger.snapshots() == [b"first", b"second", b"third"]
    await ledger.remove_snapshots([b"s2" * 8, b"s3" * 8])
    assert await ledger.snapshots() == [b"first"]


async def test_a_move_keeps_the_old_holder_to_release_and_health_follows(
    ledger: Ledger,
) -> None:
    record = _record(1, [_chunk(1)])
    await ledger.import_pack(record, 0, [A, B, C], True, 1.0)
    assert await ledger.health_counts([A, B, C]) == {(3, 2, 3): 1}
    await ledger.mark_shard_bad(record.pack_id, 1)
    assert await ledger.packs_short([A, B, C]) == [(record.pack_id, 2, 2, 3)]
    assert await ledger.health_counts([A, C]) == {(2, 2, 3): 1}
    await ledger.begin_moves(record.pack_id, [(1, D)], 2.0)
    assert await ledger.moves("upload") == [Move(record.pack_id, 1, D, "upload")]
    await ledger.finish_move(record.pack_id, 1, D, 3.0)
    assert await ledger.moves("upload") == []
    assert await ledger.moves("release") == [Move(record.pack_id, 1, B, "release")]
    assert await ledger.shard_rows(record.pack_id) == [
        (0, A, True, "ok"),
        (1, D, True, "ok"),
        (2, C, True, "ok"),
    ]
    assert await ledger.packs_short([A, C, D]) == []
    await ledger.drop_move(record.pack_id, 1, B)
    assert await ledger.moves("release") == []


async def test_a_stalled_challenge_is_counted_until_answered(ledger: Ledger) -> None:
    record = _record(1, [_chunk(1)])
    await ledger.import_pack(record, 0, [A, B, C], True, 1.0)
    assert await ledger.random_shard(B, 0.99) == (record.pack_id, 1)
    assert await ledger.random_shard(D, 0.5) is None
    assert await ledger.contain(B, record.pack_id, 1, 5.0) == 1
    assert await ledger.contain(B, record.pack_id, 1, 6.0) == 2
    found = await ledger.contained(B)
    assert found is not None
    assert (found.tries, found.since) == (2, 5.0)
    await ledger.record_challenge(B, record.pack_id, 1, "timeout", "no answer", 7.0)
    assert await ledger.contained(B) is None
    assert [f.outcome for f in await ledger.failures()] == ["timeout"]
    assert (await ledger.shard_rows(record.pack_id))[1][3] == "bad"
    await ledger.record_probe(B, True, 8.0, 0.5)
    await ledger.record_probe(B, False, 9.0)
    stats = (await ledger.member_stats())[B]
    assert (stats.uptime, stats.last_seen, stats.failing_since) == (0.5, 8.0, 7.0)
    await ledger.set_failing(B, None)
    assert (await ledger.member_stats())[B].failing_since is None


async def test_the_files_cache_keeps_what_the_walker_stored(ledger: Ledger) -> None:
    seen = {b"f": CachedFile(1, 2, 3, 4, 5, _chunk(1))}
    cache = ledger.files_cache()
    try:
        assert cache.lookup(b"dir") == {}
        cache.store(b"dir", seen)
    finally:
        cache.close()  # commits what is pending
    cache = ledger.files_cache()
    try:
        assert cache.lookup(b"dir") == seen
        assert cache.lookup(b"other") == {}
    finally:
        cache.close()


async def test_an_id_set_answers_membership_and_is_gone_once_closed(
    ledger: Ledger, tmp_path: Path
) -> None:
    scratch = tmp_path / "run"
    scratch.mkdir()
    ids = ledger.id_set(str(scratch))
    try:
        assert ids.add(_chunk(1))
        assert not ids.add(_chunk(1))
        ids.add_many([_chunk(i) for i in range(1000)])
        asked = [_chunk(i) for i in range(990, 1010)]
        assert ids.present(asked) == {_chunk(i) for i in range(990, 1000)}
        assert ids.count() == 1000
        assert list(scratch.iterdir())
    finally:
        ids.close()
    assert list(scratch.iterdir()) == []


async def test_a_restore_plan_lives_in_the_directory_given_and_is_gone_once_closed(
    ledger: Ledger, tmp_path: Path
) -> None:
    plan = ledger.restore_plan(str(tmp_path))
    try:
        ident = plan.add_file(b"/t/a", b"entry", 1, None)
        assert ident is not None
        plan.add_targets([(b"p" * 32, _chunk(1), ident, 0)])
        plan.planned()
        assert list(plan.packs()) == [b"p" * 32]
        assert plan.written({ident: 1}) == [(ident, b"/t/a", b"entry")]
        assert list(tmp_path.glob("peerbak-restore-*"))
    finally:
        plan.close()
    assert list(tmp_path.glob("peerbak-restore-*")) == []
