"""The backup options and the commands around them, on four real nodes (owner + three
friends, separate daemon processes on 127.0.0.1, 2-of-3): excludes, dry runs, tags,
``ls`` below a path, ``restore --include``, an unreadable source file (exit 3), the
files cache on an unchanged tree, and bad command lines.

Each test backs up a small tree of its own, so the tests do not depend on one another
(they share the pool only).
"""

from __future__ import annotations

import datetime
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerbak.tools.localpool import LocalNode, make_pool
from peerbak.tools.sample import describe

pytestmark = pytest.mark.slow

NAMES = ["owner", "f1", "f2", "f3"]
SHARDS = ("--shards", "2/3")
NOBODY = 65534  # uid and gid of nobody/nogroup


class Pool:
    def __init__(self, base: Path, nodes: list[LocalNode]) -> None:
        self.base = base
        self.nodes = nodes
        self.owner = nodes[0]
        self.friends = nodes[1:]
        self.rnd = random.Random(11)

    def source(self, name: str) -> Path:
        """A fresh directory for one test's tree."""
        path = self.base / "sources" / name
        path.mkdir(parents=True)
        return path

    def write(self, path: Path, size: int) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.rnd.randbytes(size))
        return path

    def backup(self, *args: str) -> dict[str, Any]:
        summary: dict[str, Any] = self.owner.cli("backup", *SHARDS, *args)
        return summary

    def snapshots(self, *args: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.owner.cli("snapshots", *args)
        return rows

    def ls(self, *args: str) -> list[dict[str, Any]]:
        """``ls --json`` prints one object per line: all of them."""
        out: subprocess.CompletedProcess[str] = self.owner.cli("ls", *args, check=False)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def restore(self, snapshot: str, target: Path, *args: str) -> dict[str, Any]:
        summary: dict[str, Any] = self.owner.cli(
            "restore", snapshot, "--target", str(target), *args
        )
        return summary

    def packs(self) -> int:
        db = sqlite3.connect(f"file:{self.owner.home / 'ledger.sqlite'}?mode=ro", uri=True)
        try:
            (count,) = db.execute("SELECT COUNT(*) FROM packs").fetchone()
        finally:
            db.close()
        return int(count)

    def held_files(self) -> dict[str, set[Path]]:
        """Every friend's shard files for the owner."""
        owner = self.owner.info["node"]
        return {
            f.name: {p for p in (f.home / "held" / owner / "shards").rglob("*") if p.is_file()}
            for f in self.friends
        }


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    # Not under pytest's own temporary directory (0700): the unreadable-file test runs
    # the backup as an unprivileged user when the tests run as root, who must reach it.
    base = Path(tempfile.mkdtemp(prefix="pbk-opts-"))
    base.chmod(0o755)
    nodes = make_pool(base, NAMES)
    try:
        yield Pool(base, nodes)
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(base, ignore_errors=True)


def _restored(target: Path, source: Path) -> Path:
    return target / source.relative_to("/")


def _rel(rows: list[dict[str, Any]], source: Path) -> dict[str, dict[str, Any]]:
    """``ls`` rows below ``source`` by their path relative to it."""
    prefix = str(source) + "/"
    return {r["path"][len(prefix) :]: r for r in rows if r["path"].startswith(prefix)}


def _without(tree: dict[str, tuple[object, ...]], gone: set[str]) -> dict[str, tuple[object, ...]]:
    """``describe`` output less ``gone`` and everything below it."""
    return {p: v for p, v in tree.items() if not any(p == g or p.startswith(g + "/") for g in gone)}


# -- 1. excludes ------------------------------------------------------------------------------


def test_exclude_and_exclude_file_leave_out_what_they_match(pool: Pool) -> None:
    src = pool.source("excludes")
    for rel in (
        "a.txt",
        "b.tmp",
        "keep.tmp",
        "cache/x.bin",
        "cache/keep.tmp",
        "sub/c.tmp",
        "sub/d.txt",
        "sub/keep.tmp",
        "sub/cache/y.bin",
        "sub2/cache",  # a file named like the excluded directory: kept
        "logs/app.log",
        "logs/readme.txt",
    ):
        pool.write(src / rel, 3000)
    patterns = pool.base / "excludes.txt"
    patterns.write_text("# comment\n*.tmp\ncache/\n!keep.tmp\n")
    s = pool.backup("--exclude", "*.log", "--exclude-file", str(patterns), str(src))
    assert s["errors"] == 0
    assert s["dry_run"] is False
    excluded = {"b.tmp", "cache", "sub/c.tmp", "sub/cache", "logs/app.log"}
    kept_files = {
        "a.txt",
        "keep.tmp",
        "sub/d.txt",
        "sub/keep.tmp",
        "sub2/cache",
        "logs/readme.txt",
    }
    assert s["total_files_processed"] == len(kept_files)

    rows = _rel(pool.ls("latest"), src)
    assert {p for p, r in rows.items() if r["type"] == "file"} == kept_files
    assert {p for p, r in rows.items() if r["type"] == "dir"} == {"sub", "sub2", "logs"}
    assert not excluded & rows.keys()
    for row in rows.values():
        assert {"path", "type", "size", "mode", "mtime_ns", "target"} <= row.keys()
    assert rows["a.txt"]["size"] == 3000

    target = pool.base / "restored-excludes"
    r = pool.restore(s["snapshot_id"], target)
    assert r["files_restored"] == len(kept_files)
    assert describe(_restored(target, src)) == _without(describe(src), excluded)


# -- 2. dry run -------------------------------------------------------------------------------


def test_dry_run_stores_nothing(pool: Pool) -> None:
    src = pool.source("dry-run")
    for i in range(6):
        pool.write(src / f"d{i % 2}" / f"f{i}.bin", 400_000)
    before_snaps = pool.snapshots()
    before_packs = pool.packs()
    before_held = pool.held_files()

    out: subprocess.CompletedProcess[str] = pool.owner.cli(
        "backup", *SHARDS, "--dry-run", str(src), check=False
    )
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout.splitlines()[-1])
    assert s["message_type"] == "summary"
    assert s["dry_run"] is True
    assert s["snapshot_id"] == ""
    assert s["errors"] == 0
    assert s["files_new"] == s["total_files_processed"] == 6
    assert s["total_bytes_processed"] == 6 * 400_000
    assert s["manifest_copies"] == 0

    assert pool.snapshots() == before_snaps
    assert pool.packs() == before_packs
    assert pool.held_files() == before_held

    # Nothing was remembered either: the real backup then reads every file.
    real = pool.backup(str(src))
    assert real["files_new"] == 6
    assert real["bytes_read"] == 6 * 400_000
    assert pool.packs() > before_packs
    after_held = pool.held_files()  # the place the dry run was watched is where shards go
    assert all(after_held[name] > before_held[name] for name in before_held)


