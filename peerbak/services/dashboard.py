"""Everything the status page and the metrics show, gathered at once as plain data.

One call reads this node's own records (no member is dialled: the daemon probes them
every few minutes, and a page must answer at once), so the page, ``/status.json`` and
``/metrics`` agree with one another and with ``peerbak status``: the pool's health is
:func:`~peerbak.services.status.pool_health` itself. The result is JSON-ready: numbers,
strings, lists and dicts only, for an adapter to render without knowing the services.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from peerbak.core.health import RepairPolicy
from peerbak.ports.ledger import Event
from peerbak.services.repository import Repository
from peerbak.services.status import pool_health

#: Snapshots listed (newest first), events shown, runs of each job kept.
SNAPSHOTS_SHOWN: Final = 30
EVENTS_SHOWN: Final = 50
RUNS_SHOWN: Final = 10
#: Job events read to find each job's last runs.
JOB_EVENTS_READ: Final = 1000
#: Days of challenge failures charted, and failures read for them at most.
CHART_DAYS: Final = 30
FAILURES_READ: Final = 5000
DAY: Final = 86400.0


async def gather(repo: Repository, policy: RepairPolicy, now: float) -> dict[str, Any]:
    """The page's data: health, members, jobs, snapshots, repair, events and charts."""
    health = await pool_health(repo, policy, now, probed=False)
    snaps = sorted(await repo.snapshots(), key=lambda s: s.time)
    job_events = await repo.ledger.events(kinds=["job."], limit=JOB_EVENTS_READ, newest_first=True)
    recent = await repo.ledger.events(limit=EVENTS_SHOWN, newest_first=True)
    failures = await repo.ledger.failures(FAILURES_READ)
    space = await repo.ledger.space()
    stored = 0
    stored_series = []
    for s in snaps:
        stored += s.summary.stored_added
        stored_series.append({"time": s.time, "bytes": stored})
    first_day = int(now // DAY) - CHART_DAYS + 1
    per_day = Counter(int(f.time // DAY) for f in failures if f.time // DAY >= first_day)
    return {
        "generated": now,
        "node": {"name": repo.home.config().node.name, "id": repo.keys.node_id.hex()},
        "health": health,
        "jobs": jobs(job_events),
        "snapshots_total": len(snaps),
        "snapshots": [
            {
                "id": s.id.hex(),
                "time": s.time,
                "host": s.hostname,
                "paths": list(s.paths),
                "tags": list(s.tags),
                "files": s.summary.total_files,
                "bytes": s.summary.total_bytes,
                "files_new": s.summary.files_new,
                "data_added": s.summary.data_added,
                "stored_added": s.summary.stored_added,
                "errors": s.summary.errors,
            }
            for s in reversed(snaps[-SNAPSHOTS_SHOWN:])
        ],
        "repair": {
            "uploads_pending": health["repair_uploads_pending"],
            "releases_pending": health["releases_pending"],
            "packs_repairable": health["packs_repairable"],
            "packs_below_k": health["packs_below_k"],
            "packs_below_k_now": health["packs_below_k_now"],
        },
        "space": {
            "deduplicated_bytes": space.plain,
            "pack_bytes": space.pack_bytes,
            "stored_bytes": space.stored,
        },
        "events": [event_row(e) for e in recent],
        "charts": {
            "stored": stored_series,
            "challenges": {
                "days": CHART_DAYS,
                "failed_per_day": [
                    {"day": (first_day + i) * DAY, "failed": per_day.get(first_day + i, 0)}
                    for i in range(CHART_DAYS)
                ],
                "passed_total": sum(m["challenges_passed"] for m in health["members"]),
                "failed_total": sum(m["challenges_failed"] for m in health["members"]),
            },
        },
    }


def event_row(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "time": e.time,
        "level": e.level,
        "kind": e.kind,
        "subject": e.subject,
        "message": e.message,
        "details": e.details,
    }


def jobs(newest_first: list[Event]) -> list[dict[str, Any]]:
    """Each job (by subject) with its last run, last success and recent runs, from the
    ``job.ok`` and ``job.failed`` events (any other ``job.`` kind is listed as a run)."""
    by_job: dict[str, list[Event]] = {}
    for e in newest_first:
        by_job.setdefault(e.subject, []).append(e)
    rows = []
    for name, runs in sorted(by_job.items()):
        last = runs[0]
        ok = next((e for e in runs if e.kind == "job.ok"), None)
        rows.append(
            {
                "name": name,
                "last_run": last.time,
                "result": last.kind.removeprefix("job."),
                "level": last.level,
                "snapshot": str(last.details.get("snapshot") or ""),
                "error": str(last.details.get("error") or ""),
                "duration": _number(last.details.get("duration")),
                "last_success": ok.time if ok else None,
                "runs": [
                    {
                        "time": e.time,
                        "result": e.kind.removeprefix("job."),
                        "message": e.message,
                        "snapshot": str(e.details.get("snapshot") or ""),
                        "error": str(e.details.get("error") or ""),
                    }
                    for e in runs[:RUNS_SHOWN]
                ],
            }
        )
    return rows


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
