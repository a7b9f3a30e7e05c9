"""Backup jobs: run one (``peerbak run``), list them (``peerbak jobs``), and run them on
their schedules (the daemon's :func:`run_jobs_forever`).

A run is ``before`` → backup → retention → ``after``; any failure runs ``on_error``
instead of what is left, and every run ends with one event, ``job.ok`` or
``job.failed`` (subject: the job's name), which is also how the scheduler knows when a
job last ran. The caller holds the writers' lock for the whole run.

* A ``before`` hook failing means nothing is backed up.
* A command job's command exiting non-zero fails the backup before a snapshot is made.
* A partial backup (some files could not be read) is ``job.ok`` at level ``warning``
  with ``partial = true``; its retention is skipped, so an incomplete snapshot never
  makes a complete one be forgotten. ``after`` runs.
* Retention forgets only this job's snapshots (this host, exactly its path set); it
  never prunes: ``prune_schedule`` does, on its own (events ``prune.done|failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any, Final

from peerbak.core.config import Config
from peerbak.core.errors import ConfigError, Locked, PartialBackup, PeerbakError
from peerbak.core.jobs import Job
from peerbak.core.objects import Snapshot
from peerbak.core.schedule import jitter_delay
from peerbak.core.selection import Selection
from peerbak.core.words import plural
from peerbak.ports.ledger import Event
from peerbak.ports.workspace import Workspace
from peerbak.services import events
from peerbak.services.backup import run_backup
from peerbak.services.hooks import CommandOutput, run_hook
from peerbak.services.prune import forget, prune
from peerbak.services.repository import Repository

log = logging.getLogger(__name__)

#: Exit code of a failure that is not a PeerbakError (a bug).
INTERNAL: Final = 70
#: Longest sleep of the scheduler: config edits apply within it.
MAX_WAIT: Final = 60.0
#: Seconds a due job waits for the writers' lock before it is tried again later.
LOCK_WAIT: Final = 600.0
LOCK_POLL: Final = 5.0


@dataclass
class JobResult:
    """How one run went, as ``peerbak run`` prints it and the event records it."""

    job: str
    ok: bool
    started: float
    duration: float = 0.0
    snapshot: str = ""
    error: str = ""
    exit_code: int = 0
    partial: bool = False
    forgotten: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    event: int = 0

    def details(self) -> dict[str, Any]:
        s = self.summary
        details: dict[str, Any] = {"started": self.started, "duration": round(self.duration, 3)}
        if self.snapshot:
            details["snapshot"] = self.snapshot
        if self.error:
            details["error"] = self.error
            details["exit_code"] = self.exit_code
        if s:
            details |= {k: s[k] for k in ("files_new", "files_changed", "data_added", "errors")}
        if self.partial:
            details["partial"] = True
        if self.forgotten:
            details["forgotten"] = self.forgotten
        return details


class _JobSnapshots(Selection):
    """This host's snapshots of exactly these paths: one job's, none of another's whose
    path set merely contains them."""

    def __contains__(self, snap: object) -> bool:
        return (
            isinstance(snap, Snapshot)
            and snap.hostname in self.hosts
            and sorted(snap.paths) == sorted(self.paths)
        )


def job_paths(job: Job) -> list[str]:
    """The paths a job's snapshots record (a command job's: its one file)."""
    if job.is_command:
        return ["/" + job.filename]
    return [os.path.abspath(os.path.expanduser(p)) for p in job.paths]


async def run_job(repo: Repository, job: Job) -> JobResult:
    """Run ``job`` now and log its event; the caller holds the writers' lock. Never
    raises for the job's own failure (the result says), only when cancelled."""
    result = JobResult(job.name, False, repo.clock())
    began = time.monotonic()
    env = {"PEERBAK_JOB": job.name}
    stage = "before"
    try:
        for argv in job.hooks("before"):
            await run_hook("before", argv, env, job.timeout_seconds)
        stage = "backup"
        result.summary = summary = await _backup(repo, job, env)
        result.snapshot = env["PEERBAK_SNAPSHOT"] = summary["snapshot_id"]
        result.partial = summary["errors"] > 0
        stage = "retention"
        policy = job.keep_policy()
        if not policy.empty() and not result.partial:
            only = _JobSnapshots(hosts=(repo.hostname,), paths=tuple(job_paths(job)))
            decisions = await forget(repo, policy, only=only)
            result.forgotten = sum(not d.kept for d in decisions)
        stage = "after"
        for argv in job.hooks("after"):
            await run_hook("after", argv, env, job.timeout_seconds)
        result.ok = True
    except PeerbakError as exc:
        result.error, result.exit_code = f"{stage}: {exc}", exc.exit_code
    except Exception as exc:  # a bug: told as a failed job, not a dead scheduler
        log.exception("job %s", job.name)
        result.error = f"{stage}: internal error: {type(exc).__name__}: {exc}"
        result.exit_code = INTERNAL
    if not result.ok:
        await _on_error(job, {**env, "PEERBAK_ERROR": result.error})
    elif result.partial:
        result.exit_code = PartialBackup.exit_code
    result.duration = time.monotonic() - began
    result.event = await _note(repo, job, result)
    return result


