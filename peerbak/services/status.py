"""The pool's health in plain words, from this node's own records (no network needed).

``peerbak status`` must answer "is my backup safe?" when the user looks, and say what
to do when it is not: how many packs have how many healthy shards, which member failed
which challenge since when, who has been away how long against the grace period, and
what repair is waiting for.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from peerbak.core.health import MemberState, RepairPolicy
from peerbak.core.ids import NodeId
from peerbak.core.words import plural, verb
from peerbak.services.jobs import job_table, last_run, started_at
from peerbak.services.repair import member_states
from peerbak.services.repository import PUBLISH_REACH, Repository


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


async def pool_health(
    repo: Repository, policy: RepairPolicy, now: float, *, probed: bool = False
) -> dict[str, Any]:
    """Members, packs by healthy shards, what can be restored now, the last backups,
    failures, pending work and advice. With ``probed`` (the members were just probed),
    a member that did not answer is unreachable now, whatever its records say."""
    states = await member_states(repo, policy, now)
    if probed:
        for node, m in repo.members.items():
            if not m.up and states[node] is MemberState.OK:
                states[node] = MemberState.UNREACHABLE
    members, advice = await _members(repo, policy, states, now, probed)
    packs, pack_advice = await _packs(repo, policy, states)
    most, most_bytes = repo.home.config().storage.manifest_limit
    failures = await repo.ledger.failures(20)
    return {
        **packs,
        "members": members,
        "last_backups": await last_backups(repo, now),
        "jobs": await job_summaries(repo, now),
        "last_publish": await last_publish(repo),
        "manifest_limit": {"manifests": most, "bytes": most_bytes},
        "repair_uploads_pending": len(await repo.ledger.moves("upload")),
        "releases_pending": len(await repo.ledger.moves("release")),
        "recent_failures": [
            {
                "member": (repo.members[f.member].label if f.member in repo.members else "")
                or f.member.hex()[:12],
                "time": f.time,
                "shard": f"{f.pack_id.hex()[:12]}.{f.index}",
                "outcome": f.outcome,
                "evidence": f.evidence,
            }
            for f in failures
        ],
        "advice": pack_advice[:1] + advice + pack_advice[1:] or ["nothing to do"],
    }


async def _members(
    repo: Repository,
    policy: RepairPolicy,
    states: dict[bytes, MemberState],
    now: float,
    probed: bool,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each member's row, and what to say of those that are not well."""
    stats = await repo.ledger.member_stats()
    held = await repo.ledger.held_by_member()
    most, most_bytes = repo.home.config().storage.manifest_limit
    rows: list[dict[str, Any]] = []
    advice: list[str] = []
    for node, m in repo.members.items():
        s = stats.get(node)
        state = states[node]
        held_here = await asyncio.to_thread(repo.home.held_for, NodeId(node))
        kept, kept_bytes = held_here.manifests, held_here.manifest_bytes
        if kept >= most * 0.8 or kept_bytes >= most_bytes * 0.8:
            advice.append(
                f"this node keeps {kept} replaced manifests of {m.label} ({kept_bytes} bytes) "
                f"of at most {most} ({most_bytes} bytes): past that its backups are refused "
                "here until the trash grace frees some (storage.keep_manifests in config.toml)"
            )
        rows.append(
            {
                "node": node.hex(),
                "name": m.label,
                "state": state.value,
                "reachable_now": m.up if probed else None,
                "error": m.error if probed and not m.up else "",
                "last_seen": s.last_seen if s else None,
                "uptime": s.uptime if s else None,
                "latency_ms": round(s.latency * 1000, 1) if s and s.latency is not None else None,
                "challenges_passed": s.passed if s else 0,
                "challenges_failed": s.failed if s else 0,
                "failing_since": s.failing_since if s else None,
                "shards_held_for_us": held.get(node, (0, 0))[0],
                "bytes_held_for_us": held.get(node, (0, 0))[1],
                "bytes_we_hold_for_it": held_here.size,
                "manifests_we_keep_for_it": kept,
                "manifest_bytes_we_keep_for_it": kept_bytes,
            }
        )
        away = now - s.last_seen if s and s.last_seen is not None else 0.0
        if state is MemberState.FAILING and s and s.failing_since is not None:
            advice.append(
                f"{m.label} failed {s.failed} storage challenge(s) since "
                f"{_days(now - s.failing_since)} ago: its shards are being repaired onto "
                "other members. Ask its owner to check the disk; `peerbak peers` shows the "
                "evidence."
            )
        elif state is MemberState.LOST:
            advice.append(
                f"{m.label} has been unreachable for {_days(away)}, past the "
                f"{_days(policy.lost_after)} grace: its shards are rebuilt elsewhere. If it "
                "is gone for good, `peerbak peers remove` it."
            )
        elif state is MemberState.UNREACHABLE:
            since = f"last seen {_days(away)} ago" if s and s.last_seen else "never seen"
            advice.append(
                f"{m.label} is unreachable ({since}); its shards still count, and are "
                "rebuilt elsewhere if it is not back within "
                f"{_days(max(0.0, policy.lost_after - away))}."
            )
    return rows, advice


