"""Commands that look after backups once they exist: status, challenge, repair,
forget, prune and undelete. Registered on the ``peerbak`` group by :mod:`peerbak.cli.main`."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Iterable
from typing import Any

import click

from peerbak.cli.kit import emit_table, human_size, open_home, parse_size, repo_call, run, time_ago
from peerbak.core.errors import ConfigError, InputError, PeerbakError
from peerbak.core.retention import COUNT_RULES, WITHIN_RULES

_KEEP = COUNT_RULES
_WITHIN = WITHIN_RULES


def _policy() -> Any:
    from peerbak.services.maintenance import policy_of

    return policy_of(open_home().config())


def _health(repo: Any) -> Any:
    from peerbak.services.status import pool_health

    return pool_health(repo, _policy(), time.time())


@click.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """Is my backup safe? Pool health in plain words, and the running node."""
    from peerbak.adapters.control import call
    from peerbak.node.compose import open_repository

    home = run(as_json, open_home)
    try:
        node: dict[str, Any] | None = call(home.control_socket, {"cmd": "status"})
        daemon_error = ""
    except PeerbakError as exc:
        node, daemon_error = None, str(exc)

    async def health() -> dict[str, Any] | None:
        try:
            repo = await open_repository(home)
        except ConfigError:
            return None  # in no pool yet: nothing to be healthy about
        async with repo:
            return await _health(repo)  # type: ignore[no-any-return]

    report = run(as_json, lambda: asyncio.run(health()))
    if as_json:
        click.echo(json.dumps({**(node or {}), "health": report, "daemon_error": daemon_error}))
    else:
        if node is not None:
            click.echo(
                f"node {node['node'][:12]} {node['name']!r}  port {node['port']}  "
                f"pool {node['pool'][:12] if node['pool'] else '(none yet)'}"
            )
        if report is not None:
            _print_health(report)
    if node is None:
        click.echo(
            f"peerbak: {daemon_error} (meanwhile nothing is challenged or repaired)", err=True
        )
        sys.exit(75)


def _print_health(h: dict[str, Any]) -> None:
    click.echo(f"pool: {h['verdict']}")
    click.echo(
        f"  {h['packs']} packs: {h['packs_full']} with every shard healthy, "
        f"{h['packs_repairable']} waiting for repair, {h['packs_below_k']} below k"
    )
    for row in h["by_health"]:
        click.echo(
            f"    {row['packs']} packs with {row['healthy']} of {row['n']} healthy (k={row['k']})"
        )
    if h["repair_uploads_pending"] or h["releases_pending"]:
        click.echo(
            f"  repair: {h['repair_uploads_pending']} uploads in progress, "
            f"{h['releases_pending']} old copies to release"
        )
    kept = sum(m["manifests_we_keep_for_it"] for m in h["members"])
    kept_bytes = sum(m["manifest_bytes_we_keep_for_it"] for m in h["members"])
    limit = h["manifest_limit"]
    click.echo(
        f"  trash here: {kept} replaced manifests of members kept ({human_size(kept_bytes)}), "
        f"at most {limit['manifests']} ({human_size(limit['bytes'])}) per member"
    )
    for line in h["advice"]:
        click.echo(f"  - {line}")


def peers_table(as_json: bool) -> None:
    """Members as this node sees them: state, uptime, latency, challenges, bytes."""
    h = repo_call(as_json, _health)
    if as_json:
        click.echo(json.dumps(h["members"]))
        return
    emit_table(
        f"{len(h['members'])} members",
        [
            "name",
            "node",
            "state",
            "last seen",
            "uptime",
            "latency",
            "challenges ok/failed",
            "holds for us",
            "we hold for it",
        ],
        (
            (
                m["name"],
                m["node"][:12],
                m["state"],
                time_ago(m["last_seen"]),
                f"{m['uptime'] * 100:.0f} %" if m["uptime"] is not None else "-",
                f"{m['latency_ms']} ms" if m["latency_ms"] is not None else "-",
                f"{m['challenges_passed']}/{m['challenges_failed']}",
                human_size(m["bytes_held_for_us"]),
                human_size(m["bytes_we_hold_for_it"]),
            )
            for m in h["members"]
        ),
    )
    for f in h["recent_failures"]:
        when, who = time_ago(f["time"]), f["member"]
        click.echo(f"{when}: {who} {f['outcome']} on shard {f['shard']}: {f['evidence']}")


def _matching(members: Iterable[Any], text: str) -> list[Any]:
    """Members called ``text``; failing that, those whose id starts with it. A name wins
    over an id prefix: a member named ``f1`` is meant even if some id begins ``f1``."""
    members = list(members)
    named = [m for m in members if m.name == text]
    return named or [m for m in members if m.node.hex().startswith(text.lower())]


def trust_again(text: str, as_json: bool) -> None:
    """Clear a member's failing mark: it gets shards again and its good ones count."""

    async def go(repo: Any) -> dict[str, Any]:
        found = _matching(repo.members.values(), text)
        if len(found) != 1:
            raise InputError(f"{len(found)} members match {text!r}: give a name or a longer id")
        await repo.ledger.set_failing(found[0].node, None)
        return {"node": found[0].node.hex(), "name": found[0].name}

    r = repo_call(as_json, go)
    click.echo(json.dumps(r) if as_json else f"{r['name'] or r['node'][:12]} is trusted again")


