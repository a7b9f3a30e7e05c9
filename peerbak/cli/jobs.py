"""The config's backup jobs: ``run`` runs them now, ``jobs`` lists them (the daemon runs
them on their schedules)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from peerbak.cli.kit import (
    emit_table,
    fail,
    human_size,
    open_home,
    pool_call,
    repo_call,
    rfc3339,
    run,
)
from peerbak.cli.kit import when as local_time
from peerbak.core.errors import JobFailed, NotFoundError, PartialBackup
from peerbak.core.words import plural

if TYPE_CHECKING:
    from peerbak.core.jobs import Job
    from peerbak.services.jobs import JobResult
    from peerbak.services.repository import Repository


def _chosen(jobs: list[Job], name: str | None) -> list[Job]:
    if not jobs:
        raise NotFoundError("no jobs in the config: add a [[job]] table (see the README)")
    if name is None:
        return jobs
    found = [j for j in jobs if j.name == name]
    if not found:
        raise NotFoundError(f"no job named {name!r} (jobs: {', '.join(j.name for j in jobs)})")
    return found


@click.command("run")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per job run.")
def run_jobs(name: str | None, as_json: bool) -> None:
    """Run the job NAME from the config now, in this process (every job, one after the
    other, without NAME). Exits with the code of the failure when a job fails: 1 for a
    hook or the command, 3 for a partial backup, 75 for members out of reach, ..."""
    from peerbak.services.jobs import run_job

    home = run(as_json, open_home)
    chosen = run(as_json, lambda: _chosen(home.config().job, name))

    async def go(repo: Repository) -> list[JobResult]:
        return [await run_job(repo, job) for job in chosen]

    results = repo_call(as_json, go, lock="backup", home=home)
    for r in results:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "message_type": "job",
                        "job": r.job,
                        "ok": r.ok,
                        "exit_code": r.exit_code,
                        "event": r.event,
                        **r.details(),
                    }
                )
            )
        elif r.ok:
            s = r.summary
            click.echo(
                f"job {r.job}: snapshot {r.snapshot[:8]} saved, "
                f"{plural(s['files_new'], 'new file')}, {human_size(s['data_added'])} added"
                + (f", {plural(s['errors'], 'file')} could not be read" if r.partial else "")
                + (f", {plural(r.forgotten, 'old snapshot')} forgotten" if r.forgotten else "")
            )
        else:
            click.echo(f"job {r.job} failed: {r.error}", err=True)
    failed = [r for r in results if not r.ok]
    if failed:
        fail(
            as_json,
            JobFailed(
                f"{plural(len(failed), 'job')} failed: {', '.join(r.job for r in failed)}",
                exit_code=failed[0].exit_code,
            ),
        )
    if any(r.partial for r in results):
        fail(as_json, PartialBackup("some source files could not be read"))


@click.command("jobs")
@click.option("--json", "as_json", is_flag=True)
def jobs(as_json: bool) -> None:
    """List the config's backup jobs: schedule, last run (its result, snapshot or error)
    and next run (before its random delay, if it has a jitter)."""
    from peerbak.services.jobs import job_rows, job_table

    home = run(as_json, open_home)
    config = run(as_json, home.config)
    now = time.time()

    async def go(repo: Repository) -> list[dict[str, Any]]:
        return await job_table(repo, config, now)

    rows = pool_call(as_json, go, home=home)
    if rows is None:  # in no pool yet: the jobs, never run
        rows = run(as_json, lambda: job_rows(config, {}, now))
    if as_json:
        click.echo(json.dumps([_json_row(r) for r in rows]))
        return
    if not rows:
        click.echo("no jobs in the config (add a [[job]] table; see the README)", err=True)
        return
    emit_table(
        plural(len(rows), "job"),
        ["job", "backs up", "schedule", "last run", "result", "next run"],
        (_row(r) for r in rows),
    )


def _json_row(r: dict[str, Any]) -> dict[str, Any]:
    """Times as RFC 3339, as every command's JSON gives them."""
    last = r["last"] and {**r["last"], "time": rfc3339(r["last"]["time"])}
    return {**r, "last": last, "next": None if r["next"] is None else rfc3339(r["next"])}


def _row(r: dict[str, Any]) -> list[str]:
    last = r["last"]
    if last is None:
        result = "-"
    elif last["result"] == "ok":
        result = f"ok {str(last['snapshot'] or '')[:8]}" + (
            " (partial)" if last["level"] == "warning" else ""
        )
    else:
        result = f"failed: {last['error']}"
    backs_up = " ".join(r["command"]) if r["command"] else "\n".join(r["paths"])
    return [
        r["name"],
        backs_up,
        r["schedule"] or "(run by hand)",
        "never" if last is None else local_time(last["time"]),
        result,
        "-" if r["next"] is None else local_time(r["next"]),
    ]


COMMANDS = (run_jobs, jobs)
