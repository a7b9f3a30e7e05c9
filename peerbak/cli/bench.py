"""Measuring and trying peerbak without a pool of one's own: the ``benchmark`` group,
``demo`` (a throwaway pool) and ``simulate`` (durability over years)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from peerbak.cli.kit import (
    emit_table,
    human_size,
    json_rows,
    parse_pairs,
    parse_size,
    repo_call,
    run,
)
from peerbak.core.errors import InputError

if TYPE_CHECKING:
    from peerbak.services.repository import Repository


@click.command()
@click.option("--source", type=click.Path(exists=True, file_okay=False), help="Back up this tree.")
@click.option("--size", default="256MiB", show_default=True, help="Size of the generated tree.")
@click.option("--keep", is_flag=True, help="Leave the pool's directory behind.")
@click.option("--json", "as_json", is_flag=True)
def demo(source: str | None, size: str, keep: bool, as_json: bool) -> None:
    """A throwaway pool of 6 nodes: back up, kill 2 friends, restore, compare."""
    from peerbak.tools.demo import run_demo

    def say(text: str) -> None:
        if not as_json:
            click.echo(text)

    report = run(
        as_json,
        lambda: run_demo(Path(source) if source else None, parse_size(size), keep=keep, say=say),
    )
    if as_json:
        click.echo(json.dumps(report))
        return
    r = report
    served = ", ".join(f"{k} ({v} shards)" for k, v in sorted(r["served_by"].items()))
    click.echo(
        f"\nBacked up {r['files']} files, {human_size(r['bytes'])}, {r['k']}-of-{r['n']}: "
        f"{human_size(r['stored_bytes'])} on friends' disks, in {r['backup_seconds']:.1f} s "
        f"({r['backup_mb_s']} MB/s)\n"
        f"Killed {' and '.join(r['killed'])}; restored in {r['restore_seconds']:.1f} s "
        f"({r['restore_mb_s']} MB/s) from {served}\n"
        "Restored tree is identical: contents, types, modes, mtimes and links."
    )


@click.group()
def benchmark() -> None:
    """Measure speed and memory of the data path."""


@benchmark.command("codec")
@click.option("--pairs", default="2/3,3/5,4/6,6/10,10/16", show_default=True, help="k/n pairs.")
@click.option("--size", default="16MiB", show_default=True, help="Pack size to code.")
@click.option("--seconds", default=1.0, show_default=True, help="Time per measurement.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def benchmark_codec(pairs: str, size: str, seconds: float, as_json: bool) -> None:
    """Erasure code MB/s on one core: encode, decode with data shards missing, rebuild."""
    from peerbak.tools.benchmark import bench_codec

    rows = run(as_json, lambda: bench_codec(parse_pairs(pairs), parse_size(size), seconds))
    if json_rows(as_json, rows):
        return
    emit_table(
        f"erasure code, {size} pack, one core (MB/s of pack data)",
        ["k/n", "encode", "decode (all data)", "decode (data missing)", "rebuild one shard"],
        (
            (
                f"{r['k']}/{r['n']}",
                r["encode_mb_s"],
                r["decode_all_data_mb_s"],
                f"{r['decode_missing_mb_s']} ({r['data_shards_missing']} missing)",
                r["rebuild_one_mb_s"],
            )
            for r in rows
        ),
    )


@benchmark.command("pipeline")
@click.option(
    "--data",
    "kinds",
    type=click.Choice(["all", "incompressible", "text", "mixed"]),
    default="all",
    show_default=True,
    help="Generated dataset.",
)
@click.option("--size", default="256MiB", show_default=True, help="Bytes per dataset.")
@click.option("--source", type=click.Path(exists=True, file_okay=False), help="Use a real tree.")
@click.option("-k", "k", default=3, show_default=True, help="Shards needed to rebuild a pack.")
@click.option("-n", "n", default=5, show_default=True, help="Shards stored per pack.")
@click.option(
    "--threads", default=0, show_default=True, help="Sealing threads (0: in the reading thread)."
)
@click.option("--fsync/--no-fsync", default=True, show_default=True, help="Durable shard writes.")
@click.option(
    "--holders-verify",
    is_flag=True,
    help="Also run the holders' Merkle check of every shard put on these cores.",
)
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put temporary data.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def benchmark_pipeline(
    kinds: str,
    size: str,
    source: str | None,
    k: int,
    n: int,
    threads: int,
    fsync: bool,
    holders_verify: bool,
    workdir: str | None,
    as_json: bool,
) -> None:
    """The whole data path: files → chunks → packs → shards in n holder directories → back."""
    from peerbak.tools.benchmark import KINDS, bench_pipeline

    def go() -> list[dict[str, Any]]:
        selected = list(KINDS) if kinds == "all" else [kinds]
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        return bench_pipeline(
            selected,
            parse_size(size),
            k=k,
            n=n,
            threads=threads,
            durable=fsync,
            holders_verify=holders_verify,
            source=Path(source) if source else None,
            workdir=Path(workdir) if workdir else None,
        )

    rows = run(as_json, go)
    if json_rows(as_json, rows):
        return
    emit_table(
        f"data path, {k}-of-{n}, fsync {'on' if fsync else 'off'}, "
        f"holders' check {'here' if holders_verify else 'elsewhere'}",
        ["data", "MiB in", "backup MB/s", "cores", "RSS MiB", "stored/in", "restore MB/s", "RSS"],
        (
            (
                r["data"],
                round(r["backup"]["bytes_in"] / (1 << 20)),
                r["backup"]["mb_s"],
                r["backup"]["cores_used"],
                r["backup"]["peak_rss_mib"],
                r["backup"]["ratio_stored_to_input"],
                r["restore"]["mb_s"],
                r["restore"]["peak_rss_mib"],
            )
            for r in rows
        ),
    )
    stages = sorted({s for r in rows for s in r["backup"]["stage_seconds"]})
    emit_table(
        "backup seconds per stage (summed over threads)",
        ["data", *stages],
        ((r["data"], *(r["backup"]["stage_seconds"].get(s, 0) for s in stages)) for r in rows),
    )


@benchmark.command("transport")
@click.option("--size", default="512MiB", show_default=True, help="Bytes of shards per run.")
@click.option("--streams", default="1,4", show_default=True, help="Parallel puts per run.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where the two nodes live.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def benchmark_transport(size: str, streams: str, workdir: str | None, as_json: bool) -> None:
    """Shard put MB/s between two local daemons over SSH (verified and fsynced)."""
    from peerbak.tools.benchmark import bench_transport

    def go() -> list[dict[str, Any]]:
        counts = [int(x) for x in streams.split(",") if x.strip().isdigit()]
        if not counts or any(not 1 <= c <= 64 for c in counts):
            raise InputError(f"--streams wants numbers 1..64 separated by commas, got {streams!r}")
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        return bench_transport(parse_size(size), counts, Path(workdir) if workdir else None)

    rows = run(as_json, go)
    if json_rows(as_json, rows):
        return
    emit_table(
        "shard puts over SSH on 127.0.0.1 (holder verifies and fsyncs)",
        ["streams", "MiB", "seconds", "MB/s", "cipher"],
        (
            (r["streams"], round(r["bytes"] / (1 << 20)), r["seconds"], r["mb_s"], r["cipher"])
            for r in rows
        ),
    )


@benchmark.command("backup")
@click.option("--size", default="1GiB", show_default=True, help="Size of the generated tree.")
@click.option("--source", type=click.Path(exists=True, file_okay=False), help="Use a real tree.")
@click.option("--restic/--no-restic", default=True, show_default=True, help="Run restic too.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put pool and repo.")
@click.option("--json", "as_json", is_flag=True)
def benchmark_backup(
    size: str, source: str | None, restic: bool, workdir: str | None, as_json: bool
) -> None:
    """peerbak to a local pool of 5 friends (3-of-5) against restic to a local repo."""
    from peerbak.tools.compare import bench_backup

    def say(text: str) -> None:
        if not as_json:
            click.echo(text, err=True)

    def go() -> dict[str, Any]:
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        return bench_backup(
            parse_size(size),
            Path(source) if source else None,
            Path(workdir) if workdir else None,
            restic,
            say,
        )

    result = run(as_json, go)
    if as_json:
        click.echo(json.dumps(result))
        return
    steps = result["steps"]
    emit_table(
        f"{result['files']} files, {human_size(result['bytes'])}: seconds (CPU s, peak RSS MiB)",
        ["step", "peerbak", "friends' CPU s", "restic", "ratio"],
        (
            (
                name,
                f"{r['peerbak_s']} ({r['peerbak_cpu_s']:.1f}, {r['peerbak_rss_mib']:.0f})",
                r["friends_cpu_s"],
                f"{r['restic_s']} ({r['restic_cpu_s']:.1f}, {r['restic_rss_mib']:.0f})"
                if "restic_s" in r
                else "-",
                r.get("ratio", "-"),
            )
            for name, r in steps.items()
        ),
    )


@benchmark.command("care")
@click.option("--files", default=100_000, show_default=True, help="Small files (a chunk each).")
@click.option("--challenges", default=20, show_default=True, help="Challenges per friend.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put the pool.")
@click.option("--json", "as_json", is_flag=True)
def benchmark_care(files: int, challenges: int, workdir: str | None, as_json: bool) -> None:
    """Challenge cost (wire bytes, holder CPU) and prune's time and peak RSS."""
    from peerbak.tools.bench_care import bench_care

    def say(text: str) -> None:
        if not as_json:
            click.echo(text, err=True)

    result = run(
        as_json,
        lambda: bench_care(files, challenges, Path(workdir) if workdir else None, say),
    )
    if as_json:
        click.echo(json.dumps(result))
        return
    emit_table(
        f"{result['files']} files, {result['chunks_before_prune']} chunks before prune",
        ["step", "seconds", "CPU s", "peak RSS MiB"],
        ((name, r["s"], r["cpu_s"], r["rss_mib"]) for name, r in result["steps"].items()),
    )
    click.echo(
        f"{result['challenges_passed']} of {result['challenges']} challenges passed: "
        f"{result['wire_bytes_per_challenge']} bytes on the wire and "
        f"{result['holder_cpu_ms_per_challenge']} ms of holder CPU each (SSH included)"
    )


async def _pool_scenario(repo: Repository) -> Path:
    """This pool as a simulator scenario (its members, their observed uptime, its code),
    written into the node's run directory."""
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
    path: Path = repo.home.scratch_dir / "pool-scenario.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


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
        argv.insert(0, str(repo_call("--json" in argv, _pool_scenario)))
    # The simulator is a program of its own: its exit status is this command's.
    sys.exit(simulate_main(argv))


COMMANDS = (benchmark, demo, simulate)
