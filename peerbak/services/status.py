"""The pool's health in plain words, from this node's own records (no network needed).

``peerbak status`` must answer "is my backup safe?" when the user looks, and say what
to do when it is not: how many packs have how many healthy shards, which member failed
which challenge since when, who has been away how long against the grace period, and
what repair is waiting for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from peerbak.core.health import MemberState, RepairPolicy
from peerbak.core.ids import NodeId
from peerbak.core.words import plural, verb
from peerbak.services.repair import member_states
from peerbak.services.repository import Repository


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


async def pool_health(repo: Repository, policy: RepairPolicy, now: float) -> dict[str, Any]:
    """Members, packs by healthy shards, failures, pending work and advice."""
    states = await member_states(repo, policy, now)
    stats = await repo.ledger.member_stats()
    held = await repo.ledger.held_by_member()
    members = []
    advice: list[str] = []
    most, most_bytes = repo.home.config().storage.manifest_limit
    for node, m in repo.members.items():
        s = stats.get(node)
        state = states[node]
        name = m.name or node.hex()[:12]
        held_here = await asyncio.to_thread(repo.home.held_for, NodeId(node))
        kept, kept_bytes = held_here.manifests, held_here.manifest_bytes
        if kept >= most * 0.8 or kept_bytes >= most_bytes * 0.8:
            advice.append(
                f"this node keeps {kept} replaced manifests of {name} ({kept_bytes} bytes) of "
                f"at most {most} ({most_bytes} bytes): past that its backups are refused here "
                "until the trash grace frees some (storage.keep_manifests in config.toml)"
            )
        members.append(
            {
                "node": node.hex(),
                "name": name,
                "state": state.value,
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
                f"{name} failed {s.failed} storage challenge(s) since "
                f"{_days(now - s.failing_since)} ago: its shards are being repaired onto "
                "other members. Ask its owner to check the disk; `peerbak peers` shows the "
                "evidence."
            )
        elif state is MemberState.LOST:
            advice.append(
                f"{name} has been unreachable for {_days(away)}, past the "
                f"{_days(policy.lost_after)} grace: its shards are rebuilt elsewhere. If it "
                "is gone for good, `peerbak peers remove` it."
            )
        elif state is MemberState.OFFLINE:
            advice.append(
                f"{name} has been unreachable for {_days(away)}; its shards still count "
                f"until {_days(policy.lost_after - away)} from now."
            )
    healthy = [n for n, st in states.items() if policy.shard_counts(st)]
    counts = await repo.ledger.health_counts(healthy)
    by_health = [
        {"healthy": h, "k": k, "n": n, "packs": c} for (h, k, n), c in sorted(counts.items())
    ]
    below_k = sum(c for (h, k, _), c in counts.items() if h < k)
    thin = sum(c for (h, k, n), c in counts.items() if h >= k and policy.needs_repair(h, k, n))
    full = sum(c for (h, _, n), c in counts.items() if h >= n)
    total = sum(counts.values())
    if below_k:
        advice.insert(
            0,
            f"{plural(below_k, 'pack')} {verb(below_k, 'has', 'have')} fewer healthy shards "
            "than needed to rebuild them. Bring "
            "the unreachable members back online: their shards may still be there.",
        )
    elif thin:
        advice.append(
            f"{plural(thin, 'pack')} {verb(thin, 'is', 'are')} waiting for repair; "
            "the daemon repairs them."
        )
    uploads = len(await repo.ledger.moves("upload"))
    releases = len(await repo.ledger.moves("release"))
    failures = await repo.ledger.failures(20)
    if total == 0:
        verdict = "no backups yet"
    elif below_k:
        verdict = "AT RISK: some data cannot be restored right now"
    elif thin:
        verdict = "degraded: every pack can be restored; repair is pending"
    else:
        verdict = "healthy: every pack has all its shards on healthy members"
    return {
        "verdict": verdict,
        "packs": total,
        "packs_full": full,
        "packs_repairable": thin,
        "packs_below_k": below_k,
        "by_health": by_health,
        "members": members,
        "manifest_limit": {"manifests": most, "bytes": most_bytes},
        "repair_uploads_pending": uploads,
        "releases_pending": releases,
        "recent_failures": [
            {
                "member": (repo.members[f.member].name if f.member in repo.members else "")
                or f.member.hex()[:12],
                "time": f.time,
                "shard": f"{f.pack_id.hex()[:12]}.{f.index}",
                "outcome": f.outcome,
                "evidence": f.evidence,
            }
            for f in failures
        ],
        "advice": advice or ["nothing to do"],
    }
