"""Backup jobs as the config declares them (``[[job]]`` tables), checked at load.

A job backs up ``paths`` (or the output of ``command``, as ``backup --stdin`` does),
then forgets its own old snapshots by its ``keep_*`` rules, with hooks around it. The
daemon runs it on its ``schedule``; ``peerbak run`` runs it now. Pure: parsing and
checking only (running is :mod:`peerbak.services.jobs`).
"""

from __future__ import annotations

import functools
import posixpath
import re
import shlex
from collections.abc import Callable
from typing import Annotated, Final, Literal

import msgspec

from peerbak.core.errors import InputError
from peerbak.core.retention import KeepPolicy, parse_duration
from peerbak.core.schedule import Schedule, parse_schedule, parse_seconds

NAME_RE: Final = re.compile(r"[a-z0-9_-]{1,64}")
HOOKS: Final = ("before", "after", "on_error")
#: Seconds each hook may run unless the job says otherwise.
DEFAULT_TIMEOUT: Final = "10min"

#: One command (a string split as a shell would, run without one) or several, each a
#: string or an argument list: ``"a"``, ``["a", "b"]`` (two commands), ``[["a", "x y"]]``.
Hook = str | list[str | list[str]]
HookName = Literal["before", "after", "on_error"]


class Job(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One ``[[job]]`` table."""

    name: Annotated[str, msgspec.Meta(max_length=64)]
    paths: list[str] = []
    #: A command whose standard output is backed up as one file, ``stdin_filename``.
    command: str | list[str] = ""
    #: The file name the command's output gets in the snapshot (default: the job's name).
    stdin_filename: str = ""
    exclude: list[str] = []
    tags: list[str] = []
    #: When the daemon runs it (empty: only ``peerbak run``).
    schedule: str = ""
    #: A random delay up to this long is added to each scheduled time.
    jitter: str | float = 0
    #: Seconds (or "10min") each hook may run before it is killed.
    timeout: str | float = DEFAULT_TIMEOUT
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: str = ""
    #: When the daemon prunes the pool (deletes what no snapshot uses); empty: never.
    prune_schedule: str = ""
    before: Hook = []
    after: Hook = []
    on_error: Hook = []

    @property
    def is_command(self) -> bool:
        return bool(self.command)

    def argv(self) -> list[str]:
        """The command job's argument list."""
        return _argv(self.command)

    @property
    def filename(self) -> str:
        return self.stdin_filename or self.name

    def when(self) -> Schedule | None:
        return parse_schedule(self.schedule) if self.schedule else None

    def prune_when(self) -> Schedule | None:
        return parse_schedule(self.prune_schedule) if self.prune_schedule else None

    @property
    def jitter_seconds(self) -> float:
        return parse_seconds(self.jitter)

    @property
    def timeout_seconds(self) -> float:
        return parse_seconds(self.timeout)

    def hooks(self, which: HookName) -> list[list[str]]:
        """The hook's commands, each an argument list."""
        value = getattr(self, which)
        commands = [value] if isinstance(value, str) else value
        return [_argv(c) for c in commands]

    def keep_policy(self) -> KeepPolicy:
        return KeepPolicy(
            last=self.keep_last,
            hourly=self.keep_hourly,
            daily=self.keep_daily,
            weekly=self.keep_weekly,
            monthly=self.keep_monthly,
            yearly=self.keep_yearly,
            within=parse_duration(self.keep_within) if self.keep_within else None,
        )


class JobConfigError(InputError):
    """A job's table is wrong: which job (by position and name), which key, and why."""

    def __init__(self, index: int, name: str, key: str, why: str) -> None:
        super().__init__(f"job {name!r}: {key}: {why}" if name else f"job {index + 1}: {why}")
        self.index = index
        self.name = name
        self.key = key
        self.why = why


def _argv(command: str | list[str]) -> list[str]:
    if isinstance(command, str):
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise InputError(f"cannot split {command!r}: {exc}") from None
    else:
        words = list(command)
    if not words or not words[0]:
        raise InputError("an empty command")
    return words


def _path_key(path: str) -> str:
    """A path as retention compares them (``~`` is the daemon user's home, kept as is)."""
    return posixpath.normpath(path)


def check_jobs(jobs: list[Job]) -> None:
    """Every job's values, and that names and what they back up are each unique (a
    job's retention touches only its own snapshots: host and path set)."""
    names: dict[str, int] = {}
    sources: dict[tuple[str, ...], str] = {}
    for index, job in enumerate(jobs):
        if NAME_RE.fullmatch(job.name) is None:
            raise JobConfigError(
                index, "", "name", f"name {job.name!r}: use a-z, 0-9, _ and - only"
            )
        if job.name in names:
            raise JobConfigError(
                index, job.name, "name", f"a second job of that name (job {names[job.name] + 1})"
            )
        names[job.name] = index
        source = _check_job(index, job)
        if source in sources:
            raise JobConfigError(
                index,
                job.name,
                "paths",
                f"job {sources[source]!r} backs up the same: each job needs its own paths "
                "(or stdin_filename), or their retention would mix",
            )
        sources[source] = job.name


def _check_job(index: int, job: Job) -> tuple[str, ...]:
    """One job's values; returns what it backs up (its snapshots' path set)."""

    def bad(key: str, why: str) -> JobConfigError:
        return JobConfigError(index, job.name, key, why)

    source = _source(job, bad)
    _check(bad, "schedule", job.when)
    _check(bad, "prune_schedule", job.prune_when)
    _check(bad, "jitter", lambda: job.jitter_seconds)
    _check(bad, "timeout", lambda: job.timeout_seconds)
    if job.timeout_seconds <= 0:
        raise bad("timeout", "must be more than 0")
    if job.keep_within:
        _check(bad, "keep_within", lambda: parse_duration(job.keep_within))
    _check(bad, "keep_*", job.keep_policy)
    for hook in HOOKS:
        _check(bad, hook, functools.partial(job.hooks, hook))
    return source


def _source(job: Job, bad: Callable[[str, str], JobConfigError]) -> tuple[str, ...]:
    """What the job backs up, as its snapshots' path set; checked."""
    if bool(job.paths) == bool(job.command):
        raise bad("paths", "give either paths or command (a job backs up one or the other)")
    if not job.is_command:
        for path in job.paths:
            if not path.startswith(("/", "~")):
                raise bad("paths", f"{path!r} is relative: give an absolute path (or ~/…)")
        return tuple(sorted({_path_key(p) for p in job.paths}))
    _check(bad, "command", job.argv)
    if job.exclude:
        raise bad("exclude", "a command job backs up one stream: nothing to exclude")
    name = job.filename
    if "/" in name or name in (".", ".."):
        raise bad("stdin_filename", f"wants a file name, not {name!r}")
    return ("/" + name,)


def _check(bad: Callable[[str, str], JobConfigError], key: str, fn: Callable[[], object]) -> None:
    """Call ``fn``; an InputError becomes ``bad(key, why)``."""
    try:
        fn()
    except InputError as exc:
        raise bad(key, str(exc)) from None