async def _backup(repo: Repository, job: Job, env: dict[str, str]) -> dict[str, Any]:
    def warn(message: str) -> None:
        log.warning("job %s: %s", job.name, message)

    if not job.is_command:
        return await run_backup(
            repo,
            [Path(p) for p in job_paths(job)],
            excludes=job.exclude,
            tags=job.tags,
            warn=warn,
        )
    output = CommandOutput(job.argv(), env)
    try:
        return await run_backup(repo, [], stdin=(job.filename, output), tags=job.tags, warn=warn)
    finally:
        await asyncio.to_thread(output.close)


async def _on_error(job: Job, env: dict[str, str]) -> None:
    """Every ``on_error`` command, each whatever the others did; their failures are
    logged (the job has failed already)."""
    for argv in job.hooks("on_error"):
        try:
            await run_hook("on_error", argv, env, job.timeout_seconds)
        except PeerbakError as exc:
            log.warning("job %s: %s", job.name, exc)


async def _note(repo: Repository, job: Job, r: JobResult) -> int:
    if not r.ok:
        return await events.note(
            repo.ledger,
            repo.clock(),
            "error",
            "job.failed",
            job.name,
            f"job {job.name} failed: {r.error}",
            **r.details(),
        )
    s = r.summary
    partial = f", {plural(s['errors'], 'file')} could not be read" if r.partial else ""
    forgotten = f", {plural(r.forgotten, 'old snapshot')} forgotten" if r.forgotten else ""
    return await events.note(
        repo.ledger,
        repo.clock(),
        "warning" if r.partial else "info",
        "job.ok",
        job.name,
        f"job {job.name}: snapshot {r.snapshot[:8]} saved, {plural(s['files_new'], 'new file')}, "
        f"{s['data_added']} bytes added in {r.duration:.0f} s{partial}{forgotten}",
        **r.details(),
    )


async def run_prune(repo: Repository, job: Job) -> bool:
    """The prune a job's ``prune_schedule`` asks for, logged as ``prune.done`` or
    ``prune.failed`` (subject: the job); the caller holds the writers' lock."""
    started = repo.clock()
    try:
        report = await prune(repo)
    except PeerbakError as exc:
        await events.note(
            repo.ledger,
            repo.clock(),
            "error",
            "prune.failed",
            job.name,
            f"prune (job {job.name}) failed: {exc}",
            started=started,
            error=str(exc),
        )
        return False
    await events.note(
        repo.ledger,
        repo.clock(),
        "info",
        "prune.done",
        job.name,
        f"prune (job {job.name}): {plural(report['packs_unused'], 'unused pack')} deleted, "
        f"{plural(report['packs_repacked'], 'pack')} repacked",
        started=started,
        packs_deleted=report["packs_deleted"],
        packs_repacked=report["packs_repacked"],
    )
    return True


# --- when: last runs and next runs -------------------------------------------------------------


def started_at(event: Event) -> float:
    """When the run an event tells of began (its ``started``, else the event's time)."""
    value = event.details.get("started")
    return float(value) if isinstance(value, int | float) else event.time


async def last_run(repo: Repository, name: str, kind: str = "job.") -> Event | None:
    found = await repo.ledger.events(kinds=[kind], subject=name, limit=1, newest_first=True)
    return found[0] if found else None


def next_time(job: Job, last: Event | None, now: float, *, prune: bool = False) -> float | None:
    """When ``job`` (or its prune) is next due, without jitter; None if never. The next
    scheduled time after the last run began, so a run missed while the machine slept
    or the daemon was down is due at once, once, however many were missed. A job that
    never ran: an interval one is due now, a calendar one at its next time."""
    schedule = job.prune_when() if prune else job.when()
    if schedule is None:
        return None
    if last is None:
        return now if schedule.every else schedule.next_after(now)
    return schedule.next_after(started_at(last))


async def job_table(repo: Repository, config: Config, now: float) -> list[dict[str, Any]]:
    """What ``peerbak jobs`` shows: each job, its schedule, its last run and its next."""
    return job_rows(config, {j.name: await last_run(repo, j.name) for j in config.job}, now)


def job_rows(config: Config, lasts: dict[str, Event | None], now: float) -> list[dict[str, Any]]:
    """:func:`job_table` from the jobs' last events (none: never run)."""
    rows = []
    for job in config.job:
        last = lasts.get(job.name)
        at = next_time(job, last, now)
        rows.append(
            {
                "name": job.name,
                "paths": job_paths(job),
                "command": job.argv() if job.is_command else None,
                "schedule": job.schedule or None,
                "jitter": job.jitter_seconds,
                "last": None
                if last is None
                else {
                    "time": started_at(last),
                    "result": "ok" if last.kind == "job.ok" else "failed",
                    "level": last.level,
                    "snapshot": last.details.get("snapshot"),
                    "error": last.details.get("error"),
                    "duration": last.details.get("duration"),
                    "event": last.id,
                },
                "next": None if at is None else max(at, now),
            }
        )
    return rows


