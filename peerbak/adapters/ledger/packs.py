"""Packs, the shards placed on members, the chunks they hold, and the snapshots.

A pack is recorded ``sealed`` with its placement before any shard leaves (a crash
leaves a row naming the members that may hold leftovers), and ``stored`` once k
holders acknowledged: only then do its chunks count as known. Prune takes packs back
to ``sealed`` in one transaction (:meth:`PackRecords.doom_packs`).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from peerbak.adapters.ledger.db import Connection
from peerbak.core.crypto import BlobType, Compression
from peerbak.core.ids import ChunkId, PackId
from peerbak.core.pack import SHARD_HEADER_LEN, BlobEntry, PackRecord
from peerbak.ports.ledger import UNPUBLISHED_DOOM, SpaceUse


class PackRecords(Connection):
    """Packs, shards, blobs and snapshots (see the module docstring)."""

    async def add_pack(
        self, record: PackRecord, kind: int, holders: Sequence[bytes], now: float
    ) -> None:
        """Record a sealed pack and where its shards go, before any is uploaded: a crash
        later leaves a row that says which members may hold leftovers to reclaim."""

        async def add() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.execute(
                "INSERT OR IGNORE INTO packs "
                "(pack_id, k, n, length, roots, entries, kind, state, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'sealed', ?)",
                (
                    bytes(record.pack_id),
                    record.k,
                    record.n,
                    record.length,
                    b"".join(record.roots),
                    _encode_entries(record.entries),
                    kind,
                    now,
                ),
            )
            await self._db.executemany(
                "INSERT OR REPLACE INTO shards (pack_id, idx, holder, stored) VALUES (?, ?, ?, 0)",
                [(bytes(record.pack_id), i, h) for i, h in enumerate(holders) if h],
            )
            await self._db.execute("COMMIT")

        await self._guard(add)

    async def pack_stored(self, record: PackRecord, acked: Sequence[int]) -> None:
        """≥ k holders acknowledged: the pack's chunks may now be referenced."""
        pack = bytes(record.pack_id)

        async def mark() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.executemany(
                "UPDATE shards SET stored = 1 WHERE pack_id = ? AND idx = ?",
                [(pack, i) for i in acked],
            )
            await self._db.execute("DELETE FROM shards WHERE pack_id = ? AND stored = 0", (pack,))
            await self._db.execute("UPDATE packs SET state = 'stored' WHERE pack_id = ?", (pack,))
            await self._db.executemany(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?)",
                [(bytes(e.ident), pack, e.plain_length) for e in record.entries],
            )
            await self._db.execute("COMMIT")

        await self._guard(mark)

    async def import_pack(
        self, record: PackRecord, kind: int, holders: Sequence[bytes], indexed: bool, now: float
    ) -> None:
        """A pack learned from an index object (recovery): stored, with its holders."""
        await self.add_pack(record, kind, holders, now)
        await self.pack_stored(record, [i for i, h in enumerate(holders) if h])
        if indexed:
            await self.mark_indexed([record.pack_id])

    async def sealed_packs(self) -> list[tuple[PackId, dict[int, bytes]]]:
        """Packs sealed but never marked stored (a backup died): their placements."""

        async def rows() -> list[tuple[PackId, dict[int, bytes]]]:
            out: dict[bytes, dict[int, bytes]] = {}
            async with self._db.execute(
                "SELECT p.pack_id, s.idx, s.holder FROM packs p LEFT JOIN shards s "
                "ON s.pack_id = p.pack_id WHERE p.state = 'sealed'"
            ) as cur:
                for pack, idx, holder in await cur.fetchall():
                    placed = out.setdefault(bytes(pack), {})
                    if idx is not None:
                        placed[int(idx)] = bytes(holder)
            return [(PackId(p), h) for p, h in out.items()]

        return await self._guard(rows)

    async def drop_pack(self, pack_id: bytes) -> None:
        await self._guard(
            lambda: self._db.execute("DELETE FROM packs WHERE pack_id = ?", (bytes(pack_id),))
        )

    async def chunk_ids(self, batch: int = 65536) -> AsyncIterator[list[bytes]]:
        """Every stored chunk id, in order, in batches (for the set of known chunks)."""
        async for rows in self._id_pages(
            "SELECT chunk_id FROM blobs WHERE chunk_id > ? ORDER BY chunk_id LIMIT ?", batch
        ):
            yield rows

    async def _id_pages(self, sql: str, batch: int) -> AsyncIterator[list[bytes]]:
        """Pages of a one-column, ordered query, by keyset (``sql`` takes after, limit)."""
        last = b""
        while True:

            async def page(after: bytes = last) -> list[bytes]:
                async with self._db.execute(sql, (after, batch)) as cur:
                    return [bytes(r[0]) for r in await cur.fetchall()]

            rows = await self._guard(page)
            if not rows:
                return
            yield rows
            last = rows[-1]

    async def locate(self, chunk_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """chunk id → pack id, for those stored (one query per 500 ids)."""
        return {c: pack for c, (pack, _) in (await self.locate_sized(chunk_ids)).items()}

    async def locate_sized(self, chunk_ids: Sequence[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """chunk id → (pack id, plaintext length), for those stored."""

        async def find() -> dict[bytes, tuple[bytes, int]]:
            found: dict[bytes, tuple[bytes, int]] = {}
            ids = list(dict.fromkeys(bytes(c) for c in chunk_ids))
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                async with self._db.execute(
                    "SELECT chunk_id, pack_id, plain_length FROM blobs "  # noqa: S608
                    f"WHERE chunk_id IN ({marks})",
                    part,
                ) as cur:
                    for c, p, n in await cur.fetchall():
                        found[bytes(c)] = (bytes(p), int(n))
            return found

        return await self._guard(find)

    async def pack(self, pack_id: bytes) -> tuple[PackRecord, dict[int, bytes]] | None:
        """A stored pack's record and the holder of each stored shard."""

        async def get() -> tuple[PackRecord, dict[int, bytes]] | None:
            async with self._db.execute(
                "SELECT k, n, length, roots, entries FROM packs "
                "WHERE pack_id = ? AND state = 'stored'",
                (bytes(pack_id),),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            async with self._db.execute(
                "SELECT idx, holder FROM shards WHERE pack_id = ? AND stored = 1",
                (bytes(pack_id),),
            ) as cur:
                holders = {int(i): bytes(h) for i, h in await cur.fetchall()}
            return _record(bytes(pack_id), row), holders

        return await self._guard(get)

    async def stored_pack_ids(self, batch: int = 1000) -> AsyncIterator[list[bytes]]:
        """Every stored pack's id, in order, a page at a time."""
        async for rows in self._id_pages(
            "SELECT pack_id FROM packs WHERE state = 'stored' AND pack_id > ? "
            "ORDER BY pack_id LIMIT ?",
            batch,
        ):
            yield rows

    async def shards_held_by(
        self, holder: bytes, batch: int = 10_000
    ) -> AsyncIterator[list[tuple[bytes, int]]]:
        """(pack id, index) of every stored shard ``holder`` acknowledged, in byte order
        of pack id ‖ index (the order a holder lists them in)."""
        last: tuple[bytes, int] = (b"", -1)
        while True:

            async def page(after: tuple[bytes, int] = last) -> list[tuple[bytes, int]]:
                async with self._db.execute(
                    "SELECT s.pack_id, s.idx FROM shards s JOIN packs p ON p.pack_id = s.pack_id "
                    "WHERE s.holder = ? AND s.stored = 1 AND p.state = 'stored' "
                    "AND (s.pack_id, s.idx) > (?, ?) ORDER BY s.pack_id, s.idx LIMIT ?",
                    (holder, after[0], after[1], batch),
                ) as cur:
                    return [(bytes(r[0]), int(r[1])) for r in await cur.fetchall()]

            rows = await self._guard(page)
            if not rows:
                return
            yield rows
            last = rows[-1]

    async def unindexed_packs(
        self, batch: int = 64
    ) -> AsyncIterator[list[tuple[PackRecord, dict[int, bytes]]]]:
        """Stored packs no index object lists yet, with their holders, a page at a time
        (a pack's record holds every blob entry: millions in all, so never at once)."""
        last = b""
        while True:

            async def page(after: bytes = last) -> list[tuple[PackRecord, dict[int, bytes]]]:
                async with self._db.execute(
                    "SELECT pack_id, k, n, length, roots, entries FROM packs "
                    "WHERE state = 'stored' AND indexed = 0 AND pack_id > ? "
                    "ORDER BY pack_id LIMIT ?",
                    (after, batch),
                ) as cur:
                    rows = await cur.fetchall()
                out = []
                for row in rows:
                    async with self._db.execute(
                        "SELECT idx, holder FROM shards WHERE pack_id = ? AND stored = 1",
                        (row[0],),
                    ) as cur:
                        holders = {int(i): bytes(h) for i, h in await cur.fetchall()}
                    out.append((_record(bytes(row[0]), row[1:6]), holders))
                return out

            rows = await self._guard(page)
            if not rows:
                return
            yield rows
            last = bytes(rows[-1][0].pack_id)

    async def mark_indexed(self, pack_ids: Sequence[bytes]) -> None:
        await self._guard(
            lambda: self._db.executemany(
                "UPDATE packs SET indexed = 1 WHERE pack_id = ?", [(bytes(p),) for p in pack_ids]
            )
        )

    async def held_by_member(self) -> dict[bytes, tuple[int, int]]:
        """member → (shards, bytes) of this node's stored shards it holds."""

        async def get() -> dict[bytes, tuple[int, int]]:
            async with self._db.execute(
                "SELECT s.holder, COUNT(*), SUM((p.length + p.k - 1) / p.k + 100) "
                "FROM shards s JOIN packs p ON p.pack_id = s.pack_id "
                "WHERE s.stored = 1 AND p.state = 'stored' GROUP BY s.holder"
            ) as cur:
                return {bytes(h): (int(c), int(b)) for h, c, b in await cur.fetchall()}

        return await self._guard(get)

    async def space(self, blob_ids: set[bytes] | None = None) -> SpaceUse:
        """The space these distinct blobs take (every data and tree blob, for None), pack
        by pack: memory holds one pack's entries at a time."""
        if blob_ids is None:
            return await self._guard(self._space_all)
        by_pack: dict[bytes, set[bytes]] = {}
        for ident, pack in (await self.locate(list(blob_ids))).items():
            by_pack.setdefault(pack, set()).add(ident)

        async def sizes() -> SpaceUse:
            tally = _Tally()
            for pack, ids in by_pack.items():
                async with self._db.execute(
                    _PACK_SPACE + " WHERE p.pack_id = ? AND p.state = 'stored'", (pack,)
                ) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    tally.add(row, ids)
            return tally.use()

        return await self._guard(sizes)

    async def _space_all(self) -> SpaceUse:
        tally = _Tally()
        async with self._db.execute(_PACK_SPACE + " WHERE p.state = 'stored'") as cur:
            async for row in cur:
                async with self._db.execute(
                    "SELECT chunk_id FROM blobs WHERE pack_id = ?", (row[0],)
                ) as placed:
                    ids = {bytes(r[0]) for r in await placed.fetchall()}
                tally.add(row, ids)
        return tally.use()

    # -- snapshots ------------------------------------------------------------------------

    async def add_snapshot(self, ident: bytes, when: float, body: bytes) -> None:
        await self._guard(
            lambda: self._db.execute(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (ident, when, body)
            )
        )

    async def snapshots(self) -> list[bytes]:
        """Every snapshot's encoded body, oldest first."""

        async def get() -> list[bytes]:
            async with self._db.execute("SELECT body FROM snapshots ORDER BY time, id") as cur:
                return [bytes(r[0]) for r in await cur.fetchall()]

        return await self._guard(get)

    async def chunk_count(self) -> int:
        """How many distinct chunks the stored packs hold."""
        rows = await self._rows("SELECT count(*) FROM blobs")
        return int(rows[0][0])

    # -- retention -------------------------------------------------------------------------------

    async def remove_snapshots(self, ids: Sequence[bytes]) -> None:
        async def remove() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.executemany(
                "DELETE FROM snapshots WHERE id = ?", [(bytes(i),) for i in ids]
            )
            await self._db.execute("COMMIT")

        await self._guard(remove)

    async def doom_packs(self, pack_ids: Sequence[bytes], empty_index: bytes) -> None:
        """Prune's commit point, in one transaction: the packs it deletes leave the known
        chunks and the index and go back to ``sealed``; every other stored pack is to be
        listed by the next index written (``empty_index`` becomes the list of index
        packs); and ``unpublished_doom`` is set. Until a manifest without those packs is
        out (``publish`` clears the mark), ``reclaim`` leaves them alone: the members'
        manifest still lists them, and a recovery from it must find them."""

        async def doom() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                for pack_id in pack_ids:
                    await self._db.execute("DELETE FROM blobs WHERE pack_id = ?", (pack_id,))
                    await self._db.execute(
                        "UPDATE packs SET state = 'sealed', indexed = 0 WHERE pack_id = ?",
                        (pack_id,),
                    )
                await self._db.execute("UPDATE packs SET indexed = 0 WHERE state = 'stored'")
                for key, value in (("index_packs", empty_index), (UNPUBLISHED_DOOM, b"1")):
                    await self._db.execute(
                        "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?",
                        (key, value, value),
                    )
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

        await self._guard(doom)

    async def relink_blobs(self, record: PackRecord) -> None:
        """Blobs copied into ``record``'s pack (prune's repacking) are found there now."""

        async def relink() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.executemany(
                "INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)",
                [(bytes(e.ident), bytes(record.pack_id), e.plain_length) for e in record.entries],
            )
            await self._db.execute("COMMIT")

        await self._guard(relink)


_ENTRY: Final = struct.Struct("<BB32sIII")


def _encode_entries(entries: Sequence[BlobEntry]) -> bytes:
    return b"".join(
        _ENTRY.pack(e.blob_type, e.compression, e.ident, e.offset, e.length, e.plain_length)
        for e in entries
    )


def _record(pack_id: bytes, row: Sequence[Any]) -> PackRecord:
    k, n, length, roots, entries = int(row[0]), int(row[1]), int(row[2]), bytes(row[3]), row[4]
    return PackRecord(
        PackId(pack_id),
        k,
        n,
        length,
        tuple(roots[i : i + 32] for i in range(0, len(roots), 32)),
        tuple(
            BlobEntry(BlobType(t), Compression(c), ChunkId(i), o, ln, p)
            for t, c, i, o, ln, p in _ENTRY.iter_unpack(bytes(entries))
        ),
    )


#: A pack's record and how many of its shards members hold, for :class:`_Tally`.
_PACK_SPACE: Final = (
    "SELECT p.pack_id, p.k, p.n, p.length, p.roots, p.entries, "
    "(SELECT COUNT(*) FROM shards s WHERE s.pack_id = p.pack_id AND s.stored) FROM packs p"
)
_COUNTED: Final = (BlobType.DATA, BlobType.TREE)


class _Tally:
    """Sums :class:`SpaceUse` over packs: of each pack, the entries of ``ids`` (data and
    trees only) and the whole pack's length and shards."""

    def __init__(self) -> None:
        self.plain = self.packed = self.pack_bytes = self.stored = 0

    def add(self, row: Any, ids: set[bytes]) -> None:
        record = _record(bytes(row[0]), row[1:6])
        for e in record.entries:
            if e.blob_type in _COUNTED and bytes(e.ident) in ids:
                self.plain += e.plain_length
                self.packed += e.length
        self.pack_bytes += record.length
        self.stored += int(row[6]) * (-(-record.length // record.k) + SHARD_HEADER_LEN)

    def use(self) -> SpaceUse:
        return SpaceUse(self.plain, self.packed, self.pack_bytes, self.stored)
