"""The ``peerbak`` command: parse, call one service, render, exit with a documented code.

Exit codes (an unknown code MUST be treated as a failure by scripts):

====  ==============================================================
0     success
1     failure not covered below
2     bad command line (unknown option, missing argument)
3     backup saved, but some source files could not be read
64    malformed input: a recovery key, a token, an id
65    integrity: bytes failed a check; or a write-once conflict
66    not found: no such shard, snapshot or member
69    not enough shards to rebuild a pack
70    internal error (a bug: please report it with ``--debug`` output)
74    local storage or ledger trouble (disk full, permissions, SQLite)
75    a peer is unavailable, or another backup of this node runs: try again later
76    a peer broke the protocol
78    configuration error
130   interrupted
====  ==============================================================

With ``--json``, a failing command writes one last line to stderr:
``{"message_type": "exit_error", "code": <exit code>, "error": <name>, "message": <text>}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from peerbak import __version__
from peerbak.cli.kit import (
    EXIT_INTERRUPTED,
    emit,
    emit_table,
    exit_with,
    home_path,
    human_size,
    json_rows,
    open_home,
    parse_size,
    repo_call,
    run,
)
from peerbak.core.errors import InputError

if TYPE_CHECKING:
    from peerbak.adapters.home import Home


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="peerbak")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False),
    help="Node home (default: $PEERBAK_HOME, else the platform's data directory).",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, home: str | None) -> None:
    """peerbak: back up to a pool of friends, encrypted and erasure-coded over SSH."""
    ctx.obj = home


@cli.command()
@click.option("--name", default="", help="How friends see this node.")
@click.option("--port", default=7420, show_default=True, help="SSH port (0: OS-chosen).")
@click.option("--listen", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104
@click.option("--no-lan", is_flag=True, help="Turn LAN discovery (mDNS) off.")
@click.option("--json", "as_json", is_flag=True)
def init(name: str, port: int, listen: str, no_lan: bool, as_json: bool) -> None:
    """Create a node: its secret, config and ledger. Shows the recovery key once."""
    from peerbak.adapters.home import Home
    from peerbak.core import pool as pool_mod
    from peerbak.core.config import default_config_text
    from peerbak.core.crypto import NodeKeys
    from peerbak.core.textcode import encode_recovery_key

    def go() -> dict[str, Any]:
        secret = os.urandom(32)
        keys = NodeKeys.derive(secret)
        text = default_config_text(name, port).replace(
            'listen = "0.0.0.0"', f"listen = {json.dumps(listen)}"
        )
        if no_lan:
            text = text.replace("lan = true", "lan = false")
        home = Home.create(home_path(), secret, text)
        asyncio.run(_init_ledger(home))
        key_text = encode_recovery_key(secret)
        txt, png = home.write_recovery_kit(key_text, keys.node_id, name)
        return {
            "home": str(home.root),
            "node": keys.node_id.hex(),
            "ssh_key_fingerprint": _fingerprint(pool_mod.ssh_public_key(keys)),
            "recovery_key": key_text,
            "recovery_kit": [str(txt), str(png)],
        }

    info = run(as_json, go)
    emit(
        as_json,
        info,
        f"Created node {info['node'][:12]} in {info['home']}\n\n"
        f"Your recovery key (shown once; it is also in {info['recovery_kit'][0]}):\n\n"
        f"    {info['recovery_key']}\n\n"
        "Write it down or print the kit and keep it away from this machine: with it and\n"
        "one friend's address you can get everything back if this machine is lost.\n"
        "Next: `peerbak daemon`, then `peerbak invite` (start a pool) or `peerbak join TOKEN`.",
    )


def _fingerprint(raw: bytes) -> str:
    from peerbak.adapters.transport import fingerprint

    return fingerprint(raw)


async def _init_ledger(home: Home) -> None:
    from peerbak.adapters.ledger import Ledger

    ledger = await Ledger.open(home.ledger_path, create=True)
    await ledger.close()


@cli.command()
def daemon() -> None:
    """Run the node in the foreground (systemd: Type=notify)."""
    import logging

    from peerbak.node.daemon import run_daemon

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # one line per connection is noise
    home = run(False, open_home)
    run(False, lambda: asyncio.run(run_daemon(home)))


def _control(request: dict[str, Any]) -> dict[str, Any]:
    from peerbak.adapters.control import DaemonNotRunning, call
    from peerbak.adapters.ledger import check_file

    home = open_home()
    try:
        return call(home.control_socket, request)
    except DaemonNotRunning:
        # A daemon that cannot start because its ledger is damaged: say that instead.
        if home.ledger_path.exists():
            check_file(home.ledger_path)
        raise


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def peers(ctx: click.Context, as_json: bool) -> None:
    """Members: state, last seen, uptime, latency, challenges, bytes each way."""
    if ctx.invoked_subcommand is not None:
        return
    from peerbak.cli.care import peers_table

    peers_table(as_json)


@peers.command("trust")
@click.argument("node")
@click.option("--json", "as_json", is_flag=True)
def peers_trust(node: str, as_json: bool) -> None:
    """Trust a member that failed challenges again (after its disk was fixed)."""
    from peerbak.cli.care import trust_again

    trust_again(node, as_json)


@peers.command("remove")
@click.argument("node")
@click.option("--json", "as_json", is_flag=True)
def peers_remove(node: str, as_json: bool) -> None:
    """Remove a member from the pool (a signed change every member applies)."""
    info = run(as_json, lambda: _control({"cmd": "remove", "node": node.lower()}))
    info.pop("ok", None)
    emit(as_json, info, _removal_text(info, "Removed"))


@cli.command(hidden=True)
@click.option("--json", "as_json", is_flag=True)
def gossip(as_json: bool) -> None:
    """Push this node's roster records to every member now (normally every 10 minutes)."""
    info = run(as_json, lambda: _control({"cmd": "gossip"}))
    emit(as_json, info, f"Told {info['members'] - 1} members what this node knows.")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def leave(as_json: bool) -> None:
    """Leave the pool: this node stops being a member for everyone."""
    info = run(as_json, lambda: _control({"cmd": "leave"}))
    info.pop("ok", None)
    emit(as_json, info, _removal_text(info, "Left the pool; removed"))


