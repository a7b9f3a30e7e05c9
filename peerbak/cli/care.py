"""Looking after backups once they exist: ``status``, ``check``, ``challenge``, ``repair``,
``undelete``, ``forget`` and ``prune``."""

from __future__ import annotations

import json
import random
import time
from typing import TYPE_CHECKING, Any

import click

from peerbak.cli.kit import (
    ask_daemon,
    emit_table,
    fail,
    health,
    human_size,
    matching,
    open_home,
    parse_size,
    pool_report,
    repo_call,
    rfc3339,
    run,
    selection,
    selection_options,
    time_ago,
    when,
)
from peerbak.core.errors import (
    ChecksFailed,
    DaemonUnavailable,
    InputError,
    NotEnoughShares,
    PeerbakError,
    PeerUnavailable,
    RepairStuck,
)
from peerbak.core.retention import COUNT_RULES, WITHIN_RULES
from peerbak.core.words import plural

if TYPE_CHECKING:
    from peerbak.services.repository import Repository


@click.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """Is my backup safe? Pool health in plain words, and the running node. Exits 0 only
    when all is well: 78 for a broken configuration, 69 when some snapshot cannot be
    restored from the members reachable now, 75 when the daemon or a member is down."""
    home = run(as_json, open_home)
    try:
        node: dict[str, Any] | None = ask_daemon({"cmd": "status"}, home)
        daemon_error = ""
    except PeerbakError as exc:
        node, daemon_error = None, str(exc)
    report, problem = pool_report(home, health)  # report None: in no pool yet
    if as_json:
        click.echo(
            json.dumps(
                {
                    **(node or {}),
                    "health": report,
                    "daemon_error": daemon_error,
                    "error": str(problem) if problem else "",
                }
            )
        )
    else:
        if node is not None:
            click.echo(
                f"node {node['node'][:12]} {node['name']!r}  port {node['port']}  "
                f"pool {node['pool'][:12] if node['pool'] else '(none yet)'}"
            )
        if report is not None:
            _print_health(report)
    if problem is not None:
        fail(as_json, problem)
    if report is not None and not report["restorable_now"]:
        fail(as_json, NotEnoughShares(f"pool: {report['verdict']}"))
    if node is None:
        fail(
            as_json,
            DaemonUnavailable(f"{daemon_error} (meanwhile nothing is challenged or repaired)"),
        )
    if report is not None and report["unreachable"]:
        fail(as_json, PeerUnavailable(f"unreachable now: {', '.join(report['unreachable'])}"))