@click.command()
@click.option("--count", default=1, show_default=True, help="Challenges per member.")
@click.option("--member", "only", help="Only this member (name or id prefix).")
@click.option("--seed", type=int, help="Seed the choice of shards and leaves (tests).")
@click.option("--json", "as_json", is_flag=True)
def challenge(count: int, only: str | None, seed: int | None, as_json: bool) -> None:
    """Challenge members now: each proves it holds random shards of ours."""
    from peerbak.services import challenges

    if count < 1:
        raise click.BadParameter("must be at least 1", param_hint="--count")
    # A seed makes the choice reproducible (tests); otherwise the system's randomness.
    rng = random.Random(seed) if seed is not None else random.SystemRandom()  # noqa: S311

    async def go(repo: Any) -> list[dict[str, Any]]:
        chosen = list(repo.members.values()) if not only else _matching(repo.members.values(), only)
        if not chosen:
            raise InputError(f"no member is called {only!r} (`peerbak peers` lists them)")
        await repo.probe()
        out = []
        for m in chosen:
            for _ in range(count):
                if not m.up:
                    out.append({"member": m.name, "result": "offline", "evidence": m.error})
                    break
                o = await challenges.challenge(repo, m, rng, time.time())
                out.append(
                    {
                        "member": m.name or m.node.hex()[:12],
                        "result": o.result,
                        "shard": f"{o.pack_id.hex()[:12]}.{o.index}" if o.pack_id else "",
                        "evidence": o.evidence,
                        "wire_bytes": o.wire_bytes,
                    }
                )
        return out

    rows = repo_call(as_json, go)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
    else:
        for r in rows:
            click.echo(
                f"{r['member']}: {r['result']} {r.get('shard', '')} {r['evidence']}".rstrip()
            )
    if any(r["result"] == "fail" for r in rows):
        sys.exit(65)


@click.command()
@click.option("--limit", help="Repair traffic per hour, e.g. 2GiB (default: the config's).")
@click.option("--json", "as_json", is_flag=True)
def repair(limit: str | None, as_json: bool) -> None:
    """Rebuild lost shards onto other members now (the daemon also does this)."""
    from peerbak.core.config import parse_size as config_size
    from peerbak.services.repair import RateLimit
    from peerbak.services.repair import repair as run_repair

    home = run(as_json, open_home)
    per_hour = (
        parse_size(limit) if limit else config_size(home.config().maintenance.repair_per_hour)
    )

    async def go(repo: Any) -> dict[str, Any]:
        await repo.probe()
        report = await run_repair(
            repo, _policy(), time.time(), limit=RateLimit(per_hour) if per_hour else None
        )
        return dict(report.__dict__)

    r = repo_call(as_json, go, lock="repair")
    if as_json:
        click.echo(json.dumps(r))
    else:
        click.echo(
            f"{r['packs_short']} packs short of shards; {r['packs_repaired']} repaired "
            f"({r['shards_placed']} shards placed, {human_size(r['bytes_fetched'])} fetched, "
            f"{human_size(r['bytes_sent'])} sent); {r['shards_released']} old copies released"
        )
        for line in r["stuck"]:
            click.echo(f"not repaired: {line}")
    if r["stuck"]:
        sys.exit(69)