# -- 3. tags ----------------------------------------------------------------------------------


def test_tags_are_kept_and_filter_snapshots(pool: Pool) -> None:
    src = pool.source("tags")
    pool.write(src / "t.bin", 20_000)
    first = pool.backup("--tag", "alpha", "--tag", "beta", str(src))
    second = pool.backup("--tag", "gamma", str(src))

    rows = {r["id"]: r for r in pool.snapshots()}
    assert sorted(rows[first["snapshot_id"]]["tags"]) == ["alpha", "beta"]
    assert rows[second["snapshot_id"]]["tags"] == ["gamma"]

    assert [r["id"] for r in pool.snapshots("--tag", "alpha")] == [first["snapshot_id"]]
    assert [r["id"] for r in pool.snapshots("--tag", "gamma")] == [second["snapshot_id"]]
    both = {r["id"] for r in pool.snapshots("--tag", "beta", "--tag", "gamma")}
    assert both == {first["snapshot_id"], second["snapshot_id"]}
    assert pool.snapshots("--tag", "no-such-tag") == []


# -- 4. ls below a path -----------------------------------------------------------------------


def test_ls_below_a_path_with_types_and_link_targets(pool: Pool) -> None:
    src = pool.source("ls")
    pool.write(src / "top.txt", 100)
    pool.write(src / "sub" / "a.txt", 1234)
    pool.write(src / "sub" / "inner" / "b.bin", 5678)
    (src / "sub" / "a.txt").chmod(0o640)
    os.symlink("a.txt", src / "sub" / "link")
    pool.write(src / "subway" / "c.txt", 10)  # shares a prefix with "sub", not below it
    s = pool.backup(str(src))

    below = src / "sub"
    rows = pool.ls(s["snapshot_id"], str(below))
    paths = [r["path"] for r in rows]
    assert all(p == str(below) or p.startswith(str(below) + "/") for p in paths), paths
    by_path = {r["path"]: r for r in rows}
    assert set(by_path) == {
        str(below),
        str(below / "a.txt"),
        str(below / "inner"),
        str(below / "inner" / "b.bin"),
        str(below / "link"),
    }
    assert by_path[str(below)]["type"] == "dir"
    assert by_path[str(below / "inner")]["type"] == "dir"
    a = by_path[str(below / "a.txt")]
    assert (a["type"], a["size"], a["mode"], a["target"]) == ("file", 1234, 0o640, "")
    assert a["mtime_ns"] == os.stat(below / "a.txt").st_mtime_ns
    assert by_path[str(below / "inner" / "b.bin")]["size"] == 5678
    link = by_path[str(below / "link")]
    assert (link["type"], link["target"]) == ("symlink", "a.txt")

    # A trailing slash names the same directory; the whole snapshot has the rest too.
    assert [r["path"] for r in pool.ls(s["snapshot_id"], str(below) + "/")] == paths
    everything = _rel(pool.ls(s["snapshot_id"]), src)
    assert {"top.txt", "subway", "subway/c.txt", "sub/link"} <= everything.keys()


