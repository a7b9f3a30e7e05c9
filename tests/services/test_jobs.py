"""Backup jobs against the in-process pool: a run's order (before, backup, retention,
after) and its variables, failures (a before hook, a hook past its timeout, a failing
command), retention per job, and the scheduler (catch-up once, one job at a time)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from peerbak.core.config import default_config_text, parse_config, toml_string
from peerbak.core.jobs import Job
from peerbak.services import events
from peerbak.services.jobs import Scheduler, run_job, run_jobs_forever
from peerbak.services.repository import Repository
from peerbak.services.restore import run_restore
from peerbak.tools.mempool import MemoryPool
from tests.services.kit import write


def _configure(mempool: MemoryPool, jobs: str) -> list[Job]:
    """Write ``jobs`` (TOML) into the owner's config; the jobs as the daemon reads them."""
    text = default_config_text("owner", 0) + jobs
    mempool.home.config_path.write_text(text)
    return parse_config(text).job


def _sh(script: str) -> str:
    """A hook running ``script`` through sh, as a TOML argument list."""
    return f'[["sh", "-c", {toml_string(script)}]]'


def _job(name: str, source: str, **keys: str) -> str:
    lines = ["[[job]]", f"name = {toml_string(name)}", source]
    lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n\n"


def _paths(*paths: Path) -> str:
    return "paths = [" + ", ".join(toml_string(str(p)) for p in paths) + "]"


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_job_runs_before_backup_retention_after_in_order(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src, log = tmp_path / "photos", tmp_path / "hooks.log"
    write(src / "a.jpg", 50_000, 1)
    (job,) = _configure(
        mempool,
        _job(
            "photos",
            _paths(src),
            keep_last="1",
            before=_sh(f'echo "before $PEERBAK_JOB" >> {log}'),
            after=_sh(f'echo "after $PEERBAK_JOB $PEERBAK_SNAPSHOT" >> {log}'),
            on_error=_sh(f"echo on_error >> {log}"),
        ),
    )
    first = await run_job(repo, job)
    assert first.ok
    assert first.exit_code == 0
    mempool.clock.advance(3600)
    write(src / "b.jpg", 50_000, 2)
    second = await run_job(repo, job)
    assert second.ok
    assert log.read_text().splitlines() == [
        "before photos",
        f"after photos {first.snapshot}",
        "before photos",
        f"after photos {second.snapshot}",
    ]
    # Retention ran before `after`: keep_last 1 left only the new snapshot.
    assert [s.id.hex() for s in await repo.snapshots()] == [second.snapshot]
    assert second.forgotten == 1
    (ok, again) = await repo.ledger.events(kinds=["job."], subject="photos")
    assert (again.kind, again.level, again.subject) == ("job.ok", "info", "photos")
    assert again.details["snapshot"] == second.snapshot
    assert again.details["files_new"] == 1
    assert again.details["data_added"] > 0
    assert again.details["started"] == mempool.clock()
    assert "duration" in again.details
    assert "error" not in again.details
    assert again.id == second.event
    assert ok.id == first.event


async def test_a_failing_before_backs_up_nothing_and_runs_on_error(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src, log = tmp_path / "docs", tmp_path / "hooks.log"
    write(src / "a.txt", 10_000, 1)
    (job,) = _configure(
        mempool,
        _job(
            "docs",
            _paths(src),
            before=_sh("echo the disk is not mounted >&2; exit 4"),
            after=_sh(f"echo after >> {log}"),
            on_error=_sh(f'echo "$PEERBAK_JOB: $PEERBAK_ERROR" >> {log}'),
        ),
    )
    result = await run_job(repo, job)
    assert not result.ok
    assert result.exit_code == 1  # HookFailed
    assert await repo.snapshots() == []
    assert [p async for page in repo.ledger.stored_pack_ids() for p in page] == []
    (told,) = log.read_text().splitlines()  # on_error, and not after
    assert told.startswith("docs: before: before hook `sh -c")
    assert "exited 4: the disk is not mounted" in told
    (event,) = await repo.ledger.events(kinds=["job."])
    assert (event.kind, event.level, event.subject) == ("job.failed", "error", "docs")
    assert event.details["error"] == result.error
    assert "snapshot" not in event.details


async def test_a_hook_past_its_timeout_is_killed_with_its_children(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src, pid_file = tmp_path / "docs", tmp_path / "child.pid"
    write(src / "a.txt", 10_000, 1)
    (job,) = _configure(
        mempool,
        _job(
            "slow",
            _paths(src),
            timeout='"0.5s"',
            before=_sh(f"sleep 60 & echo $! > {pid_file}; wait"),
        ),
    )
    began = time.monotonic()
    result = await run_job(repo, job)
    assert time.monotonic() - began < 10
    assert not result.ok
    assert "ran past its 0.5 s timeout and was killed" in result.error
    assert await repo.snapshots() == []
    child = int(pid_file.read_text())

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"

    await _until(gone)


async def test_a_command_job_stores_the_commands_output(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    jobs = _configure(
        mempool,
        _job(
            "db",
            'command = ["sh", "-c", "for i in $(seq 2000); do echo row $i; done"]',
            stdin_filename='"db.sql"',
        )
        + _job("broken", "command = \"sh -c 'echo partial; echo no such table >&2; exit 2'\""),
    )
    db, broken = jobs
    result = await run_job(repo, db)
    assert result.ok, result.error
    (snap,) = await repo.snapshots()
    assert snap.paths == ["/db.sql"]
    await run_restore(repo, "latest", tmp_path / "out")
    expected = "".join(f"row {i}\n" for i in range(1, 2001))
    assert (tmp_path / "out" / "db.sql").read_text() == expected
    failed = await run_job(repo, broken)
    assert not failed.ok
    assert failed.exit_code == 1
    assert "command `sh -c" in failed.error
    assert "exited 2: no such table" in failed.error
    assert len(await repo.snapshots()) == 1  # none for the failed command


async def test_retention_keeps_per_job(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "1", 10_000, 1)
    write(b / "1", 10_000, 2)
    job_a, job_b = _configure(
        mempool, _job("a", _paths(a), keep_last="1") + _job("b", _paths(b), keep_last="2")
    )
    from peerbak.services.backup import run_backup

    both = await run_backup(repo, [a, b])  # by hand: a path set containing a's
    for _ in range(3):
        mempool.clock.advance(3600)
        assert (await run_job(repo, job_a)).ok
        assert (await run_job(repo, job_b)).ok
    left = await repo.snapshots()
    by_paths: dict[tuple[str, ...], int] = {}
    for s in left:
        by_paths[tuple(s.paths)] = by_paths.get(tuple(s.paths), 0) + 1
    assert by_paths == {(str(a),): 1, (str(b),): 2, (str(a), str(b)): 1}
    assert both["snapshot_id"] in {s.id.hex() for s in left}


def _at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[arg-type,misc]


async def test_catch_up_runs_a_missed_job_once(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write(src / "a", 10_000, 1)
    _configure(mempool, _job("nightly", _paths(src), schedule='"*-*-* 03:00"'))
    mempool.clock.now = _at(2025, 3, 2, 3, 0)
    await events.note(
        repo.ledger, mempool.clock(), "info", "job.ok", "nightly", "ran", started=mempool.clock()
    )
    mempool.clock.now = _at(2025, 3, 5, 12, 0)  # asleep through three 03:00s
    scheduler = Scheduler(mempool.home, mempool.open, mempool.clock, tz=UTC)
    stopping = asyncio.Event()
    assert await scheduler.step(stopping) == 0  # ran one; looks again at once
    wait = await scheduler.step(stopping)
    assert scheduler.ran == [("nightly", "job")]  # once, not three times
    assert wait == 60  # capped: the next is tomorrow 03:00
    runs = await repo.ledger.events(kinds=["job.ok"], subject="nightly")
    assert len(runs) == 2
    assert runs[-1].details["started"] == _at(2025, 3, 5, 12, 0)
    mempool.clock.now = _at(2025, 3, 6, 2, 59)
    await scheduler.step(stopping)
    assert len(scheduler.ran) == 1
    mempool.clock.now = _at(2025, 3, 6, 3, 0)
    await scheduler.step(stopping)
    assert len(scheduler.ran) == 2


async def test_jitter_delays_a_slot_within_its_bounds(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    import random

    src = tmp_path / "src"
    write(src / "a", 10_000, 1)
    _configure(mempool, _job("j", _paths(src), schedule='"hourly"', jitter='"30min"'))
    mempool.clock.now = _at(2025, 3, 5, 11, 0)
    await events.note(
        repo.ledger, mempool.clock(), "info", "job.ok", "j", "ran", started=mempool.clock()
    )
    scheduler = Scheduler(mempool.home, mempool.open, mempool.clock, random.Random(3), tz=UTC)
    await scheduler.step(asyncio.Event())
    slot, delay = scheduler.planned[("j", "job")]
    assert slot == _at(2025, 3, 5, 12, 0)
    assert 0 <= delay <= 1800
    mempool.clock.now = slot + delay - 1
    await scheduler.step(asyncio.Event())
    assert scheduler.ran == []
    assert scheduler.planned[("j", "job")] == (slot, delay)  # drawn once per slot
    mempool.clock.now = slot + delay
    await scheduler.step(asyncio.Event())
    assert scheduler.ran == [("j", "job")]


async def test_a_due_job_waits_while_another_writer_holds_the_lock(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    a, b, log = tmp_path / "a", tmp_path / "b", tmp_path / "log"
    write(a / "1", 10_000, 1)
    write(b / "1", 10_000, 2)
    hooks = {
        "before": _sh(f'echo "start $PEERBAK_JOB" >> {log}'),
        "after": _sh(f'echo "end $PEERBAK_JOB" >> {log}'),
    }
    _configure(
        mempool,
        _job("a", _paths(a), schedule='"every 1h"', **hooks)
        + _job("b", _paths(b), schedule='"every 1h"', **hooks),
    )
    scheduler = Scheduler(mempool.home, mempool.open, mempool.clock, tz=UTC, lock_poll=0.01)
    stopping = asyncio.Event()
    with mempool.home.lock("backup"):  # a backup from the command line, say
        looking = asyncio.create_task(scheduler.step(stopping))
        await _until(lambda: scheduler.waiting == "a")
        assert not log.exists()
        assert scheduler.ran == []
    assert await looking == 0
    assert await scheduler.step(stopping) == 0
    assert scheduler.ran == [("a", "job"), ("b", "job")]
    assert log.read_text().splitlines() == ["start a", "end a", "start b", "end b"]
    assert 0 < await scheduler.step(stopping) <= 60  # both ran: nothing due for an hour


async def test_a_lock_held_too_long_is_tried_again_later(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    _configure(mempool, _job("a", _paths(tmp_path), schedule='"every 1h"'))
    scheduler = Scheduler(
        mempool.home, mempool.open, mempool.clock, tz=UTC, lock_poll=0.01, lock_wait=0.05
    )
    with mempool.home.lock("backup"):
        wait = await scheduler.step(asyncio.Event())
    assert scheduler.ran == []
    assert wait == 0.01
    assert await repo.ledger.events(kinds=["job."]) == []  # not run, so not failed either


async def test_the_scheduler_stops_promptly(mempool: MemoryPool, tmp_path: Path) -> None:
    _configure(mempool, _job("a", _paths(tmp_path), schedule='"daily"'))
    stopping = asyncio.Event()
    opened: list[Repository] = []

    async def open_repo() -> Repository:
        opened.append(await mempool.open())
        return opened[-1]

    task = asyncio.create_task(run_jobs_forever(mempool.home, open_repo, stopping, mempool.clock))
    await _until(lambda: bool(opened))  # it looked, and now waits for tomorrow
    stopping.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, 5)
    assert task.done()
