"""The ledger's record of how members behave and how healthy each pack is.

Part of :class:`peerbak.adapters.ledger.Ledger` (the same connection and lock), kept
apart so each file stays one subject: here probes, challenge results and their evidence,
containment of members that stall a challenge, shard health, and the repair moves
that let a repair killed at any point resume without a pack ever dropping below k or a
placement pointing at nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from peerbak.adapters.ledger.db import Connection
from peerbak.ports.ledger import Contained, Failure, MemberStats, Move

#: Weight of the newest latency sample in the moving average.
LATENCY_WEIGHT: Final = 0.2
#: Challenges passed in a row that clear a failing mark (a day's worth at the default
#: rate): the member's bad shards were repaired and what it still holds checks out.
CLEAR_AFTER: Final = 48


class HealthRecords(Connection):
    """Probes, challenges, shard health and repair moves (see the module docstring)."""

    # -- members -----------------------------------------------------------------------------

    async def record_probe(
        self, node_id: bytes, up: bool, now: float, seconds: float | None = None
    ) -> None:
        """One probe of a member: counts toward its uptime; an answer is a sighting."""
        await self._run(
            """INSERT INTO members (node_id, first_seen, last_seen, probes, probes_up, latency)
               VALUES (?1, ?2, CASE WHEN ?3 THEN ?2 END, 1, ?3, ?4)
               ON CONFLICT(node_id) DO UPDATE SET
                 last_seen = CASE WHEN ?3 THEN ?2 ELSE last_seen END,
                 first_seen = coalesce(first_seen, ?2),
                 probes = probes + 1,
                 probes_up = probes_up + ?3,
                 latency = CASE WHEN ?4 IS NULL THEN latency
                                WHEN latency IS NULL THEN ?4
                                ELSE latency * ?5 + ?4 * (1 - ?5) END""",
            (node_id, now, int(up), seconds, 1 - LATENCY_WEIGHT),
        )

    async def member_stats(self) -> dict[bytes, MemberStats]:
        rows = await self._rows(
            "SELECT node_id, first_seen, last_seen, passed, failed, failing_since, probes, "
            "probes_up, latency FROM members"
        )
        return {bytes(r[0]): MemberStats(bytes(r[0]), *r[1:]) for r in rows}

    async def set_failing(self, node_id: bytes, since: float | None) -> None:
        """Mark a member as failing challenges (``since``), or clear the mark (None)."""
        await self._run(
            """INSERT INTO members (node_id, failing_since) VALUES (?1, ?2)
               ON CONFLICT(node_id) DO UPDATE SET failing_since = ?2""",
            (node_id, since),
        )

    # -- challenges ----------------------------------------------------------------------------

    async def random_shard(self, holder: bytes, pick: float) -> tuple[bytes, int] | None:
        """The shard at position ``pick`` ∈ [0, 1) among those ``holder`` acknowledged.

        Uniform over the holder's shards (by count, not by id space, whose gaps are
        uneven), so the detection odds of security.md hold.
        """

        async def get() -> tuple[bytes, int] | None:
            async with self._db.execute(
                "SELECT count(*) FROM shards WHERE holder = ? AND stored = 1", (holder,)
            ) as cur:
                (count,) = await cur.fetchone() or (0,)
            if not count:
                return None
            async with self._db.execute(
                "SELECT pack_id, idx FROM shards WHERE holder = ? AND stored = 1 "
                "ORDER BY pack_id, idx LIMIT 1 OFFSET ?",
                (holder, min(int(pick * count), count - 1)),
            ) as cur:
                row = await cur.fetchone()
            return (bytes(row[0]), int(row[1])) if row else None

        return await self._guard(get)

    async def record_challenge(
        self, member: bytes, pack_id: bytes, index: int, outcome: str, evidence: str, now: float
    ) -> None:
        """A challenge's result. A failure is kept with its evidence, marks the shard bad
        and the member failing; a pass only counts (and is a sighting)."""

        async def record() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.execute(
                "INSERT INTO members (node_id, first_seen) VALUES (?, ?) "
                "ON CONFLICT(node_id) DO NOTHING",
                (member, now),
            )
            if outcome == "pass":
                await self._db.execute(
                    "UPDATE members SET passed = passed + 1, streak = streak + 1, "
                    "last_seen = ?, failing_since = CASE WHEN streak + 1 >= ? THEN NULL "
                    "ELSE failing_since END WHERE node_id = ?",
                    (now, CLEAR_AFTER, member),
                )
            else:
                await self._db.execute(
                    "INSERT INTO challenges (member, time, pack_id, idx, outcome, evidence) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (member, now, pack_id, index, outcome, evidence),
                )
                await self._db.execute(
                    "UPDATE members SET failed = failed + 1, streak = 0, "
                    "failing_since = coalesce(failing_since, ?) WHERE node_id = ?",
                    (now, member),
                )
                await self._db.execute(
                    "UPDATE shards SET state = 'bad' WHERE pack_id = ? AND idx = ? AND holder = ?",
                    (pack_id, index, member),
                )
            await self._db.execute("DELETE FROM contained WHERE member = ?", (member,))
            await self._db.execute("COMMIT")

        await self._guard(record)

    async def failures(self, limit: int = 100) -> list[Failure]:
        rows = await self._rows(
            "SELECT member, time, pack_id, idx, outcome, evidence FROM challenges "
            "ORDER BY time DESC LIMIT ?",
            (limit,),
        )
        return [Failure(bytes(r[0]), r[1], bytes(r[2]), int(r[3]), r[4], r[5]) for r in rows]

    async def contained(self, member: bytes) -> Contained | None:
        rows = await self._rows(
            "SELECT pack_id, idx, tries, since FROM contained WHERE member = ?", (member,)
        )
        if not rows:
            return None
        r = rows[0]
        return Contained(member, bytes(r[0]), int(r[1]), int(r[2]), float(r[3]))

    async def contain(self, member: bytes, pack_id: bytes, index: int, now: float) -> int:
        """Count one more stalled try of this challenge; returns the tries so far."""

        async def up() -> int:
            await self._db.execute(
                """INSERT INTO contained VALUES (?, ?, ?, 1, ?)
                   ON CONFLICT(member) DO UPDATE SET tries = tries + 1""",
                (member, pack_id, index, now),
            )
            async with self._db.execute(
                "SELECT tries FROM contained WHERE member = ?", (member,)
            ) as cur:
                (tries,) = await cur.fetchone() or (1,)
            return int(tries)

        return await self._guard(up)

    async def uncontain(self, member: bytes) -> None:
        await self._run("DELETE FROM contained WHERE member = ?", (member,))

    # -- shard health and repair ------------------------------------------------------------------

    async def mark_shard_bad(self, pack_id: bytes, index: int) -> None:
        await self._run(
            "UPDATE shards SET state = 'bad' WHERE pack_id = ? AND idx = ?", (pack_id, index)
        )

    async def _with_healthy(
        self, healthy: Sequence[bytes], sql: str, args: Sequence[Any]
    ) -> list[Any]:
        """Run ``sql`` with the temporary table ``healthy`` holding these members."""

        async def rows() -> list[Any]:
            await self._db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS healthy (node BLOB PRIMARY KEY)"
            )
            await self._db.execute("DELETE FROM healthy")
            await self._db.executemany(
                "INSERT OR IGNORE INTO healthy VALUES (?)", [(bytes(h),) for h in healthy]
            )
            async with self._db.execute(sql, args) as cur:
                return list(await cur.fetchall())

        return await self._guard(rows)

    async def health_counts(self, healthy: Sequence[bytes]) -> dict[tuple[int, int, int], int]:
        """Packs by (healthy shards, k, n): the whole pool's health in one scan. Only
        shards acknowledged, not found bad, and on a ``healthy`` member count."""
        rows = await self._with_healthy(
            healthy,
            """SELECT good, k, n, count(*) FROM (
                 SELECT p.k AS k, p.n AS n, count(s.idx) AS good
                 FROM packs p LEFT JOIN shards s ON s.pack_id = p.pack_id AND s.stored = 1
                   AND s.state = 'ok' AND s.holder IN (SELECT node FROM temp.healthy)
                 WHERE p.state = 'stored' GROUP BY p.pack_id)
               GROUP BY good, k, n""",
            (),
        )
        return {(int(h), int(k), int(n)): int(c) for h, k, n, c in rows}

    async def packs_short(
        self, healthy: Sequence[bytes], after: bytes = b"", limit: int = 500
    ) -> list[tuple[bytes, int, int, int]]:
        """Stored packs with fewer than n healthy shards, after ``after``, in id order:
        (pack id, healthy, k, n)."""
        rows = await self._with_healthy(
            healthy,
            """SELECT p.pack_id, count(s.idx), p.k, p.n
               FROM packs p LEFT JOIN shards s ON s.pack_id = p.pack_id AND s.stored = 1
                 AND s.state = 'ok' AND s.holder IN (SELECT node FROM temp.healthy)
               WHERE p.state = 'stored' AND p.pack_id > ?
               GROUP BY p.pack_id HAVING count(s.idx) < p.n
               ORDER BY p.pack_id LIMIT ?""",
            (after, limit),
        )
        return [(bytes(p), int(h), int(k), int(n)) for p, h, k, n in rows]

    async def shard_rows(self, pack_id: bytes) -> list[tuple[int, bytes, bool, str]]:
        """Every placed shard of a pack: (index, holder, acknowledged, state)."""
        rows = await self._rows(
            "SELECT idx, holder, stored, state FROM shards WHERE pack_id = ? ORDER BY idx",
            (pack_id,),
        )
        return [(int(i), bytes(h), bool(s), str(st)) for i, h, s, st in rows]

    async def begin_moves(
        self, pack_id: bytes, targets: Sequence[tuple[int, bytes]], now: float
    ) -> None:
        """Record where rebuilt shards are about to go, before a byte is sent."""

        async def add() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.executemany(
                "INSERT OR REPLACE INTO moves VALUES (?, ?, ?, 'upload', ?)",
                [(pack_id, i, h, now) for i, h in targets],
            )
            await self._db.execute("COMMIT")

        await self._guard(add)

    async def finish_move(self, pack_id: bytes, index: int, holder: bytes, now: float) -> None:
        """The new holder acknowledged: it now holds shard ``index``; the old holder
        (if any, and not the same) is left with a copy to release."""

        async def done() -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            async with self._db.execute(
                "SELECT holder FROM shards WHERE pack_id = ? AND idx = ?", (pack_id, index)
            ) as cur:
                row = await cur.fetchone()
            old = bytes(row[0]) if row else None
            await self._db.execute(
                """INSERT INTO shards (pack_id, idx, holder, stored, state)
                   VALUES (?, ?, ?, 1, 'ok')
                   ON CONFLICT(pack_id, idx) DO UPDATE SET
                     holder = excluded.holder, stored = 1, state = 'ok'""",
                (pack_id, index, holder),
            )
            # Its upload row is done, and a release pending from an earlier move
            # must not delete what it now holds for us.
            await self._db.execute(
                "DELETE FROM moves WHERE pack_id = ? AND idx = ? AND holder = ?",
                (pack_id, index, holder),
            )
            # The pool's index lists the old placement: index the pack anew.
            await self._db.execute("UPDATE packs SET indexed = 0 WHERE pack_id = ?", (pack_id,))
            if old is not None and old != holder:
                await self._db.execute(
                    "INSERT OR REPLACE INTO moves VALUES (?, ?, ?, 'release', ?)",
                    (pack_id, index, old, now),
                )
            await self._db.execute("COMMIT")

        await self._guard(done)

    async def moves(self, phase: str) -> list[Move]:
        rows = await self._rows(
            "SELECT pack_id, idx, holder, phase FROM moves WHERE phase = ? ORDER BY pack_id, idx",
            (phase,),
        )
        return [Move(bytes(p), int(i), bytes(h), str(ph)) for p, i, h, ph in rows]

    async def drop_move(self, pack_id: bytes, index: int, holder: bytes) -> None:
        await self._run(
            "DELETE FROM moves WHERE pack_id = ? AND idx = ? AND holder = ?",
            (pack_id, index, holder),
        )