def _removal_text(info: dict[str, Any], verb: str) -> str:
    text = f"{verb} {info['removed'][:12]}."
    for member, why in info["unreached"].items():
        text += f"\n  not told yet: {member} ({why}); it will learn by gossip"
    return text


@cli.command()
@click.option("--expires", default="24h", show_default=True, help="e.g. 30min, 24h, 7d.")
@click.option("--uses", default=1, show_default=True, help="How many nodes may join with it.")
@click.option("--qr", is_flag=True, help="Also show the token as a QR code.")
@click.option("--json", "as_json", is_flag=True)
def invite(expires: str, uses: int, qr: bool, as_json: bool) -> None:
    """Print a single-use, expiring token a friend passes to `peerbak join`."""
    info = run(
        as_json,
        lambda: _control({"cmd": "invite", "ttl": parse_duration(expires), "uses": uses}),
    )
    token = info["token"]
    if as_json:
        click.echo(json.dumps({"token": token}))
        return
    click.echo(token)
    if qr:
        import segno

        segno.make(token, error="m").terminal(compact=True)


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|m|h|d)?", text.strip())
    if match is None:
        raise InputError(f"not a duration: {text!r} (try 30min, 24h or 7d)")
    scale = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}[match.group(2) or "s"]
    return float(match.group(1)) * scale


@cli.command()
@click.argument("token")
@click.option("--json", "as_json", is_flag=True)
def join(token: str, as_json: bool) -> None:
    """Join the pool a friend invited this node to."""
    from peerbak.node.server import join_pool

    home = run(as_json, open_home)
    info = run(as_json, lambda: asyncio.run(join_pool(home, token)))
    emit(
        as_json,
        info,
        f"Joined pool {info['pool'][:12]} through {info['inviter'][:12]}: "
        f"{info['members']} members.",
    )