# --- the daemon's scheduler -----------------------------------------------------------------


@dataclass
class Scheduler:
    """What the daemon keeps between looks: each slot's random delay and when a job
    that never ran was first seen. Clock and randomness are injected, for tests."""

    home: Workspace
    open_repo: Callable[[], Awaitable[Repository]]
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.SystemRandom)
    tz: tzinfo | None = None
    lock_wait: float = LOCK_WAIT
    lock_poll: float = LOCK_POLL
    #: (job, "job" | "prune") → (scheduled time, its drawn delay).
    planned: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    #: When a job that never ran was first seen: its first time is the next after that.
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Jobs and prunes run by this scheduler, in order (for tests and logs).
    ran: list[tuple[str, str]] = field(default_factory=list)
    waiting: str = ""

    async def step(self, stopping: asyncio.Event) -> float:
        """Run every job (and prune) that is due, one at a time; returns the seconds
        until the next look."""
        config = self.home.config()
        tasks = [(j, "job") for j in config.job if j.schedule]
        tasks += [(j, "prune") for j in config.job if j.prune_schedule]
        if not tasks:
            return MAX_WAIT
        wait = MAX_WAIT
        repo = await self.open_repo()
        repo.clock = self.clock
        async with repo:
            for job, what in tasks:
                at = await self._due_at(repo, job, what)
                now = self.clock()
                if at is None:
                    continue
                if at > now:
                    wait = min(wait, at - now)
                    continue
                if stopping.is_set():
                    break
                async with self._locked(job, what, stopping) as held:
                    if not held:
                        wait = min(wait, self.lock_poll)
                        continue
                    self.ran.append((job.name, what))
                    log.info("%s %s: due, running", what, job.name)
                    if what == "job":
                        await run_job(repo, job)
                    else:
                        await run_prune(repo, job)
                wait = 0.0  # look again at once: the next due one, by fresh events
                break
        return wait

    async def _due_at(self, repo: Repository, job: Job, what: str) -> float | None:
        last = await last_run(repo, job.name, "job." if what == "job" else "prune.")
        schedule = job.when() if what == "job" else job.prune_when()
        if schedule is None:
            return None
        key = (job.name, what)
        if last is None and not schedule.every:
            slot = schedule.next_after(self.seen.setdefault(key, self.clock()), self.tz)
        elif last is None:
            slot = self.clock()
        else:
            slot = schedule.next_after(started_at(last), self.tz)
        planned = self.planned.get(key)
        if planned is None or planned[0] != slot:
            planned = self.planned[key] = (slot, jitter_delay(job.jitter_seconds, self.rng))
        return slot + planned[1]

    @contextlib.asynccontextmanager
    async def _locked(self, job: Job, what: str, stopping: asyncio.Event) -> AsyncIterator[bool]:
        """The writers' lock, waited for up to ``lock_wait`` while a backup, prune or
        repair holds it; yields whether it was had."""
        deadline = time.monotonic() + self.lock_wait
        with contextlib.ExitStack() as stack:
            while True:
                try:
                    stack.enter_context(self.home.lock("backup"))
                except Locked as exc:
                    if self.waiting != job.name:
                        log.info("%s %s waits for the lock: %s", what, job.name, exc)
                    self.waiting = job.name
                    if time.monotonic() >= deadline or stopping.is_set():
                        log.warning("%s %s: still locked, tried again later", what, job.name)
                        self.waiting = ""
                        yield False
                        return
                    await _pause(stopping, self.lock_poll)
                    continue
                self.waiting = ""
                yield True
                return


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=max(seconds, 0.0))


async def run_jobs_forever(
    home: Workspace,
    open_repo: Callable[[], Awaitable[Repository]],
    stopping: asyncio.Event,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> None:
    """The daemon's scheduler: due jobs run one at a time until ``stopping`` is set;
    the config is read again at each look, so edits apply within a minute."""
    scheduler = Scheduler(home, open_repo, clock, rng or random.SystemRandom())
    told = ""
    while not stopping.is_set():
        try:
            wait = await scheduler.step(stopping)
            told = ""
        except ConfigError as exc:  # a broken config, or in no pool yet
            if str(exc) != told:
                log.warning("jobs: %s", exc)
                told = str(exc)
            wait = MAX_WAIT
        except PeerbakError as exc:
            log.warning("jobs: %s", exc)
            wait = MAX_WAIT
        except Exception:
            log.exception("jobs: the scheduler's look failed")
            wait = MAX_WAIT
        await _pause(stopping, min(wait, MAX_WAIT))
