"""The ledger's event log: one row for each thing a person may want to know happened
(a member gone or back, a challenge failed, a repair, a job's end), read by
``peerbak log``, the notifier and the status page. Kept for :data:`KEEP_DAYS`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from peerbak.adapters.ledger.db import Connection
from peerbak.ports.ledger import Event

#: Days of events kept; older ones are dropped as new ones arrive.
KEEP_DAYS: Final = 90.0
#: Events written between two sweeps of the old ones.
SWEEP_EVERY: Final = 1000


class EventRecords(Connection):
    """Append and read the event log (see the module docstring)."""

    async def add_event(
        self,
        time: float,
        level: str,
        kind: str,
        subject: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one event; returns its id (ids only grow)."""

        async def add() -> int:
            cur = await self._db.execute(
                "INSERT INTO events (time, level, kind, subject, message, details) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (time, level, kind, subject, message, json.dumps(details or {})),
            )
            ident = int(cur.lastrowid or 0)
            await cur.close()
            if ident % SWEEP_EVERY == 0:
                await self._db.execute(
                    "DELETE FROM events WHERE time < ?", (time - KEEP_DAYS * 86400,)
                )
            return ident

        return await self._guard(add)

    async def events(
        self,
        *,
        after: int = 0,
        since: float | None = None,
        kinds: Sequence[str] = (),
        subject: str | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[Event]:
        """Events with an id above ``after`` (and a time at or after ``since``), of these
        kinds (a kind ending in ``.`` matches as a prefix), oldest first."""
        where: list[str] = ["id > ?"]
        args: list[Any] = [after]
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if kinds:
            ors = []
            for kind in kinds:
                if kind.endswith("."):
                    ors.append("substr(kind, 1, ?) = ?")
                    args += [len(kind), kind]
                else:
                    ors.append("kind = ?")
                    args.append(kind)
            where.append("(" + " OR ".join(ors) + ")")
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        order = "DESC" if newest_first else "ASC"
        rows = await self._rows(
            "SELECT id, time, level, kind, subject, message, details FROM events "  # noqa: S608
            f"WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?",
            (*args, limit),
        )
        return [
            Event(int(r[0]), float(r[1]), r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows
        ]