# --- backups -------------------------------------------------------------------------------


def _shards(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    pairs = _pairs(text)
    if len(pairs) != 1:
        raise InputError(f"--shards takes one k/n pair (like 3/5), not {text!r}")
    return pairs[0]


class _Progress:
    """restic's progress: a line on a terminal, JSON status lines under --json."""

    def __init__(self, as_json: bool, verb: str) -> None:
        self.as_json = as_json
        self.verb = verb
        self.tty = sys.stderr.isatty() and not as_json
        self.shown = False

    def __call__(self, status: dict[str, Any]) -> None:
        if self.as_json:
            click.echo(json.dumps(status))
            return
        if not self.tty:
            return
        elapsed = max(status["seconds_elapsed"], 1e-9)
        done, total = status["bytes_done"], status.get("total_bytes") or 0
        rate = status["bytes_read"] / elapsed
        eta = ""
        if total and rate > 0 and status.get("scan_finished"):
            left = max(0, total - done) / max(done / elapsed, 1)
            eta = f"  ETA {_clock(left)}"
        files = f"{status['files_done']}" + (
            f"/{status['total_files']}" if status.get("total_files") else ""
        )
        of = f" / {human_size(total)}" if total else ""
        line = (
            f"[{_clock(elapsed)}] {files} files  {human_size(done)}{of}  "
            f"{rate / 1e6:.0f} MB/s{eta}  {status['errors']} errors"
        )
        click.echo("\r" + line[:150].ljust(100), nl=False, err=True)
        self.shown = True

    def done(self) -> None:
        if self.shown:
            click.echo("", err=True)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _pack_size(text: str | None) -> int:
    if text is None:
        return 16 << 20
    size = parse_size(text)
    if not 64 << 10 <= size <= 16 << 20:
        raise InputError(f"--pack-size must be between 64KiB and 16MiB, not {text}")
    return size


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-e", "--exclude", multiple=True, help="Gitignore-style pattern to leave out.")
@click.option(
    "--exclude-file",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="File of exclude patterns, one per line.",
)
@click.option("-x", "--one-file-system", is_flag=True, help="Do not cross mount points.")
@click.option("--tag", multiple=True, help="Tag the snapshot (repeatable).")
@click.option("-n", "--dry-run", is_flag=True, help="Read and chunk, store nothing.")
@click.option("--shards", help="k/n, e.g. 3/5 (default: from the pool's size).")
@click.option("--pack-size", help="Target size of data packs (default 16MiB; 64KiB..16MiB).")
@click.option("--json", "as_json", is_flag=True, help="Status and summary as JSON lines.")
def backup(
    paths: tuple[str, ...],
    exclude: tuple[str, ...],
    exclude_file: tuple[str, ...],
    one_file_system: bool,
    tag: tuple[str, ...],
    dry_run: bool,
    shards: str | None,
    pack_size: str | None,
    as_json: bool,
) -> None:
    """Back PATHS up to the pool: encrypted, erasure-coded, spread over members."""
    from peerbak.node.compose import open_repository
    from peerbak.services.backup import LOCK_WAIT, run_backup

    progress = _Progress(as_json, "backup")

    def warn(message: str) -> None:
        if as_json:
            click.echo(json.dumps({"message_type": "error", "error": message}))
        else:
            click.echo(("\n" if progress.shown else "") + f"warning: {message}", err=True)

    def go() -> dict[str, Any]:
        home = open_home()
        patterns = list(exclude)
        for name in exclude_file:
            try:
                patterns += Path(name).read_text().splitlines()
            except OSError as exc:
                raise InputError(f"cannot read exclude file {name}: {exc.strerror}") from None

        async def backup() -> dict[str, Any]:
            with home.lock("backup", wait=LOCK_WAIT):
                async with await open_repository(home) as repo:
                    return await run_backup(
                        repo,
                        [Path(p) for p in paths],
                        excludes=patterns,
                        one_file_system=one_file_system,
                        tags=list(tag),
                        dry_run=dry_run,
                        code=_shards(shards),
                        pack_size=_pack_size(pack_size),
                        on_status=progress if as_json or progress.tty else None,
                        warn=warn,
                    )

        return asyncio.run(backup())

    try:
        summary = run(as_json, go)
    finally:
        progress.done()
    summary.pop("warnings", None)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        s = summary
        click.echo(
            f"Files: {s['files_new']} new, {s['files_changed']} changed, "
            f"{s['files_unmodified']} unmodified\n"
            f"Dirs: {s['dirs']}\n"
            f"Added to the pool: {human_size(s['data_added'])} new data, "
            f"{human_size(s['stored_added'])} stored with redundancy ({s['k']}-of-{s['n']}, "
            f"{s['packs_added']} packs)\n"
            f"Processed {s['total_files_processed']} files, "
            f"{human_size(s['total_bytes_processed'])} in {_clock(s['total_duration'])}\n"
            + (
                "Dry run: nothing was stored."
                if s["dry_run"]
                else f"snapshot {s['snapshot_id'][:8]} saved "
                f"(manifest on {s['manifest_copies']} of {s['members']} members)"
            )
        )
    if summary["errors"]:
        sys.exit(3)


@cli.command()
@click.option("--tag", multiple=True, help="Only snapshots with this tag.")
@click.option("--json", "as_json", is_flag=True)
def snapshots(tag: tuple[str, ...], as_json: bool) -> None:
    """List this node's snapshots."""
    import time as _time

    async def go(repo: Any) -> list[dict[str, Any]]:
        return [
            _snapshot_row(s) for s in await repo.snapshots() if not tag or set(tag) & set(s.tags)
        ]

    rows = repo_call(as_json, go)
    if as_json:
        click.echo(json.dumps(rows))
        return
    emit_table(
        f"{len(rows)} snapshots",
        ["id", "time", "host", "tags", "paths", "files", "size", "k/n"],
        (
            (
                r["short_id"],
                _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(r["time"])),
                r["hostname"],
                ",".join(r["tags"]),
                "\n".join(r["paths"]),
                r["summary"]["total_files"],
                human_size(r["summary"]["total_bytes"]),
                f"{r['k']}/{r['n']}",
            )
            for r in rows
        ),
    )