def _print_health(h: dict[str, Any]) -> None:
    click.echo(f"pool: {h['verdict']}")
    for m in h["members"]:
        if m["state"] != "ok":
            seen = f"last seen {time_ago(m['last_seen'])}" if m["last_seen"] else "never seen"
            why = f": {m['error']}" if m["error"] else ""
            click.echo(f"  {m['name']}: {m['state']} ({seen}){why}")
    for j in h["jobs"]:
        ok = f"last success {time_ago(j['last_success'])}" if j["last_success"] else "never done"
        last = j["last"]
        failed = (
            f"; last run failed {time_ago(last['time'])}: {last['error']}"
            if last and last["result"] == "failed"
            else ""
        )
        click.echo(f"  job {j['name']}: {ok}{failed}")
    for b in h["last_backups"]:
        click.echo(
            f"  last backup of {b['host']} {' '.join(b['paths'])}: {time_ago(b['time'])} "
            f"(snapshot {b['snapshot'][:8]})"
        )
    reach = h["last_publish"]
    if reach and reach["missed"]:
        missed = ", ".join(
            f"{name} ({why})" if why else name for name, why in reach["missed"].items()
        )
        click.echo(
            f"  the last manifest ({time_ago(reach['time'])}) reached {reach['reached']} of "
            f"{plural(reach['members'], 'member')}; missed: {missed}"
        )
    click.echo(
        f"  {plural(h['packs'], 'pack')}: {h['packs_full']} with every shard healthy, "
        f"{h['packs_repairable']} waiting for repair, {h['packs_below_k']} below k"
    )
    for row in h["by_health"]:
        click.echo(
            f"    {plural(row['packs'], 'pack')} with {row['healthy']} of {row['n']} healthy "
            f"(k={row['k']})"
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


@click.command()
@click.option("--read-data", is_flag=True, help="Read and verify every pack in full.")
@click.option(
    "--read-data-subset", help="Read n/m of the packs (1/30 a day: all in a month), or x%."
)
@click.option(
    "--restore-drill",
    type=click.IntRange(1, 100_000),
    help="Also restore N random files of the latest snapshot and compare them.",
)
@click.option("--json", "as_json", is_flag=True)
def check(
    read_data: bool, read_data_subset: str | None, restore_drill: int | None, as_json: bool
) -> None:
    """Compare the ledger with what members hold; optionally read and verify the data.
    Exits 65 when errors were found, 75 when none were but a member could not be checked."""
    from peerbak.services.check import run_check
    from peerbak.services.drill import restore_drill as run_drill

    async def go(repo: Repository) -> dict[str, Any]:
        report = await run_check(repo, read_data_subset, read_data)
        if restore_drill:
            drill = await run_drill(
                repo, restore_drill, random.SystemRandom(), repo.home.scratch_dir
            )
            report["drill"] = drill
            report["ok"] = report["ok"] and not drill["problems"]
        return report

    report = repo_call(as_json, go)
    if as_json:
        click.echo(json.dumps(report))
    else:
        r = report
        click.echo(
            f"{plural(r['packs'], 'pack')}, {plural(r['shards_expected'], 'shard')} on members: "
            f"{r['shards_missing']} missing, {r['shards_unknown']} not in the ledger "
            "(leftovers, reclaimed by the next backup)"
        )
        if read_data or read_data_subset:
            click.echo(
                f"read {plural(r['packs_read'], 'pack')} in full: "
                f"{plural(r['shards_damaged'], 'damaged shard')}, "
                f"{plural(r['packs_unreadable'], 'unreadable pack')}"
            )
        if "drill" in r:
            d = r["drill"]
            click.echo(
                f"restore drill: {d['restored']} of {d['files_sampled']} sampled files "
                f"restored; {d['matched']} identical to the files on disk, "
                f"{d['changed_since']} changed since the backup"
            )
            for line in d["problems"]:
                click.echo(line)
        for name, why in r["members_down"].items():
            click.echo(f"not checked: {name} is unreachable ({why})")
        for line in r["problems"]:
            click.echo(line)
        down = r["members_down"]
        click.echo(
            "errors were found"
            if not r["ok"]
            else f"no errors were found, but {plural(len(down), 'member')} could not be checked"
            if down
            else "no errors were found"
        )
    if not report["ok"]:
        fail(as_json, ChecksFailed("errors were found"))
    if report["members_down"]:
        names = ", ".join(report["members_down"])
        fail(as_json, PeerUnavailable(f"not checked, unreachable: {names}"))


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

    async def go(repo: Repository) -> list[dict[str, Any]]:
        chosen = list(repo.members.values()) if not only else matching(repo.members.values(), only)
        if not chosen:
            raise InputError(f"no member is called {only!r} (`peerbak peers` lists them)")
        await repo.probe()  # only once the members asked for are known to exist
        out: list[dict[str, Any]] = []
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
    for r in rows:
        if as_json:
            click.echo(json.dumps(r))
        else:
            click.echo(
                f"{r['member']}: {r['result']} {r.get('shard', '')} {r['evidence']}".rstrip()
            )
    failed = sum(r["result"] == "fail" for r in rows)
    if failed:
        fail(as_json, ChecksFailed(f"{failed} challenges failed"))


@click.command()
@click.option("--limit", help="Repair traffic per hour, e.g. 2GiB (default: the config's).")
@click.option("--json", "as_json", is_flag=True)
def repair(limit: str | None, as_json: bool) -> None:
    """Rebuild lost shards onto other members now (the daemon also does this)."""
    from peerbak.core.config import parse_size as config_size
    from peerbak.services.maintenance import policy_of
    from peerbak.services.repair import repair as run_repair
    from peerbak.services.repository import RateLimit

    asked = run(as_json, lambda: parse_size(limit)) if limit else None

    async def go(repo: Repository) -> dict[str, Any]:
        config = repo.home.config()
        per_hour = asked if asked is not None else config_size(config.maintenance.repair_per_hour)
        report = await run_repair(
            repo, policy_of(config), time.time(), limit=RateLimit(per_hour) if per_hour else None
        )
        return dict(report.__dict__)

    r = repo_call(as_json, go, lock="repair", probe=True)
    if as_json:
        click.echo(json.dumps(r))
    else:
        click.echo(
            f"{plural(r['packs_short'], 'pack')} short of shards; {r['packs_repaired']} "
            f"repaired ({plural(r['shards_placed'], 'shard')} placed, "
            f"{human_size(r['bytes_fetched'])} fetched, {human_size(r['bytes_sent'])} sent); "
            f"{plural(r['shards_released'], 'old copy', 'old copies')} released"
        )
        for line in r["stuck"]:
            click.echo(f"not repaired: {line}")
    if r["stuck"]:
        fail(as_json, RepairStuck(f"{plural(len(r['stuck']), 'pack')} could not be repaired"))


@click.command()
@click.option("--json", "as_json", is_flag=True)
def undelete(as_json: bool) -> None:
    """Bring back every shard and manifest the members keep in their trash."""
    from peerbak.services.undelete import undelete as run_undelete

    r = repo_call(as_json, run_undelete, lock="undelete")
    if as_json:
        click.echo(json.dumps(r))
        return
    click.echo(
        f"{plural(r['shards_restored'], 'shard')} brought back from the trash of "
        f"{plural(len(r['members']), 'member')}; "
        f"{plural(r['snapshots'], 'snapshot')} and {plural(r['packs'], 'pack')} listed again "
        f"(manifest kept by {plural(r['manifest_copies'], 'member')})"
    )


def _keep_options(fn: Any) -> Any:
    for name in reversed(COUNT_RULES):
        fn = click.option(
            f"--keep-{name}",
            type=int,
            default=0,
            help=f"Keep the last N {name} snapshots (-1: all).",
        )(fn)
    for name in reversed(WITHIN_RULES):
        period = {"hourly": "hour", "daily": "day", "weekly": "week", "monthly": "month"}.get(
            name.removeprefix("within-"), "year"
        )
        what = "every snapshot" if name == "within" else f"the newest snapshot of each {period}"
        fn = click.option(
            f"--keep-{name}",
            help=f"Keep {what} within this long of the newest, e.g. 1y2m3d4h.",
        )(fn)
    return click.option(
        "--keep-tag", multiple=True, help="Keep snapshots with all these tags (a,b)."
    )(fn)


def _keep_policy(keep: dict[str, Any]) -> Any:
    """The ``--keep-*`` options as restic's keep policy."""
    from peerbak.core.retention import KeepPolicy, parse_duration

    durations = {
        n.replace("-", "_"): parse_duration(keep[f"keep_{n.replace('-', '_')}"])
        for n in WITHIN_RULES
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


@click.command()
@_keep_options
@click.argument("snapshot_ids", nargs=-1)
@click.option(
    "--group-by",
    default="host,paths",
    show_default=True,
    help="Apply the rules to each group of snapshots with the same host, paths and/or tags "
    "(comma-separated; '' for one group of all).",
)
@selection_options
@click.option("--prune", "and_prune", is_flag=True, help="Then delete what no kept snapshot uses.")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be forgotten; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def forget(
    snapshot_ids: tuple[str, ...],
    group_by: str,
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    and_prune: bool,
    dry_run: bool,
    as_json: bool,
    **keep: Any,
) -> None:
    """Forget the SNAPSHOT_IDS given, or those restic's keep rules let go in each group
    (by default: each host and path set, so every backup job keeps its own); --prune
    then deletes what no kept snapshot uses."""
    from peerbak.core.retention import parse_group_by
    from peerbak.services.prune import forget as run_forget
    from peerbak.services.prune import prune as run_prune

    policy = run(as_json, lambda: _keep_policy(keep))
    by = run(as_json, lambda: parse_group_by(group_by))
    only = selection(hosts, paths, tags)

    async def go(repo: Repository) -> dict[str, Any]:
        decisions = await run_forget(
            repo, policy, group_by=by, only=only, ids=snapshot_ids, dry_run=dry_run
        )
        pruned = await run_prune(repo) if and_prune and not dry_run else None
        return {
            "snapshots": [
                {
                    "id": d.snapshot.id.hex(),
                    "time": rfc3339(d.snapshot.time),
                    "host": d.snapshot.hostname,
                    "paths": d.snapshot.paths,
                    "tags": d.snapshot.tags,
                    "group": None if d.group is None else str(d.group),
                    "kept": d.kept,
                    "reasons": [str(r) for r in d.reasons],
                }
                for d in decisions
            ],
            "prune": pruned,
            "dry_run": dry_run,
        }

    r = repo_call(as_json, go, lock="forget", probe=True)
    if as_json:
        click.echo(json.dumps(r))
        return
    verb = "would remove" if dry_run else "removed"
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for s in r["snapshots"]:
        groups.setdefault(s["group"], []).append(s)
    for name, rows in groups.items():
        kept = [s for s in rows if s["kept"]]
        gone = [s for s in rows if not s["kept"]]
        if name is not None:
            click.echo(f"snapshots of {name}:")
        if kept:
            emit_table(
                f"keep {plural(len(kept), 'snapshot')}",
                ["id", "time", "tags", "reasons"],
                (
                    (s["id"][:8], when(s["time"]), ",".join(s["tags"]), ", ".join(s["reasons"]))
                    for s in kept
                ),
            )
        click.echo(
            f"{verb} {plural(len(gone), 'snapshot')}: "
            + (" ".join(s["id"][:8] for s in gone) or "none")
        )
    if not groups:
        click.echo("no snapshot matches: nothing to forget")
    if r["prune"] is not None:
        _print_prune(r["prune"])


@click.command()
@click.argument("snapshot_ids", nargs=-1)
@click.option("--add", multiple=True, help="Add these tags (a,b).")
@click.option("--remove", multiple=True, help="Remove these tags (a,b).")
@click.option("--set", "set_to", multiple=True, help="Replace the tags with these (a,b).")
@selection_options
@click.option("--json", "as_json", is_flag=True)
def tag(
    snapshot_ids: tuple[str, ...],
    add: tuple[str, ...],
    remove: tuple[str, ...],
    set_to: tuple[str, ...],
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add, remove or set the tags of SNAPSHOT_IDS (or of those the filters select)."""
    from peerbak.services.tags import retag

    def split(values: tuple[str, ...]) -> list[str]:
        return [t for v in values for t in v.split(",") if t]

    only = selection(hosts, paths, tags)

    async def go(repo: Repository) -> list[dict[str, Any]]:
        changed = await retag(
            repo,
            snapshot_ids,
            add=split(add),
            remove=split(remove),
            set_to=split(set_to) if set_to else None,
            only=only,
        )
        return [{"id": s.id.hex(), "tags": s.tags} for s in changed]

    rows = repo_call(as_json, go, lock="tag")
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"{row['id'][:8]}: {','.join(row['tags']) or '(no tags)'}")
    click.echo(f"{plural(len(rows), 'snapshot')} changed")


def _share(text: str) -> float:
    value = text.strip().rstrip("%")
    try:
        share = float(value) / 100
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise InputError(f"--repack-below wants a share such as 50%, not {text!r}")
    return share


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

    below = run(as_json, lambda: _share(repack_below))
    r = repo_call(
        as_json, lambda repo: run_prune(repo, dry_run=dry_run, repack_below=below), lock="prune"
    )
    if as_json:
        click.echo(json.dumps(r))
    else:
        _print_prune(r)


def _print_prune(r: dict[str, Any]) -> None:
    verb = "would delete" if r["dry_run"] else "deleted"
    click.echo(
        f"{plural(r['snapshots'], 'snapshot')} use {r['chunks_used']} chunks and trees; "
        f"{r['packs_unused']} of {plural(r['packs'], 'pack')} unused: {verb} "
        f"{r['packs_deleted'] if not r['dry_run'] else r['packs_unused']}"
    )
    if r["packs_repacked"]:
        click.echo(
            f"{plural(r['packs_repacked'], 'mostly unused pack')} repacked "
            f"({human_size(r['bytes_repacked'])} of used data copied into new packs)"
        )
    if r["packs_partly_used"]:
        click.echo(
            f"{plural(r['packs_partly_used'], 'pack')} partly used and kept whole "
            f"({human_size(r['bytes_unused_kept'])} of unused data in them)"
        )


COMMANDS = (status, check, challenge, repair, undelete, forget, prune, tag)