# -- 5. restore --include ---------------------------------------------------------------------


def test_restore_include_takes_only_matching_files(pool: Pool) -> None:
    src = pool.source("include")
    for rel in ("one.txt", "one.bin", "x/two.txt", "x/two.bin", "x/y/three.txt", "z/four.bin"):
        pool.write(src / rel, 2000)
    pool.write(src / "docs" / "guide.md", 500)
    pool.write(src / "docs" / "img" / "pic.png", 500)
    s = pool.backup(str(src))

    target = pool.base / "restored-include"
    r = pool.restore(s["snapshot_id"], target, "--include", "*.txt", "--include", "docs/")
    root = _restored(target, src)
    files = {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}
    dirs = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}
    assert files == {"one.txt", "x/two.txt", "x/y/three.txt", "docs/guide.md", "docs/img/pic.png"}
    assert dirs == {"x", "x/y", "docs", "docs/img"}  # no "z": nothing in it matched
    assert r["files_restored"] == len(files)
    want = describe(src)
    got = describe(root)
    assert {p: want[p] for p in files} == {p: got[p] for p in files}


def _outside_state(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything about a tree restore must not touch: types, modes, owners, contents."""
    state: dict[str, tuple[object, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = os.lstat(path)
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        state[str(path)] = (info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns, content)
    return state


def test_restore_replaces_planted_links_and_fifos_and_writes_nothing_outside(pool: Pool) -> None:
    """A target where someone planted a directory symlink, file symlinks (at a final and at
    a temporary name), a FIFO and a directory where the snapshot has other things."""
    src = pool.source("planted")
    pool.write(src / "docs" / "a.txt", 3000)
    pool.write(src / "docs" / "sub" / "c.txt", 100)
    pool.write(src / "b.txt", 2000)
    pool.write(src / "fifo-here.txt", 500)
    (src / "empty.txt").touch()
    (src / "ln").symlink_to("b.txt")
    (src / "docs").chmod(0o777)  # as in the report: a shared directory
    if os.geteuid() == 0:
        os.chown(src / "docs", NOBODY, NOBODY)
    s = pool.backup(str(src))

    outside = pool.base / "outside"
    outside.mkdir(mode=0o700)
    (outside / "file").write_bytes(b"precious")
    (outside / "file").chmod(0o600)
    (outside / "sub").mkdir(mode=0o700)
    before = _outside_state(outside)

    target = pool.base / "restored-planted"
    root = _restored(target, src)
    root.mkdir(parents=True)
    (root / "docs").symlink_to(outside, target_is_directory=True)
    (root / "b.txt").symlink_to(outside / "file")
    (root / "empty.txt.partial").symlink_to(outside / "file")
    os.mkfifo(root / "fifo-here.txt")
    (root / "ln").mkdir()
    pool.write(root / "ln" / "inside.bin", 10)

    r = pool.restore(s["snapshot_id"], target)

    assert r["files_restored"] == 5, r  # exit 0: cli() raises otherwise
    assert _outside_state(outside) == before
    assert describe(root) == describe(src)
    assert not (root / "docs").is_symlink()
    if os.geteuid() == 0:
        info = os.lstat(root / "docs")
        assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY)
    assert not list(root.rglob("*.partial"))


# -- 6. an unreadable source file -------------------------------------------------------------


def _backup_unprivileged(pool: Pool, *args: str) -> subprocess.CompletedProcess[str]:
    """``peerbak backup`` as a user who cannot read a mode-000 file.

    Root reads any file, so under root the backup runs as ``nobody`` (``setpriv``), the
    owner's home handed over to it; the daemons stay root.
    """
    cmd = [sys.executable, "-m", "peerbak", "--home", str(pool.owner.home), "backup", *SHARDS]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: no file is unreadable to root")
        for dirpath, _, filenames in os.walk(pool.owner.home):
            os.chown(dirpath, NOBODY, NOBODY)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), NOBODY, NOBODY, follow_symlinks=False)
        cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(pool.base)},
    )


def test_unreadable_file_is_a_warning_and_exit_3(pool: Pool) -> None:
    src = pool.source("unreadable")
    for rel in ("ok1.bin", "deep/ok2.bin", "deep/ok3.txt"):
        pool.write(src / rel, 50_000)
    secret = pool.write(src / "deep" / "secret.bin", 50_000)
    secret.chmod(0)

    out = _backup_unprivileged(pool, str(src), "--json")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    errors = [line for line in lines if line.get("message_type") == "error"]
    assert len(errors) == 1, lines
    assert str(secret) in errors[0]["error"]
    s = lines[-1]
    assert s["message_type"] == "summary"
    assert s["errors"] == 1
    assert s["files_new"] == s["total_files_processed"] - 1 == 3
    assert len(s["snapshot_id"]) == 32

    assert s["snapshot_id"] in {r["id"] for r in pool.snapshots()}
    assert str(secret) not in {r["path"] for r in pool.ls(s["snapshot_id"])}
    target = pool.base / "restored-unreadable"
    r = pool.restore(s["snapshot_id"], target)
    assert r["files_restored"] == 3
    secret.chmod(0o600)  # describe() reads the source's contents
    assert describe(_restored(target, src)) == _without(describe(src), {"deep/secret.bin"})
    secret.chmod(0)

    # Without --json: a warning line on stderr naming the file, and exit 3 again.
    text = _backup_unprivileged(pool, str(src))
    assert text.returncode == 3, text.stdout + text.stderr
    assert "Traceback" not in text.stderr
    warnings = [line for line in text.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, text.stderr
    assert str(secret) in warnings[0]
    assert "saved" in text.stdout


# -- 7. the files cache -----------------------------------------------------------------------


def test_unchanged_tree_is_not_read_again_and_a_touched_file_is(pool: Pool) -> None:
    src = pool.source("cache")
    files = [pool.write(src / f"d{i % 3}" / f"f{i}.bin", 30_000 + i) for i in range(12)]
    first = pool.backup(str(src))
    assert first["files_new"] == first["total_files_processed"] == 12

    second = pool.backup(str(src))
    assert second["files_unmodified"] == second["total_files_processed"] == 12
    assert second["files_new"] == second["files_changed"] == 0
    assert second["bytes_read"] == 0
    assert second["data_added"] == 0

    touched = files[5]
    mtime = touched.stat().st_mtime_ns
    os.utime(touched, ns=(mtime + 10**9, mtime + 10**9))
    third = pool.backup(str(src))
    assert third["files_changed"] == 1
    assert third["files_new"] == 0
    assert third["files_unmodified"] == 11
    assert third["bytes_read"] == touched.stat().st_size
    assert third["data_added"] == 0  # same contents: every chunk is known


# -- 8. bad command lines ---------------------------------------------------------------------


def _raw(pool: Pool, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI without --json, as a user sees it."""
    return subprocess.run(
        [sys.executable, "-m", "peerbak", "--home", str(pool.owner.home), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_clean_line(out: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_restore_of_an_unknown_snapshot_exits_66(pool: Pool) -> None:
    target = pool.base / "never-restored"
    out = _raw(pool, "restore", "nosuchid", "--target", str(target))
    assert out.returncode == 66, out.stderr
    line = _one_clean_line(out)
    assert line.startswith("peerbak: ")
    assert "nosuchid" in line
    assert not target.exists()

    js: subprocess.CompletedProcess[str] = pool.owner.cli(
        "restore", "nosuchid", "--target", str(target), check=False
    )
    assert js.returncode == 66
    error = json.loads(_one_clean_line(js))
    assert (error["message_type"], error["code"], error["error"]) == (
        "exit_error",
        66,
        "NotFoundError",
    )


def test_backup_of_only_missing_paths_is_not_found(pool: Pool) -> None:
    out = _raw(pool, "backup", *SHARDS, "/does/not/exist")
    assert out.returncode == 66, out.stderr
    line = _one_clean_line(out)
    assert "/does/not/exist" in line


def test_a_missing_path_among_others_is_skipped_named_and_exits_3(pool: Pool) -> None:
    """As restic: the paths that exist are backed up, the snapshot saved, exit 3."""
    src = pool.base / "sources" / "partly"
    pool.write(src / "kept.bin", 5000)
    out = _raw(pool, "backup", *SHARDS, str(src), "/does/not/exist")
    assert out.returncode == 3, out.stderr
    assert "/does/not/exist: no such file or directory, skipped" in out.stderr
    assert "Traceback" not in out.stderr
    latest = pool.owner.cli("snapshots")[-1]
    assert latest["paths"] == [str(src)]


@pytest.mark.parametrize("shards", ["5/3", "3/3", "0/3", "two/three", "2/3,3/5"])
def test_impossible_shards_are_a_clear_error(pool: Pool, shards: str) -> None:
    src = pool.base / "sources" / "shards"
    if not src.exists():
        pool.write(src / "s.bin", 1000)
    before = pool.packs()
    out = _raw(pool, "backup", "--shards", shards, str(src))
    assert out.returncode not in (0, 3, 70), out.stderr
    assert out.returncode == 64, out.stderr
    line = _one_clean_line(out)
    assert line.startswith("peerbak: ")
    assert "internal error" not in line
    assert pool.packs() == before


# -- one file system ----------------------------------------------------------------------


def test_one_file_system_keeps_the_mount_point_but_not_what_is_mounted(pool: Pool) -> None:
    """A tmpfs mounted inside the tree: with -x its contents stay out, without they are in."""
    src = pool.source("onefs")
    pool.write(src / "here.txt", 300)
    mnt = src / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or 'not permitted'}")
    try:
        pool.write(mnt / "elsewhere.txt", 200)
        one = pool.backup("--one-file-system", str(src))
        rows = _rel(pool.ls(one["snapshot_id"]), src)
        assert "here.txt" in rows
        assert rows["mnt"]["type"] == "dir"  # the mount point itself, empty
        assert "mnt/elsewhere.txt" not in rows
        every = pool.backup(str(src))
        assert "mnt/elsewhere.txt" in _rel(pool.ls(every["snapshot_id"]), src)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_files_from_and_restic_exclusions_through_the_command_line(pool: Pool) -> None:
    src = pool.source("restic-flags")
    for rel in ["a.txt", "sub/b.txt", "Tmp/C.TMP", "cache/blob", "skip/x", "big.bin"]:
        pool.write(src / rel, 2_000_000 if rel == "big.bin" else 700)
    (src / "cache" / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f597d28d172789f06886806bc55")
    (src / "skip" / ".nobackup").write_text("")
    listing = pool.base / "files-from.txt"
    listing.write_text(f"# the job's paths\n{src / 'a.txt'}\n\n{src / 'sub'}\n")
    only = pool.backup("--files-from", str(listing))
    assert only["files_new"] == 2
    s = pool.backup(
        str(src),
        "--iexclude",
        "*.tmp",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-caches",
        "--exclude-larger-than",
        "1MiB",
    )
    target = pool.base / "restored-restic-flags"
    pool.restore(s["snapshot_id"], target)
    got = target / str(src).lstrip("/")
    assert sorted(str(p.relative_to(got)) for p in got.rglob("*") if p.is_file()) == [
        "a.txt",
        "sub/b.txt",
    ]
    fewer = pool.base / "restored-restic-flags-exclude"
    pool.restore(s["snapshot_id"], fewer, "--exclude", "sub/")
    assert sorted(p.name for p in (fewer / str(src).lstrip("/")).rglob("*") if p.is_file()) == [
        "a.txt"
    ]


def _dump(pool: Pool, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``peerbak dump``: bytes on standard output."""
    return subprocess.run(
        [sys.executable, "-m", "peerbak", "--home", str(pool.owner.home), "dump", *args],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_dump_and_find_through_the_command_line(pool: Pool) -> None:
    src = pool.source("dump")
    pool.write(src / "db.sql", 300_000)
    pool.write(src / "d" / "x.txt", 100)
    s = pool.backup(str(src))
    one = _dump(pool, "latest", str(src / "db.sql"))
    assert one.returncode == 0, one.stderr
    assert one.stdout == (src / "db.sql").read_bytes()
    whole = _dump(pool, f"{s['snapshot_id'][:8]}:{src}", "d")
    assert whole.returncode == 0, whole.stderr
    with tarfile.open(fileobj=io.BytesIO(whole.stdout), mode="r:") as tar:
        assert tar.getnames() == ["d", "d/x.txt"]
        member = tar.extractfile("d/x.txt")
        assert member is not None
        assert member.read() == (src / "d" / "x.txt").read_bytes()
    found = pool.owner.cli("find", "*.txt", "--path", str(src))
    assert [r["path"] for r in found if r["snapshot"] == s["snapshot_id"]] == [
        str(src / "d" / "x.txt")
    ]
    assert _dump(pool, "latest", str(src / "nope")).returncode == 66
    checked = pool.restore(s["snapshot_id"], pool.base / "verified", "--verify")
    assert checked["files_verified"] == 2
    pool.write(src / "d" / "y.txt", 100)
    s2 = pool.backup(str(src))
    changes = pool.owner.cli("diff", s["snapshot_id"][:8], s2["snapshot_id"][:8])
    assert [(c["change"], c["path"]) for c in changes] == [("+", str(src / "d" / "y.txt"))]
    inside = pool.owner.cli(
        "diff", f"{s['snapshot_id'][:8]}:{src}/d", f"latest:{src}/d", "--path", str(src)
    )
    assert [(c["change"], c["path"]) for c in inside] == [("+", "/y.txt")]
    text = _raw(pool, "diff", s["snapshot_id"][:8], s2["snapshot_id"][:8])
    assert text.returncode == 0
    assert "1 added, 0 removed, 0 modified" in text.stdout


def test_tag_through_the_command_line(pool: Pool) -> None:
    src = pool.source("tagged")
    pool.write(src / "f.bin", 1000)
    s = pool.backup(str(src))
    changed = pool.owner.cli("tag", s["snapshot_id"][:8], "--add", "keep,photos")
    assert changed == [{"id": s["snapshot_id"], "tags": ["keep", "photos"]}]
    assert [x["id"] for x in pool.owner.cli("snapshots", "--tag", "keep,photos")] == [
        s["snapshot_id"]
    ]
    pool.owner.cli("tag", "--path", str(src), "--remove", "photos")
    assert [x["tags"] for x in pool.owner.cli("snapshots", "--path", str(src))] == [["keep"]]
    assert _raw(pool, "tag", s["snapshot_id"][:8]).returncode == 64  # nothing to change


def test_the_global_json_quiet_and_verbose_flags(pool: Pool) -> None:
    src = pool.source("global-flags")
    pool.write(src / "f.bin", 1000)
    home = ["--home", str(pool.owner.home)]
    quiet = subprocess.run(
        [sys.executable, "-m", "peerbak", *home, "-q", "backup", *SHARDS, str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert (quiet.stdout, quiet.stderr) == ("", "")
    listed = subprocess.run(
        [sys.executable, "-m", "peerbak", *home, "--json", "snapshots", "--path", str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = json.loads(listed.stdout)
    assert [s["paths"] for s in rows] == [[str(src)]]
    when = datetime.datetime.fromisoformat(rows[0]["time"])  # RFC 3339, as restic's
    assert when.tzinfo is not None
    assert abs(when.timestamp() - time.time()) < 600
    entry = pool.owner.cli("ls", "latest", str(src / "f.bin"), "--path", str(src))
    assert entry["path"] == str(src / "f.bin")
    assert datetime.datetime.fromisoformat(entry["mtime"]).timestamp() == pytest.approx(
        (src / "f.bin").stat().st_mtime, abs=1e-3
    )
    verbose = subprocess.run(
        [sys.executable, "-m", "peerbak", *home, "-v", "backup", *SHARDS, str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for friend in pool.friends:
        assert f"member {friend.name} is up" in verbose.stderr


def test_limit_upload_and_download_hold_the_pace(pool: Pool) -> None:
    """Bytes cannot arrive faster than the limit lets them: a lower bound on the time,
    whatever the machine."""
    src = pool.source("limited")
    pool.write(src / "f.bin", 100_000)
    home = ["--home", str(pool.owner.home)]
    began = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "peerbak",
            *home,
            "--limit-upload",
            "32",
            "--json",
            "backup",
            *SHARDS,
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    stored = json.loads(done.stdout.splitlines()[-1])["stored_added"]
    assert time.monotonic() - began >= (stored - 32 * 1024) / (32 * 1024)
    target = pool.base / "restored-limited"
    began = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "peerbak",
            *home,
            "--limit-download",
            "32",
            "restore",
            "latest",
            "--path",
            str(src),
            "--target",
            str(target),
        ],
        capture_output=True,
        timeout=300,
        check=True,
    )
    assert time.monotonic() - began >= (100_000 - 32 * 1024) / (32 * 1024)
    assert (target / str(src).lstrip("/") / "f.bin").read_bytes() == (src / "f.bin").read_bytes()


def test_stdin_backs_up_a_piped_dump(pool: Pool) -> None:
    dump = b"CREATE TABLE t (x int);\n" + pool.rnd.randbytes(200_000)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "peerbak",
            "--home",
            str(pool.owner.home),
            "--json",
            "backup",
            *SHARDS,
            "--stdin",
            "--stdin-filename",
            "nightly.sql",
        ],
        input=dump,
        capture_output=True,
        timeout=120,
        check=True,
    )
    snap = json.loads(done.stdout.splitlines()[-1])["snapshot_id"]
    again = _dump(pool, snap[:8], "/nightly.sql")
    assert again.returncode == 0, again.stderr
    assert again.stdout == dump