def _snapshot_row(s: Any) -> dict[str, Any]:
    import msgspec

    return {
        "id": s.id.hex(),
        "short_id": s.short,
        "time": s.time,
        "hostname": s.hostname,
        "paths": s.paths,
        "tags": s.tags,
        "tree": s.tree.hex(),
        "parent": s.parent.hex(),
        "k": s.k,
        "n": s.n,
        "summary": msgspec.structs.asdict(s.summary),
    }


@cli.command()
@click.argument("snapshot")
@click.argument("path", required=False, default="/")
@click.option("-l", "--long", "long_", is_flag=True, help="Mode, size and time too.")
@click.option("--json", "as_json", is_flag=True)
def ls(snapshot: str, path: str, long_: bool, as_json: bool) -> None:
    """List the files of SNAPSHOT (below PATH)."""
    from peerbak.services.restore import list_tree

    async def go(repo: Any) -> list[dict[str, Any]]:
        snap = await repo.find_snapshot(snapshot)
        return [row async for row in list_tree(repo, snap, path)]

    rows = repo_call(as_json, go)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row))
        elif long_:
            click.echo(f"{row['permissions']} {row['size']:>12} {row['mtime_text']} {row['path']}")
        else:
            click.echo(row["path"])


@cli.command()
@click.argument("snapshot")
@click.option("-t", "--target", required=True, type=click.Path(file_okay=False))
@click.option("-i", "--include", multiple=True, help="Only paths matching (gitignore style).")
@click.option("--json", "as_json", is_flag=True)
def restore(snapshot: str, target: str, include: tuple[str, ...], as_json: bool) -> None:
    """Restore SNAPSHOT (an id prefix, or latest) into --target DIR."""
    from peerbak.services.restore import run_restore

    summary = repo_call(
        as_json, lambda repo: run_restore(repo, snapshot, Path(target), list(include) or None)
    )
    code = summary.pop("exit_code")
    if as_json:
        click.echo(json.dumps(summary))
        if code:
            sys.exit(code)
        return
    served = ", ".join(f"{k} ({v} shards)" for k, v in summary["served_by"].items())
    text = (
        f"Restored snapshot {summary['snapshot_id'][:8]} to {summary['target']}: "
        f"{summary['files_restored']} files, {human_size(summary['bytes_restored'])} in "
        f"{summary['total_duration']:.1f} s ({summary['mb_per_s']} MB/s)\nServed by: {served}"
    )
    for name, why in summary["down"].items():
        text += f"\nUnreachable: {name} ({why})"
    click.echo(text)
    for error in summary["errors"]:
        click.echo(f"{'error' if code else 'warning'}: {error}", err=True)
    if code:
        sys.exit(code)