async def _packs(
    repo: Repository, policy: RepairPolicy, states: dict[bytes, MemberState]
) -> tuple[dict[str, Any], list[str]]:
    """The packs by healthy shards, twice: counting the unreachable members' shards (as
    repair does) and without them (what a restore could use right now)."""
    healthy = [n for n, st in states.items() if policy.shard_counts(st)]
    counts = await repo.ledger.health_counts(healthy)
    away = [n for n in healthy if states[n] is MemberState.UNREACHABLE]
    now_counts = (
        await repo.ledger.health_counts([n for n in healthy if n not in away]) if away else counts
    )
    below_k = sum(c for (h, k, _), c in counts.items() if h < k)
    thin = sum(c for (h, k, n), c in counts.items() if h >= k and policy.needs_repair(h, k, n))
    below_k_now = sum(c for (h, k, _), c in now_counts.items() if h < k)
    at_risk = sum(
        c for (h, k, n), c in now_counts.items() if h >= k and policy.needs_repair(h, k, n)
    )
    total = sum(counts.values())
    names = ", ".join(repo.members[n].label for n in away)
    advice: list[str] = []
    if below_k:
        advice.append(
            f"{plural(below_k, 'pack')} {verb(below_k, 'has', 'have')} fewer healthy shards "
            "than needed to rebuild them. Bring the unreachable members back online: their "
            "shards may still be there."
        )
    elif below_k_now:
        advice.append(
            f"{plural(below_k_now, 'pack')} cannot be restored until {names} "
            f"{verb(len(away), 'is', 'are')} back: the members reachable now hold too few "
            "of their shards."
        )
    if thin:
        advice.append(
            f"{plural(thin, 'pack')} {verb(thin, 'is', 'are')} waiting for repair; "
            "the daemon repairs them."
        )
    if away and at_risk > thin:
        advice.append(
            f"if {names} {verb(len(away), 'does', 'do')} not come back, "
            f"{plural(at_risk, 'pack')} {verb(at_risk, 'falls', 'fall')} to k + margin "
            "healthy shards or fewer and will be repaired."
        )
    if total == 0:
        verdict = "no backups yet"
    elif below_k:
        verdict = "AT RISK: some data cannot be restored"
    elif below_k_now:
        verdict = f"NOT RESTORABLE NOW: some data needs {names} back first"
    elif thin or away:
        verdict = "degraded: every snapshot can be restored from the members reachable now"
    else:
        verdict = "healthy: every pack has all its shards on healthy members"
    return {
        "verdict": verdict,
        "restorable_now": below_k_now == 0,
        "packs": total,
        "packs_full": sum(c for (h, _, n), c in counts.items() if h >= n),
        "packs_repairable": thin,
        "packs_below_k": below_k,
        "packs_below_k_now": below_k_now,
        "packs_at_risk_if_unreachable_stay_away": at_risk,
        "unreachable": [repo.members[n].label for n in away],
        "by_health": [
            {"healthy": h, "k": k, "n": n, "packs": c} for (h, k, n), c in sorted(counts.items())
        ],
    }, advice


async def last_backups(repo: Repository, now: float) -> list[dict[str, Any]]:
    """The newest snapshot of each host and path set (each backup job), and its age."""
    newest: dict[tuple[str, tuple[str, ...]], Any] = {}
    for snap in await repo.snapshots():
        key = (snap.hostname, tuple(snap.paths))
        if key not in newest or snap.time > newest[key].time:
            newest[key] = snap
    return [
        {
            "host": snap.hostname,
            "paths": snap.paths,
            "snapshot": snap.id.hex(),
            "time": snap.time,
            "age_seconds": max(0.0, now - snap.time),
        }
        for _, snap in sorted(newest.items(), key=lambda kv: kv[1].time)
    ]


async def job_summaries(repo: Repository, now: float) -> list[dict[str, Any]]:
    """Each backup job's last run, next run, and last success with its age."""
    rows = await job_table(repo, repo.home.config(), now)
    for row in rows:
        ok = await last_run(repo, row["name"], "job.ok")
        row["last_success"] = None if ok is None else started_at(ok)
        row["last_success_age"] = None if ok is None else max(0.0, now - started_at(ok))
    return rows


async def last_publish(repo: Repository) -> dict[str, Any] | None:
    """Which members took the last manifest (of a backup, forget, prune or repair)."""
    raw = await repo.ledger.get_meta(PUBLISH_REACH)
    return None if raw is None else dict(json.loads(raw))