@click.command()
@click.option("--json", "as_json", is_flag=True)
def undelete(as_json: bool) -> None:
    """Bring back every shard and manifest the members keep in their trash."""
    from peerbak.services.undelete import undelete as run_undelete

    async def go(repo: Any) -> dict[str, Any]:
        return await run_undelete(repo)

    r = repo_call(as_json, go, lock="undelete")
    if as_json:
        click.echo(json.dumps(r))
        return
    click.echo(
        f"{r['shards_restored']} shards brought back from {len(r['members'])} members' trash; "
        f"{r['snapshots']} snapshots and {r['packs']} packs listed again "
        f"(manifest kept by {r['manifest_copies']} members)"
    )


def _keep_options(fn: Any) -> Any:
    for name in reversed(_KEEP):
        fn = click.option(
            f"--keep-{name}",
            type=int,
            default=0,
            help=f"Keep the last N {name} snapshots (-1: all).",
        )(fn)
    for name in reversed(_WITHIN):
        fn = click.option(
            f"--keep-{name}", help="Keep those within this long of the newest, e.g. 1y2m3d4h."
        )(fn)
    return click.option(
        "--keep-tag", multiple=True, help="Keep snapshots with all these tags (a,b)."
    )(fn)


@click.command()
@_keep_options
@click.option("--prune", "and_prune", is_flag=True, help="Then delete what no kept snapshot uses.")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be forgotten; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def forget(and_prune: bool, dry_run: bool, as_json: bool, **keep: Any) -> None:
    """Forget snapshots by restic's keep rules (and prune with --prune)."""
    from peerbak.core.retention import KeepPolicy, parse_duration
    from peerbak.services.prune import forget as run_forget
    from peerbak.services.prune import prune as run_prune

    def build() -> Any:
        durations = {
            n.replace("-", "_"): parse_duration(keep[f"keep_{n.replace('-', '_')}"])
            for n in _WITHIN
            if keep[f"keep_{n.replace('-', '_')}"]
        }
        return KeepPolicy(
            last=keep["keep_last"],
            hourly=keep["keep_hourly"],
            daily=keep["keep_daily"],
            weekly=keep["keep_weekly"],
            monthly=keep["keep_monthly"],
            yearly=keep["keep_yearly"],
            within=durations.get("within"),
            within_hourly=durations.get("within_hourly"),
            within_daily=durations.get("within_daily"),
            within_weekly=durations.get("within_weekly"),
            within_monthly=durations.get("within_monthly"),
            within_yearly=durations.get("within_yearly"),
            tags=tuple(frozenset(spec.split(",")) for spec in keep["keep_tag"]),
        )

    policy = run(as_json, build)

    async def go(repo: Any) -> dict[str, Any]:
        await repo.probe()
        decisions = await run_forget(repo, policy, dry_run=dry_run)
        pruned = await run_prune(repo) if and_prune and not dry_run else None
        return {
            "snapshots": [
                {
                    "id": d.snapshot.id.hex(),
                    "time": d.snapshot.time,
                    "tags": d.snapshot.tags,
                    "kept": d.kept,
                    "reasons": [str(r) for r in d.reasons],
                }
                for d in decisions
            ],
            "prune": pruned,
            "dry_run": dry_run,
        }

    r = repo_call(as_json, go, lock="forget")
    if as_json:
        click.echo(json.dumps(r))
        return
    kept = [s for s in r["snapshots"] if s["kept"]]
    gone = [s for s in r["snapshots"] if not s["kept"]]
    emit_table(
        f"keep {len(kept)} snapshots",
        ["id", "time", "tags", "reasons"],
        (
            (s["id"][:8], _when(s["time"]), ",".join(s["tags"]), ", ".join(s["reasons"]))
            for s in kept
        ),
    )
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(gone)} snapshots: " + (" ".join(s["id"][:8] for s in gone) or "none"))
    if r["prune"] is not None:
        _print_prune(r["prune"])


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@click.command()
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be deleted; change nothing.")
@click.option(
    "--repack-below",
    default="50%",
    show_default=True,
    help="Repack packs used less than this share (their used data is copied out).",
)
@click.option("--json", "as_json", is_flag=True)
def prune(dry_run: bool, repack_below: str, as_json: bool) -> None:
    """Delete packs no snapshot uses (to the holders' trash, for their grace period)."""
    from peerbak.services.prune import prune as run_prune

    def share() -> float:
        text = repack_below.strip().rstrip("%")
        try:
            value = float(text) / 100
        except ValueError:
            value = -1.0
        if not 0 <= value <= 1:
            raise InputError(f"--repack-below wants a share such as 50%, not {repack_below!r}")
        return value

    below = run(as_json, share)

    async def go(repo: Any) -> dict[str, Any]:
        return await run_prune(repo, dry_run=dry_run, repack_below=below)

    r = repo_call(as_json, go, lock="prune")
    if as_json:
        click.echo(json.dumps(r))
    else:
        _print_prune(r)


