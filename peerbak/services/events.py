"""What happened, told once: a log line and an event in the ledger for ``peerbak log``,
the notifier and the status page.

Member states are logged as they change, not as they are: :func:`track_members`
compares each member's state (by the repair policy: unreachable after a few missed
probes, lost after the grace) with the last one logged, so a daemon restarted, or a
second process, never tells the same change twice.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from peerbak.core.health import MemberState, RepairPolicy
from peerbak.ports.ledger import Event, Ledger
from peerbak.services.repair import member_states
from peerbak.services.repository import Repository

log = logging.getLogger("peerbak.events")

LEVELS: Final = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
#: The level a member's change to each state is logged at.
STATE_LEVEL: Final = {
    MemberState.OK: "info",
    MemberState.UNREACHABLE: "warning",
    MemberState.LOST: "error",
    MemberState.FAILING: "error",
}


async def note(
    ledger: Ledger,
    now: float,
    level: str,
    kind: str,
    subject: str,
    message: str,
    **details: Any,
) -> int:
    """Log ``message`` and append it to the ledger's events; returns the event's id."""
    log.log(LEVELS[level], "%s", message)
    return await ledger.add_event(now, level, kind, subject, message, details)


async def last_state(ledger: Ledger, name: str) -> str:
    """A member's state as last logged (``ok`` before anything was)."""
    last = await ledger.events(kinds=["member."], subject=name, limit=1, newest_first=True)
    return str(last[0].details.get("state", "ok")) if last else "ok"


async def track_members(repo: Repository, policy: RepairPolicy, now: float) -> list[int]:
    """Log each member whose state differs from the one last logged; returns the new
    events' ids."""
    stats = await repo.ledger.member_stats()
    made = []
    for node, state in (await member_states(repo, policy, now)).items():
        peer = repo.members[node]
        before = await last_state(repo.ledger, peer.label)
        if state.value == before:
            continue
        s = stats.get(node)
        seen = s.last_seen if s else None
        away = f"{(now - seen) / 60:.0f} minutes" if seen is not None else "ever"
        message = {
            MemberState.OK: f"{peer.label} is back (was {before})",
            MemberState.UNREACHABLE: f"{peer.label} is unreachable: no answer for {away}"
            + (f" ({peer.error})" if peer.error else ""),
            MemberState.LOST: f"{peer.label} is lost: unreachable for {away}, past the "
            f"{policy.lost_after / 86400:.0f}-day grace; its shards are rebuilt elsewhere",
            MemberState.FAILING: f"{peer.label} failed a storage challenge: its shards are "
            "checked and the bad ones repaired elsewhere",
        }[state]
        made.append(
            await note(
                repo.ledger,
                now,
                STATE_LEVEL[state],
                f"member.{state.value}",
                peer.label,
                message,
                state=state.value,
                previous=before,
                node=node.hex(),
                last_seen=seen,
            )
        )
    return made


def line(event: Event) -> str:
    """An event as one line of ``peerbak log``."""
    return f"{event.level:<7} {event.kind:<20} {event.message}"
