"""Making and reading backups: ``backup``, ``snapshots``, ``ls``, ``restore`` and ``stats``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from peerbak.cli.kit import (
    emit_table,
    fail,
    human_size,
    parse_pairs,
    parse_size,
    quiet,
    repo_call,
    rfc3339,
    run,
    selection,
    selection_options,
    when,
)
from peerbak.core.errors import InputError, PartialBackup, PartialRestore
from peerbak.core.words import plural

if TYPE_CHECKING:
    from peerbak.core.objects import Snapshot
    from peerbak.services.repository import Repository


def _shards(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    pairs = parse_pairs(text)
    if len(pairs) != 1:
        raise InputError(f"--shards takes one k/n pair (like 3/5), not {text!r}")
    return pairs[0]


def _pack_size(text: str | None) -> int:
    if text is None:
        return 16 << 20
    size = parse_size(text)
    if not 64 << 10 <= size <= 16 << 20:
        raise InputError(f"--pack-size must be between 64KiB and 16MiB, not {text}")
    return size


class _Progress:
    """restic's progress: a line on a terminal, JSON status lines under --json."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stderr.isatty() and not as_json and not quiet()
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
            f"{rate / 1e6:.0f} MB/s{eta}  {plural(status['errors'], 'error')}"
        )
        click.echo("\r" + line[:150].ljust(100), nl=False, err=True)
        self.shown = True

    def done(self) -> None:
        if self.shown:
            click.echo("", err=True)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--files-from",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="File of paths to back up, one per line (# comments), besides PATHS.",
)
@click.option("--stdin", "from_stdin", is_flag=True, help="Back up what standard input holds.")
@click.option(
    "--stdin-filename",
    default="stdin",
    show_default=True,
    help="The name --stdin's file gets in the snapshot.",
)
@click.option("-e", "--exclude", multiple=True, help="Gitignore-style pattern to leave out.")
@click.option("--iexclude", multiple=True, help="As --exclude, ignoring case.")
@click.option(
    "--exclude-if-present",
    multiple=True,
    help="Leave out directories holding this file (NAME or NAME:first-line).",
)
@click.option("--exclude-caches", is_flag=True, help="Leave out directories with a CACHEDIR.TAG.")
@click.option("--exclude-larger-than", help="Leave out files larger than this, e.g. 2GiB.")
@click.option(
    "--exclude-file",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="File of exclude patterns, one per line.",
)
@click.option("-x", "--one-file-system", is_flag=True, help="Do not cross mount points.")
@click.option("--tag", multiple=True, help="Tag the snapshot (repeatable).")
@click.option("--host", default="", help="The snapshot's host name (default: this machine's).")
@click.option("-n", "--dry-run", is_flag=True, help="Read and chunk, store nothing.")
@click.option("--shards", help="k/n, e.g. 3/5 (default: from the pool's size).")
@click.option("--pack-size", help="Target size of data packs (default 16MiB; 64KiB..16MiB).")
@click.option("--json", "as_json", is_flag=True, help="Status and summary as JSON lines.")
def backup(
    paths: tuple[str, ...],
    files_from: tuple[str, ...],
    from_stdin: bool,
    stdin_filename: str,
    exclude: tuple[str, ...],
    iexclude: tuple[str, ...],
    exclude_if_present: tuple[str, ...],
    exclude_caches: bool,
    exclude_larger_than: str | None,
    exclude_file: tuple[str, ...],
    one_file_system: bool,
    tag: tuple[str, ...],
    host: str,
    dry_run: bool,
    shards: str | None,
    pack_size: str | None,
    as_json: bool,
) -> None:
    """Back PATHS up to the pool: encrypted, erasure-coded, spread over members."""
    from peerbak.services.backup import run_backup

    progress = _Progress(as_json)

    def warn(message: str) -> None:
        if as_json:
            click.echo(json.dumps({"message_type": "error", "error": message}))
        else:
            click.echo(("\n" if progress.shown else "") + f"warning: {message}", err=True)

    def lines_of(name: str, what: str) -> list[str]:
        try:
            return Path(name).read_text().splitlines()
        except OSError as exc:
            raise InputError(f"cannot read {what} {name}: {exc.strerror}") from None

    def options() -> dict[str, Any]:
        patterns = list(exclude)
        for name in exclude_file:
            patterns += lines_of(name, "exclude file")
        listed = [
            line.strip()
            for name in files_from
            for line in lines_of(name, "--files-from file")
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not paths and not listed and not from_stdin:
            raise InputError("give PATHS to back up, or --files-from with paths in it")
        return {
            "paths": [Path(p) for p in (*paths, *listed)],
            "stdin": (stdin_filename, sys.stdin.buffer) if from_stdin else None,
            "excludes": patterns,
            "iexcludes": list(iexclude),
            "exclude_if_present": list(exclude_if_present),
            "exclude_caches": exclude_caches,
            "exclude_larger_than": parse_size(exclude_larger_than) if exclude_larger_than else 0,
            "one_file_system": one_file_system,
            "tags": list(tag),
            "host": host,
            "dry_run": dry_run,
            "code": _shards(shards),
            "pack_size": _pack_size(pack_size),
        }

    chosen = run(as_json, options)

    async def go(repo: Repository) -> dict[str, Any]:
        return await run_backup(
            repo,
            on_status=progress if as_json or progress.tty else None,
            warn=warn,
            **chosen,
        )

    try:
        summary = repo_call(as_json, go, lock="backup")
    finally:
        progress.done()
    summary.pop("warnings", None)
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet():
        s = summary
        click.echo(
            f"Files: {s['files_new']} new, {s['files_changed']} changed, "
            f"{s['files_unmodified']} unmodified\n"
            f"Dirs: {s['dirs']}\n"
            f"Added to the pool: {human_size(s['data_added'])} new data, "
            f"{human_size(s['stored_added'])} stored with redundancy ({s['k']}-of-{s['n']}, "
            f"{plural(s['packs_added'], 'pack')})\n"
            f"Processed {plural(s['total_files_processed'], 'file')}, "
            f"{human_size(s['total_bytes_processed'])} in {_clock(s['total_duration'])}\n"
            + (
                "Dry run: nothing was stored."
                if s["dry_run"]
                else f"snapshot {s['snapshot_id'][:8]} saved "
                f"(manifest on {s['manifest_copies']} of {plural(s['members'], 'member')}"
                + (f"; missed: {', '.join(s['members_missed'])})" if s["members_missed"] else ")")
            )
        )
    if summary["errors"]:
        fail(as_json, PartialBackup(f"{summary['errors']} source files could not be read"))


@click.command()
@selection_options
@click.option("--latest", type=int, default=0, help="Only the last N of each host and path set.")
@click.option(
    "--group-by",
    default="",
    help="Show the snapshots in groups: any of host, paths, tags (comma-separated).",
)
@click.option("--json", "as_json", is_flag=True)
def snapshots(
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    latest: int,
    group_by: str,
    as_json: bool,
) -> None:
    """List this node's snapshots (those the filters select), in groups with --group-by
    as forget makes them."""
    from peerbak.core.retention import GROUP_BY_DEFAULT, group, parse_group_by

    only = selection(hosts, paths, tags)
    by = run(as_json, lambda: parse_group_by(group_by))

    def key(s: Snapshot) -> tuple[str, list[str], list[str]]:
        return s.hostname, s.paths, s.tags

    async def go(repo: Repository) -> list[Snapshot]:
        chosen = [s for s in await repo.snapshots() if s in only]
        if latest > 0:
            last = {
                s.id
                for _, members in group(chosen, GROUP_BY_DEFAULT, key=key)
                for s in sorted(members, key=lambda s: s.time)[-latest:]
            }
            chosen = [s for s in chosen if s.id in last]
        return chosen

    chosen = repo_call(as_json, go)
    groups = group(chosen, by, key=key) if by else [(None, chosen)]
    if as_json:
        if not by:  # restic's flat list
            click.echo(json.dumps([_snapshot_row(s) for s in chosen]))
            return
        click.echo(
            json.dumps(
                [
                    {
                        "group_key": {
                            "hostname": k.host or "",
                            "paths": list(k.paths or ()),
                            "tags": list(k.tags or ()),
                        },
                        "snapshots": [_snapshot_row(s) for s in members],
                    }
                    for k, members in groups
                    if k is not None
                ]
            )
        )
        return
    for k, members in groups:
        if k is not None:
            click.echo(f"snapshots of {k}:")
        emit_table(
            plural(len(members), "snapshot"),
            ["id", "time", "host", "tags", "paths", "files", "size", "k/n"],
            (
                (
                    s.short,
                    when(s.time),
                    s.hostname,
                    ",".join(s.tags),
                    "\n".join(s.paths),
                    s.summary.total_files,
                    human_size(s.summary.total_bytes),
                    f"{s.k}/{s.n}",
                )
                for s in members
            ),
        )


def _snapshot_row(s: Snapshot) -> dict[str, Any]:
    import msgspec

    return {
        "id": s.id.hex(),
        "short_id": s.short,
        "time": rfc3339(s.time),
        "hostname": s.hostname,
        "paths": s.paths,
        "tags": s.tags,
        "tree": s.tree.hex(),
        "parent": s.parent.hex(),
        "k": s.k,
        "n": s.n,
        "summary": msgspec.structs.asdict(s.summary),
    }


@click.command()
@click.argument("snapshot")
@click.argument("path", required=False, default="/")
@click.option("-l", "--long", "long_", is_flag=True, help="Mode, size and time too.")
@selection_options
@click.option("--json", "as_json", is_flag=True)
def ls(
    snapshot: str,
    path: str,
    long_: bool,
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    as_json: bool,
) -> None:
    """List the files of SNAPSHOT (below PATH; SNAPSHOT:DIR works too, and latest is the
    newest of those the filters select)."""
    from peerbak.core.selection import split_ref
    from peerbak.services.restore import list_tree

    ref, sub = split_ref(snapshot)
    only = selection(hosts, paths, tags)

    async def go(repo: Repository) -> list[dict[str, Any]]:
        snap = await repo.find_snapshot(ref, only)
        below = sub + ("/" + path.strip("/") if path.strip("/") else "") if sub else path
        return [row async for row in list_tree(repo, snap, below)]

    rows = repo_call(as_json, go)
    for row in rows:
        if as_json:
            click.echo(json.dumps({**row, "mtime": rfc3339(row["mtime_ns"] / 1e9)}))
        elif long_:
            stamp = when(row["mtime_ns"] / 1e9)
            click.echo(f"{row['permissions']} {row['size']:>12} {stamp} {row['path']}")
        else:
            click.echo(row["path"])


@click.command()
@click.argument("snapshot")
@click.option("-t", "--target", required=True, type=click.Path(file_okay=False))
@click.option("-i", "--include", multiple=True, help="Only paths matching (gitignore style).")
@click.option("-e", "--exclude", multiple=True, help="Not paths matching (gitignore style).")
@click.option("--verify", is_flag=True, help="Read every restored file back and check it.")
@selection_options
@click.option("--json", "as_json", is_flag=True)
def restore(
    snapshot: str,
    target: str,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    verify: bool,
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    as_json: bool,
) -> None:
    """Restore SNAPSHOT (an id prefix, or latest: the newest of those the filters
    select) into --target DIR; SNAPSHOT:DIR restores that directory's contents."""
    from peerbak.services.restore import run_restore

    only = selection(hosts, paths, tags)
    summary = repo_call(
        as_json,
        lambda repo: run_restore(
            repo,
            snapshot,
            Path(target),
            list(include) or None,
            only,
            list(exclude) or None,
            verify=verify,
        ),
    )
    code = summary.pop("exit_code")
    if as_json:
        click.echo(json.dumps(summary))
    elif quiet():
        for error in summary["errors"]:
            click.echo(f"{'error' if code else 'warning'}: {error}", err=True)
    else:
        served = ", ".join(f"{k} ({plural(v, 'shard')})" for k, v in summary["served_by"].items())
        text = (
            f"Restored snapshot {summary['snapshot_id'][:8]} to {summary['target']}: "
            f"{plural(summary['files_restored'], 'file')}, "
            f"{human_size(summary['bytes_restored'])} in {summary['total_duration']:.1f} s "
            f"({summary['mb_per_s']} MB/s)\n"
            f"Served by: {served}"
        )
        for name, why in summary["down"].items():
            text += f"\nUnreachable: {name} ({why})"
        click.echo(text)
        for error in summary["errors"]:
            click.echo(f"{'error' if code else 'warning'}: {error}", err=True)
    if code:
        fail(as_json, PartialRestore("some files were not restored", exit_code=code))


@click.command()
@click.argument("snapshot")
@click.argument("path")
@selection_options
def dump(
    snapshot: str, path: str, hosts: tuple[str, ...], paths: tuple[str, ...], tags: tuple[str, ...]
) -> None:
    """Write the file PATH of SNAPSHOT to standard output (a directory as a tar stream)."""
    import sys

    from peerbak.core.selection import split_ref
    from peerbak.services.dump import dump as run_dump

    ref, sub = split_ref(snapshot)
    only = selection(hosts, paths, tags)
    out = sys.stdout.buffer

    async def go(repo: Repository) -> int:
        snap = await repo.find_snapshot(ref, only)
        return await run_dump(repo, snap, f"{sub}/{path.strip('/')}", out.write)

    repo_call(False, go)
    out.flush()


@click.command()
@click.argument("patterns", nargs=-1, required=True)
@selection_options
@click.option("--json", "as_json", is_flag=True)
def find(
    patterns: tuple[str, ...],
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    as_json: bool,
) -> None:
    """Entries of every snapshot (the filters select) whose name matches a PATTERN
    (shell wildcards; a pattern with a / matches the whole path)."""
    from peerbak.services.dump import find as run_find

    only = selection(hosts, paths, tags)

    async def go(repo: Repository) -> list[dict[str, Any]]:
        snaps = sorted((s for s in await repo.snapshots() if s in only), key=lambda s: s.time)
        return [row async for row in run_find(repo, snaps, list(patterns))]

    rows = [{**r, "mtime": rfc3339(r["mtime_ns"] / 1e9)} for r in repo_call(as_json, go)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    last = ""
    for row in rows:
        if row["snapshot"] != last:
            last = row["snapshot"]
            click.echo(f"snapshot {last[:8]}:")
        click.echo(f"  {row['path']}  ({row['type']}, {human_size(row['size'])})")
    if not rows:
        click.echo("no match", err=True)


@click.command()
@click.argument("old")
@click.argument("new")
@selection_options
@click.option("--json", "as_json", is_flag=True)
def diff(
    old: str,
    new: str,
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    as_json: bool,
) -> None:
    """What changed from snapshot OLD to NEW (SNAPSHOT:DIR compares two directories;
    latest is the newest of those the filters select): + added, - removed, M modified,
    U metadata only, T type changed."""
    from peerbak.core.selection import split_ref
    from peerbak.services.dump import diff as run_diff

    (old_ref, old_dir), (new_ref, new_dir) = split_ref(old), split_ref(new)
    only = selection(hosts, paths, tags)

    async def go(repo: Repository) -> list[dict[str, Any]]:
        a, b = await repo.find_snapshot(old_ref, only), await repo.find_snapshot(new_ref, only)
        return [row async for row in run_diff(repo, a, b, old_dir, new_dir)]

    rows = repo_call(as_json, go)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"{row['change']}    {row['path']}")
    counts = {m: sum(1 for r in rows if r["change"] == m) for m in "+-MUT"}
    added = sum(r["size_change"] for r in rows if r["size_change"] > 0)
    removed = -sum(r["size_change"] for r in rows if r["size_change"] < 0)
    click.echo(
        f"\n{counts['+']} added, {counts['-']} removed, {counts['M']} modified, "
        f"{counts['U']} with new metadata, {counts['T']} of another type; "
        f"{human_size(added)} more, {human_size(removed)} less"
    )


@click.command()
@click.argument("snapshot", required=False)
@click.option("--json", "as_json", is_flag=True)
def stats(snapshot: str | None, as_json: bool) -> None:
    """Sizes: as files, deduplicated, compressed into packs, stored with redundancy; what
    each snapshot added and what each member holds."""
    from peerbak.services.stats import run_stats

    info = repo_call(as_json, lambda repo: run_stats(repo, snapshot))
    for row in info["added_by_snapshot"]:
        row["time"] = rfc3339(row["time"])
    if as_json:
        click.echo(json.dumps(info))
        return
    what = (
        f"snapshot {info['snapshot'][:8]}"
        if info["snapshot"]
        else (f"all {plural(info['snapshots'], 'snapshot')}")
    )
    click.echo(
        f"{what}: {plural(info['files'], 'file')}\n"
        f"  logical size:  {human_size(info['logical_bytes'])}\n"
        f"  deduplicated:  {human_size(info['deduplicated_bytes'])}  (data and trees)\n"
        f"  in packs:      {human_size(info['packed_bytes'])}"
        f"  compression {info['compression_ratio']:.2f}×\n"
        f"  stored:        {human_size(info['stored_bytes'])}"
        f"  redundancy {info['redundancy']:.2f}× (the packs' shards on members' disks)"
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


COMMANDS = (backup, snapshots, ls, restore, dump, find, diff, stats)
