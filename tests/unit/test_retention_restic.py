"""``forget``'s grouping checked against restic itself: snapshots of two hosts and three
path sets (some tagged) are made by restic with chosen times; restic's ``forget
--dry-run --json`` says what each group keeps and removes, and peerbak's grouping and
keep rules must say the same, snapshot for snapshot, reason for reason.

The times fall on distinct days, so the keep rules' only difference across restic
versions (0.17 also keeps the oldest snapshot while a count is left) cannot show.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from peerbak.core.retention import (
    GROUP_BY_DEFAULT,
    KeepPolicy,
    apply_policy,
    group,
    parse_group_by,
)

pytestmark = [
    pytest.mark.slow,  # restic makes 18 snapshots
    pytest.mark.skipif(
        shutil.which("restic") is None,
        reason="restic is not installed (Debian: apt-get install restic)",
    ),
]

HOSTS = ("alpha", "beta")
PATH_SETS = (("photos",), ("docs",), ("docs", "photos"))


@dataclass(frozen=True)
class Snap:
    id: str
    time: float
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]


def _restic(repo: Path, *args: str) -> str:
    env = {**os.environ, "RESTIC_PASSWORD": "peerbak-test", "TZ": "UTC"}
    done = subprocess.run(
        ["restic", "-r", str(repo), "--no-cache", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Snap]]:
    root = tmp_path_factory.mktemp("restic")
    for name in ("photos", "docs"):
        (root / name).mkdir()
        (root / name / "file").write_text(name)
    repo = root / "repo"
    _restic(repo, "init")
    snaps = []
    for i in range(18):
        host = HOSTS[i % 2]
        paths = tuple(str(root / p) for p in PATH_SETS[i % 3])
        tags = ("nightly",) if i % 4 == 0 else ()
        when = datetime(2026, 1, 1, tzinfo=UTC).timestamp() + i * 86400 + (i * 3677) % 86000
        stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S")
        tag_args = [a for t in tags for a in ("--tag", t)]
        out = _restic(repo, "backup", "--host", host, "--time", stamp, *tag_args, *paths, "--json")
        summary = json.loads(out.strip().splitlines()[-1])
        snaps.append(Snap(summary["snapshot_id"], when, host, tuple(sorted(paths)), tags))
    return repo, snaps


def _theirs(repo: Path, args: list[str]) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """restic's verdict: short id → (kept, reasons)."""
    verdict: dict[str, tuple[bool, tuple[str, ...]]] = {}
    for g in json.loads(_restic(repo, "forget", "--dry-run", "--json", *args)):
        reasons = {r["snapshot"]["time"]: tuple(r["matches"]) for r in (g.get("reasons") or [])}
        for s in g["keep"] or []:
            verdict[s["short_id"]] = (True, reasons.get(s["time"], ()))
        for s in g["remove"] or []:
            verdict[s["short_id"]] = (False, ())
    return verdict


def _ours(
    snaps: list[Snap], policy: KeepPolicy, by: frozenset[str]
) -> dict[str, tuple[bool, tuple[str, ...]]]:
    verdict: dict[str, tuple[bool, tuple[str, ...]]] = {}
    for _, members in group(snaps, by, key=lambda s: (s.hostname, s.paths, s.tags)):
        for d in apply_policy(members, policy, key=lambda s: (s.time, s.tags)):
            verdict[d.snapshot.id] = (d.kept, tuple(str(r) for r in d.reasons))
    return verdict


CASES: list[tuple[list[str], KeepPolicy, frozenset[str]]] = [
    (["--keep-last", "1"], KeepPolicy(last=1), GROUP_BY_DEFAULT),
    (["--keep-last", "2"], KeepPolicy(last=2), GROUP_BY_DEFAULT),
    (["--keep-last", "1", "--group-by", "host"], KeepPolicy(last=1), parse_group_by("host")),
    (["--keep-daily", "2", "--group-by", "paths"], KeepPolicy(daily=2), parse_group_by("paths")),
    (
        ["--keep-last", "1", "--group-by", "host,paths,tags"],
        KeepPolicy(last=1),
        parse_group_by("host,paths,tags"),
    ),
    (["--keep-weekly", "1", "--group-by", ""], KeepPolicy(weekly=1), parse_group_by("")),
]


@pytest.mark.parametrize(("args", "policy", "by"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_groups_keep_and_remove_what_restic_does(
    made: tuple[Path, list[Snap]], args: list[str], policy: KeepPolicy, by: frozenset[str]
) -> None:
    repo, snaps = made
    theirs = _theirs(repo, args)
    ours = _ours(snaps, policy, by)
    assert theirs == ours
    assert any(not kept for kept, _ in ours.values())  # each case removes something


def test_keep_last_one_keeps_the_last_of_every_backup_job(made: tuple[Path, list[Snap]]) -> None:
    _, snaps = made
    ours = _ours(snaps, KeepPolicy(last=1), GROUP_BY_DEFAULT)
    jobs = {(s.hostname, s.paths) for s in snaps}
    kept = {(s.hostname, s.paths) for s in snaps if ours[s.id][0]}
    assert kept == jobs == {(h, p) for h in HOSTS for p in {s.paths for s in snaps}}