def _print_prune(r: dict[str, Any]) -> None:
    verb = "would delete" if r["dry_run"] else "deleted"
    click.echo(
        f"{r['snapshots']} snapshots use {r['chunks_used']} chunks and trees; "
        f"{r['packs_unused']} of {r['packs']} packs unused: {verb} "
        f"{r['packs_deleted'] if not r['dry_run'] else r['packs_unused']}"
    )
    if r["packs_repacked"]:
        click.echo(
            f"{r['packs_repacked']} mostly unused packs repacked "
            f"({human_size(r['bytes_repacked'])} of used data copied into new packs)"
        )
    if r["packs_partly_used"]:
        click.echo(
            f"{r['packs_partly_used']} packs are partly used and kept whole "
            f"({human_size(r['bytes_unused_kept'])} of unused data in them)"
        )


async def _pool_scenario(repo: Any) -> str:
    """This pool as a simulator scenario: its members, their observed uptime, its code."""
    stats = await repo.ledger.member_stats()
    snaps = await repo.snapshots()
    latest = max(snaps, key=lambda x: x.time, default=None)
    if latest is not None:
        k, n = latest.k, latest.n
    else:
        k, n = repo.code().k, repo.code().n
    lines = [
        'title = "this pool, as observed"',
        "[code]",
        f"k = {k}",
        f"n = {n}",
    ]
    for node, m in repo.members.items():
        st = stats.get(node)
        uptime = st.uptime if st is not None and st.uptime is not None else 1.0
        off = min(23.0, round(24 * (1 - uptime), 2))
        name = json.dumps(m.name or node.hex()[:12])
        lines += ["[[members]]", f"name = {name}", f"nightly_off_hours = {off}"]
    return "\n".join(lines) + "\n"


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--pool", "on_pool", is_flag=True, help="Simulate this node's own pool.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def simulate(on_pool: bool, args: tuple[str, ...]) -> None:
    """Durability of a pool over years: SCENARIO [--runs N] [--sweep] [--plot PNG] [--json].

    SCENARIO is a TOML file or a shipped name (pis-at-home-5, three-friends, vacation,
    silent-loss, ten-friends-two-in-one-house); --pool uses this pool's members, their
    observed uptime and its code. Method and figures: docs/durability.md.
    """
    from simulations.__main__ import main as simulate_main

    argv = list(args)
    if on_pool:
        home = run("--json" in argv, open_home)
        text = repo_call("--json" in argv, _pool_scenario)
        path = home.run_dir / "pool-scenario.toml"
        path.write_text(text)
        argv.insert(0, str(path))
    sys.exit(simulate_main(argv))


COMMANDS = (status, challenge, repair, undelete, forget, prune, simulate)
