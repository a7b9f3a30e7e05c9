"""Backup jobs on four real nodes: ``peerbak run`` with a failing ``before`` (nothing
backed up, ``on_error`` told, a non-zero exit) and a good job (``after`` gets the
snapshot id), and the daemon running a job on its own, seen through ``peerbak jobs``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from peerbak.core.config import toml_string
from peerbak.tools.localpool import LocalNode, temporary_pool

pytestmark = pytest.mark.slow

NAMES = ["owner", "f1", "f2", "f3"]


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[LocalNode]]:
    with temporary_pool(NAMES, "pbk-jobs-") as nodes:
        yield nodes


def _add_jobs(owner: LocalNode, text: str) -> None:
    config = owner.home / "config.toml"
    config.write_text(config.read_text() + "\n" + text)


def _sh(script: str) -> str:
    return f'[["sh", "-c", {toml_string(script)}]]'


def _log(owner: LocalNode, kind: str) -> list[dict[str, Any]]:
    out = owner.cli("log", "--kind", kind, check=False)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def _source(owner: LocalNode, name: str) -> Path:
    src = owner.home.parent / "sources" / name
    src.mkdir(parents=True)
    (src / "notes.txt").write_text(f"the {name} job's file\n" * 1000)
    return src


def test_run_a_failing_job_then_a_good_one(nodes: list[LocalNode]) -> None:
    owner = nodes[0]
    src, other = _source(owner, "manual"), _source(owner, "other")
    out = owner.home.parent / "out"
    out.mkdir()
    _add_jobs(
        owner,
        f"""[[job]]
name = "broken"
paths = [{toml_string(str(other))}]
before = {_sh("echo cannot mount the disk >&2; exit 3")}
on_error = {_sh(f'echo "$PEERBAK_JOB|$PEERBAK_ERROR" > {out}/on_error')}

[[job]]
name = "good"
paths = [{toml_string(str(src))}]
keep_last = 2
after = {_sh(f'echo "$PEERBAK_SNAPSHOT" > {out}/after')}
""",
    )
    failed = owner.cli("run", "broken", check=False)
    assert failed.returncode == 1, failed.stderr  # a hook failed
    told = json.loads(failed.stdout.splitlines()[-1])
    assert (told["job"], told["ok"], told["exit_code"]) == ("broken", False, 1)
    job, error = (out / "on_error").read_text().strip().split("|", 1)
    assert job == "broken"
    assert "before hook" in error
    assert "exited 3: cannot mount the disk" in error
    assert owner.cli("snapshots") == []
    (line,) = _log(owner, "job.")
    assert (line["kind"], line["subject"], line["level"]) == ("job.failed", "broken", "error")

    ran: dict[str, Any] = owner.cli("run", "good")
    assert ran["ok"] is True
    (snap,) = owner.cli("snapshots")
    assert ran["snapshot"] == snap["id"]
    assert (out / "after").read_text().strip() == snap["id"]
    assert snap["paths"] == [str(src)]
    listed = {row["name"]: row for row in owner.cli("jobs")}
    assert listed["good"]["last"]["result"] == "ok"
    assert listed["good"]["last"]["snapshot"] == snap["id"]
    assert listed["broken"]["last"]["result"] == "failed"
    assert listed["good"]["next"] is None  # no schedule: run by hand only
    missing = owner.cli("run", "nosuch", check=False)
    assert missing.returncode == 66
    assert "no job named 'nosuch'" in missing.stderr


def test_the_daemon_runs_a_job_on_its_own(nodes: list[LocalNode]) -> None:
    owner = nodes[0]
    src = _source(owner, "scheduled")
    _add_jobs(
        owner,
        f"""[[job]]
name = "auto"
paths = [{toml_string(str(src))}]
schedule = "every 1min"
tags = ["auto"]
""",
    )
    owner.stop()
    owner.start()  # a job that never ran, on an interval, is due at the daemon's start
    deadline = time.monotonic() + 120
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = {r["name"]: r for r in owner.cli("jobs")}["auto"]
        if row["last"] is not None:
            break
        time.sleep(0.5)  # polling the daemon's progress, with a deadline
    assert row["last"] is not None, (owner.log.read_text()[-3000:], row)
    assert row["last"]["result"] == "ok", row
    assert row["schedule"] == "every 1min"
    assert datetime.fromisoformat(row["next"]) > datetime.fromisoformat(row["last"]["time"])
    (event,) = _log(owner, "job.ok")[-1:]
    assert event["subject"] == "auto"
    assert event["details"]["snapshot"] == row["last"]["snapshot"]
    snaps = {s["id"]: s for s in owner.cli("snapshots", "--tag", "auto")}
    assert snaps[row["last"]["snapshot"]]["paths"] == [str(src)]