@cli.command()
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


@cli.command()
@click.option("--from", "address", required=True, help="A member's HOST:PORT.")
@click.option("--key-file", type=click.Path(dir_okay=False), help="Read the recovery key here.")
@click.option("--name", default="", help="How friends see this node.")
@click.option("--port", default=7420, show_default=True, help="SSH port (0: OS-chosen).")
@click.option("--listen", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104
@click.option("--no-lan", is_flag=True, help="Turn LAN discovery (mDNS) off.")
@click.option(
    "--in-place",
    is_flag=True,
    help="Rebuild this node's damaged ledger from the pool (the damaged file is kept aside).",
)
@click.option("--json", "as_json", is_flag=True)
def recover(
    address: str,
    key_file: str | None,
    name: str,
    port: int,
    listen: str,
    no_lan: bool,
    in_place: bool,
    as_json: bool,
) -> None:
    """Rebuild this node on a new machine from its recovery key and one member."""
    from peerbak.node.recover import recover as do_recover
    from peerbak.node.recover import recover_in_place

    if in_place:
        if key_file:
            raise click.UsageError("--in-place uses this node's own secret: no --key-file")
        info = run(as_json, lambda: asyncio.run(recover_in_place(home_path(), address)))
        emit(
            as_json,
            info,
            f"Rebuilt the ledger of node {info['node'][:12]} through member "
            f"{info['through'][:12]}: {info['snapshots']} snapshots, {info['packs']} packs.\n"
            + (
                f"The damaged ledger ({info['damaged']}) is kept as "
                + ", ".join(info["kept_aside"])
                + ".\n"
                if info["kept_aside"]
                else ""
            )
            + "Start `peerbak daemon`; `peerbak snapshots` and `peerbak restore` work now.",
        )
        return

    def go() -> dict[str, Any]:
        if key_file:
            try:
                key = Path(key_file).read_text()
            except OSError as exc:
                raise InputError(f"cannot read {key_file}: {exc.strerror}") from None
        else:
            key = click.prompt("Recovery key", hide_input=True, err=True)
        return asyncio.run(
            do_recover(
                home_path(), key, address, name=name, port=port, listen=listen, lan=not no_lan
            )
        )

    info = run(as_json, go)
    emit(
        as_json,
        info,
        f"Recovered node {info['node'][:12]} into {info['home']} through member "
        f"{info['through'][:12]}: {info['snapshots']} snapshots, {info['packs']} packs.\n"
        "Start `peerbak daemon`; `peerbak snapshots` and `peerbak restore` work now.",
    )


@cli.command()
@click.argument("snapshot", required=False)
@click.option("--json", "as_json", is_flag=True)
def stats(snapshot: str | None, as_json: bool) -> None:
    """Sizes: logical, deduplicated, stored with redundancy; per snapshot and member."""
    from peerbak.services.stats import run_stats

    info = repo_call(as_json, lambda repo: run_stats(repo, snapshot))
    if as_json:
        click.echo(json.dumps(info))
        return
    what = (
        f"snapshot {info['snapshot'][:8]}"
        if info["snapshot"]
        else (f"all {info['snapshots']} snapshots")
    )
    click.echo(
        f"{what}: {info['files']} files\n"
        f"  logical size:        {human_size(info['logical_bytes'])}\n"
        f"  deduplicated:        {human_size(info['deduplicated_bytes'])}\n"
        f"  stored (redundancy): {human_size(info['stored_bytes'])}"
    )
    emit_table(
        "added by each snapshot",
        ["snapshot", "new data", "stored", "packs"],
        (
            (
                r["snapshot"][:8],
                human_size(r["data_added"]),
                human_size(r["stored_added"]),
                r["packs_added"],
            )
            for r in info["added_by_snapshot"]
        ),
    )
    emit_table(
        "held by each member",
        ["member", "name", "shards", "bytes"],
        ((m["node"][:12], m["name"], m["shards"], human_size(m["bytes"])) for m in info["members"]),
    )


@cli.command()
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
    """Compare the ledger with what members hold; optionally read and verify the data."""
    import random

    from peerbak.services.check import run_check
    from peerbak.services.drill import restore_drill as run_drill

    async def go(repo: Any) -> dict[str, Any]:
        report = await run_check(repo, read_data_subset, read_data)
        if restore_drill:
            drill = await run_drill(repo, restore_drill, random.SystemRandom(), repo.home.run_dir)
            report["drill"] = drill
            report["ok"] = report["ok"] and not drill["problems"]
        return report

    report = repo_call(as_json, go)
    if as_json:
        click.echo(json.dumps(report))
    else:
        r = report
        click.echo(
            f"{r['packs']} packs, {r['shards_expected']} shards on members: "
            f"{r['shards_missing']} missing, {r['shards_unknown']} not in the ledger "
            "(leftovers, reclaimed by the next backup)"
        )
        if read_data or read_data_subset:
            click.echo(
                f"read {r['packs_read']} packs in full: {r['shards_damaged']} damaged shards, "
                f"{r['packs_unreadable']} unreadable packs"
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
        click.echo("no errors were found" if r["ok"] else "errors were found")
    if not report["ok"]:
        sys.exit(65)


@cli.group()
def benchmark() -> None:
    """Measure speed and memory of the data path."""


def _pairs(text: str) -> list[tuple[int, int]]:
    pairs = []
    for item in text.split(","):
        k, sep, n = item.strip().partition("/")
        if not (sep and k.isdigit() and n.isdigit()):
            raise InputError(f"not a k/n pair: {item!r} (try 3/5)")
        pairs.append((int(k), int(n)))
    return pairs


@benchmark.command("codec")
@click.option("--pairs", default="2/3,3/5,4/6,6/10,10/16", show_default=True, help="k/n pairs.")
@click.option("--size", default="16MiB", show_default=True, help="Pack size to code.")
@click.option("--seconds", default=1.0, show_default=True, help="Time per measurement.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def benchmark_codec(pairs: str, size: str, seconds: float, as_json: bool) -> None:
    """Erasure code MB/s on one core: encode, decode with data shards missing, rebuild."""
    from peerbak.tools.benchmark import bench_codec

    rows = run(as_json, lambda: bench_codec(_pairs(pairs), parse_size(size), seconds))
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
    from pathlib import Path

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


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Ask glibc for at most ``arenas`` malloc arenas (no-op elsewhere).

    By default glibc gives each thread its own arena (up to 8 per core); chunk-sized
    buffers freed in one stay mapped there, and a backup's RSS then grows by tens of
    MiB per thread. Two arenas keep it flat (measured: 1 GiB backup 236 → 174 MiB).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        return


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


def _register() -> None:
    from peerbak.cli.care import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_register()


def main() -> None:
    """Console entry point: click's own usage errors exit 2, ours as documented above."""
    limit_malloc_arenas()
    # numpy's OpenBLAS starts a spinning thread per core, which peerbak never uses
    # (its codec is table lookups, not BLAS): measured at 4 % of all CPU in a transfer.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        cli.main(prog_name="peerbak", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("peerbak: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:
        exit_with(exc, "--json" in sys.argv, "--debug" in sys.argv)
