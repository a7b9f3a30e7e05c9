"""Which snapshots to keep: restic's ``forget`` keep-policy, as a pure function.

Users who know restic know what ``--keep-daily 7 --keep-weekly 4`` means, so peerbak
reproduces restic's ``ApplyPolicy`` (``internal/data/snapshot_policy.go``) rule for
rule rather than inventing its own:

* snapshots are ordered newest first (ties keep their input order, like Go's
  ``sort.Stable``);
* each count rule (last, hourly, daily, weekly, monthly, yearly) keeps a snapshot when
  it is the newest one of a bucket not seen yet (an hour, a day, an ISO year-week, ...)
  and the rule still has a count left; ``-1`` means "no limit". If a rule still has a
  count left when the oldest snapshot is reached, that snapshot is kept too (restic
  ≥ 0.17: "oldest daily snapshot"), which keeps the longest history the counts allow;
* ``within`` keeps every snapshot newer than the newest snapshot minus a
  :class:`Duration`; ``within_hourly`` ... ``within_yearly`` keep one snapshot per
  bucket, but only inside such a window, and never run out;
* ``tags`` keeps every snapshot that has all tags of at least one tag list;
* a snapshot may be kept by several rules; every rule that keeps it is reported, with
  restic's wording ("daily snapshot", "within 1y2m", "has tags [foo]", ...).

Where peerbak differs on purpose:

* Buckets (which day, which week) are computed in ``tz``, UTC unless the caller says
  otherwise, so a decision does not depend on the machine that makes it; restic uses
  the UTC offset recorded in each snapshot.
* An empty policy keeps every snapshot. restic's ``ApplyPolicy`` would keep none;
  its ``forget`` command refuses to run instead ("no policy was specified, no snapshots
  will be removed"), so nothing is removed there either, and a pure function that
  deletes every backup when handed a default-constructed policy is a trap.
* Tag lists are sets, so "has tags [...]" lists the tags sorted, and an empty tag ``""``
  (restic's "has no tags") is matched whatever its position in the list.

Grouping is restic's too: ``forget`` applies the policy to each group of snapshots of
the same host and path set (``--group-by host,paths``), never across them, so
``--keep-last 1`` keeps the last snapshot of *each* backup job (:func:`group`).

Pure: no clock. The reference time for the ``within`` rules is the newest snapshot's
time; pass ``now`` to ignore snapshots dated in the future, as restic does with its
clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final, Generic, Literal, TypeVar

from peerbak.core.errors import InputError

S = TypeVar("S")

#: The counting rules and the window rules, in restic's order (the CLI's --keep-* flags).
COUNT_RULES: Final = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHIN_RULES: Final = ("within", *(f"within-{r}" for r in COUNT_RULES[1:]))

#: Which rule kept a snapshot.
Rule = Literal[
    "last",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "within",
    "within-hourly",
    "within-daily",
    "within-weekly",
    "within-monthly",
    "within-yearly",
    "tags",
    "empty-policy",
]


@dataclass(frozen=True, slots=True)
class Duration:
    """A calendar span, restic's ``Duration``: years and months are calendar steps.

    ``1m`` back from 31 March is "31 February", which normalises to 2 or 3 March, as
    Go's ``AddDate`` does; a fixed number of seconds could not say "a month".
    """

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def __str__(self) -> str:
        """restic's spelling, ``1y2m3d4h``, zero parts left out."""
        parts = ((self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h"))
        return "".join(f"{n}{unit}" for n, unit in parts if n != 0)

    def is_zero(self) -> bool:
        """True when every part is zero: such a rule is off, as in restic."""
        return self.years == 0 and self.months == 0 and self.days == 0 and self.hours == 0


def parse_duration(text: str) -> Duration:
    """Parse restic's duration syntax, ``6y5m234d37h``, into a :class:`Duration`.

    Same rules as restic's ``ParseDuration``: surrounding whitespace is ignored, units
    come in any order, a later number for the same unit wins, parts may be negative
    (:class:`KeepPolicy` refuses those), only ASCII digits count, and ``""`` is the
    zero duration. Anything else raises :class:`~peerbak.core.errors.InputError`.
    """
    units = {"y": 0, "m": 0, "d": 0, "h": 0}
    rest = text.strip()
    while rest:
        negative = rest.startswith("-")
        if negative:
            rest = rest[1:]
        end = 0
        while end < len(rest) and "0" <= rest[end] <= "9":
            end += 1
        if end == 0:
            raise InputError(f"invalid duration {text!r}: no number found")
        num = int(rest[:end]) * (-1 if negative else 1)
        rest = rest[end:]
        if not rest:
            raise InputError(f"invalid duration {text!r}: no unit found after number {num}")
        if rest[0] not in units:
            raise InputError(
                f"invalid duration {text!r}: invalid unit {rest[0]!r} found after number {num}"
            )
        units[rest[0]] = num
        rest = rest[1:]
    return Duration(years=units["y"], months=units["m"], days=units["d"], hours=units["h"])


@dataclass(frozen=True, slots=True)
class KeepPolicy:
    """What to keep, restic's ``ExpirePolicy``; counts are 0 (off), n, or -1 (no limit).

    ``tags`` holds tag lists: a snapshot is kept when it has every tag of any one list
    (``--keep-tag a,b --keep-tag c`` is ``(frozenset({"a", "b"}), frozenset({"c"}))``).
    Counts below -1 and negative durations raise :class:`~peerbak.core.errors.InputError`,
    as restic's ``forget`` refuses them.
    """

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = None
    within_hourly: Duration | None = None
    within_daily: Duration | None = None
    within_weekly: Duration | None = None
    within_monthly: Duration | None = None
    within_yearly: Duration | None = None
    tags: tuple[frozenset[str], ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            name = f.name.replace("_", "-")
            if isinstance(value, int) and value < -1:
                raise InputError(
                    f"keep-{name} is {value}: negative values other than -1 are not allowed"
                )
            if isinstance(value, Duration) and (
                min(value.years, value.months, value.days, value.hours) < 0
            ):
                raise InputError(
                    f"keep-{name} is {value}: durations with negative parts are not allowed"
                )

    def empty(self) -> bool:
        """True when no rule is on (restic's ``Empty``): :func:`apply_policy` keeps all."""
        counts = (self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly)
        return (
            not self.tags
            and not any(counts)
            and all(d is None or d.is_zero() for d in self._durations())
        )

    def _durations(self) -> tuple[Duration | None, ...]:
        return (
            self.within,
            self.within_hourly,
            self.within_daily,
            self.within_weekly,
            self.within_monthly,
            self.within_yearly,
        )


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule that keeps a snapshot: which rule, and restic's words for it."""

    rule: Rule
    text: str  # e.g. "daily snapshot", "oldest yearly snapshot", "within 1y2m"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Decision(Generic[S]):
    """The verdict on one snapshot; ``reasons`` is empty exactly when it is removed.
    ``group`` is the group it was judged in (see :func:`group`), if any."""

    snapshot: S
    kept: bool
    reasons: tuple[Reason, ...]
    group: GroupKey | None = None


#: What snapshots may be grouped by, and restic's default grouping.
GROUP_FIELDS: Final = ("host", "paths", "tags")
GROUP_BY_DEFAULT: Final = frozenset({"host", "paths"})


def parse_group_by(text: str) -> frozenset[str]:
    """restic's ``--group-by``: a comma-separated subset of host, paths and tags; the
    empty string puts every snapshot in one group."""
    parts = {p.strip() for p in text.split(",") if p.strip()}
    unknown = sorted(parts - set(GROUP_FIELDS))
    if unknown:
        raise InputError(
            f"--group-by takes host, paths and tags (comma-separated), not {', '.join(unknown)}"
        )
    return frozenset(parts)


@dataclass(frozen=True, slots=True)
class GroupKey:
    """What the snapshots of one group share: each field None when not grouped by it."""

    host: str | None = None
    paths: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None

    def __str__(self) -> str:
        parts = []
        if self.host is not None:
            parts.append(f"host [{self.host}]")
        if self.paths is not None:
            parts.append(f"paths [{' '.join(self.paths)}]")
        if self.tags is not None:
            parts.append(f"tags [{' '.join(self.tags)}]")
        return ", ".join(parts) or "all snapshots"

    def sort_key(self) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        return (self.host or "", self.paths or (), self.tags or ())


def group(
    snapshots: Sequence[S],
    by: frozenset[str],
    *,
    key: Callable[[S], tuple[str, Iterable[str], Iterable[str]]],
) -> list[tuple[GroupKey, list[S]]]:
    """Snapshots in groups, as restic's ``forget`` and ``snapshots`` make them: by the
    fields in ``by`` (``key`` gives each snapshot's host, paths and tags; paths and tags
    compare as sorted lists). Groups come ordered by their key, members in input order."""
    groups: dict[GroupKey, list[S]] = {}
    for snapshot in snapshots:
        host, paths, tags = key(snapshot)
        k = GroupKey(
            host if "host" in by else None,
            tuple(sorted(paths)) if "paths" in by else None,
            tuple(sorted(set(tags))) if "tags" in by else None,
        )
        groups.setdefault(k, []).append(snapshot)
    return sorted(groups.items(), key=lambda item: item[0].sort_key())


Bucketer = Callable[[datetime, int], Hashable]


def _hour(t: datetime, _nr: int) -> Hashable:
    return (t.year, t.month, t.day, t.hour)


def _day(t: datetime, _nr: int) -> Hashable:
    return (t.year, t.month, t.day)


def _week(t: datetime, _nr: int) -> Hashable:
    iso = t.isocalendar()
    return (iso.year, iso.week)


def _month(t: datetime, _nr: int) -> Hashable:
    return (t.year, t.month)


def _year(t: datetime, _nr: int) -> Hashable:
    return t.year


def _always(_t: datetime, nr: int) -> Hashable:
    return nr


_NOTHING = object()  # the bucket before the first snapshot: equal to no bucket


@dataclass(slots=True)
class _Counter:
    """A count rule while it runs: how many it may still keep, the last bucket kept."""

    rule: Rule
    count: int
    bucket: Bucketer
    text: str
    last: Hashable = _NOTHING


@dataclass(slots=True)
class _Window:
    """A within-bucket rule while it runs: its window's start and the last bucket kept."""

    rule: Rule
    duration: Duration
    cutoff: float
    bucket: Bucketer
    text: str
    last: Hashable = _NOTHING


@dataclass(frozen=True, slots=True)
class _Entry(Generic[S]):
    snapshot: S
    time: float
    tags: frozenset[str]
    local: datetime


def _has_tags(tags: frozenset[str], wanted: frozenset[str]) -> bool:
    """Every wanted tag is there; ``""`` stands for "has no tags" (restic's ``HasTags``)."""
    return all(tag in tags or (tag == "" and not tags) for tag in wanted)


def _add_date(t: datetime, years: int, months: int, days: int) -> datetime | None:
    """Go's ``AddDate``: shift the calendar fields, then normalise (31 Feb → 2/3 Mar).

    None when the result falls outside what :class:`datetime` can hold.
    """
    year, month0 = divmod(t.month - 1 + months, 12)
    try:
        first = t.replace(year=t.year + years + year, month=month0 + 1, day=1)
        return first + timedelta(days=t.day - 1 + days)
    except (ValueError, OverflowError):
        return None


def _cutoff(reference: float | None, span: Duration, tz: tzinfo) -> float:
    """The start of the window ``span`` back from ``reference``; kept means strictly after.

    The calendar part moves the wall clock in ``tz`` (so "1d" across a DST change is a
    calendar day), the hours are exact hours, as ``AddDate(...).Add(-h)`` in restic.
    Before year 1 (``9999y``), or with no reference at all, the window has no start.
    """
    if reference is None:
        return -math.inf
    wall = datetime.fromtimestamp(reference, tz)
    shifted = _add_date(wall, -span.years, -span.months, -span.days)
    if shifted is None:
        return -math.inf
    # Exact, in whole microseconds: aware datetimes sharing a tzinfo subtract as wall
    # clocks, so take each one's offset out first.
    wall_utc = wall.replace(tzinfo=None) - (wall.utcoffset() or timedelta())
    shifted_utc = shifted.replace(tzinfo=None) - (shifted.utcoffset() or timedelta())
    back = (wall_utc - shifted_utc) / timedelta(microseconds=1) / 1e6
    return reference - back - span.hours * 3600.0


def _entries(
    snapshots: Sequence[S], key: Callable[[S], tuple[float, Iterable[str]]], tz: tzinfo
) -> list[_Entry[S]]:
    """Each snapshot with its time and tags, newest first, ties in input order."""
    entries: list[_Entry[S]] = []
    for snapshot in snapshots:
        when, tags = key(snapshot)
        seconds = float(when)
        try:
            if not math.isfinite(seconds):
                raise ValueError(seconds)
            local = datetime.fromtimestamp(seconds, tz)
        except (ValueError, OverflowError, OSError) as exc:
            raise InputError(f"snapshot time {seconds!r} is not a usable date") from exc
        entries.append(_Entry(snapshot, seconds, frozenset(tags), local))
    entries.sort(key=lambda e: -e.time)  # stable, like Go's sort.Stable
    return entries


def apply_policy(
    snapshots: Sequence[S],
    policy: KeepPolicy,
    *,
    key: Callable[[S], tuple[float, Iterable[str]]],
    tz: tzinfo = UTC,
    now: float | None = None,
) -> list[Decision[S]]:
    """Decide, for every snapshot, whether ``policy`` keeps it and why: restic's rules.

    ``snapshots`` may come in any order and be of any type; ``key`` gives each one's
    time (Unix seconds) and tags. The answer holds one :class:`Decision` per snapshot,
    newest first. Buckets are calendar hours/days/ISO weeks/months/years in ``tz``. The
    ``within`` rules count back from the newest snapshot, or, when ``now`` is given,
    from the newest one before ``now`` (restic skips snapshots from the future).

    Grouping (by host or paths) is the caller's business: call once per group. A
    policy with only tag rules may keep nothing; restic's ``forget`` then refuses to
    delete the group's last snapshot, and so should the caller.
    """
    entries = _entries(snapshots, key, tz)
    if policy.empty():
        everything = (Reason("empty-policy", "no policy: nothing is removed"),)
        return [Decision(e.snapshot, True, everything) for e in entries]

    candidates = [e.time for e in entries if now is None or e.time < now]
    reference = max(candidates) if candidates else None

    counters = [
        c
        for c in (
            _Counter("last", policy.last, _always, "last snapshot"),
            _Counter("hourly", policy.hourly, _hour, "hourly snapshot"),
            _Counter("daily", policy.daily, _day, "daily snapshot"),
            _Counter("weekly", policy.weekly, _week, "weekly snapshot"),
            _Counter("monthly", policy.monthly, _month, "monthly snapshot"),
            _Counter("yearly", policy.yearly, _year, "yearly snapshot"),
        )
        if c.count != 0
    ]
    window_rules: tuple[tuple[Rule, Duration | None, Bucketer, str], ...] = (
        ("within-hourly", policy.within_hourly, _hour, "hourly within"),
        ("within-daily", policy.within_daily, _day, "daily within"),
        ("within-weekly", policy.within_weekly, _week, "weekly within"),
        ("within-monthly", policy.within_monthly, _month, "monthly within"),
        ("within-yearly", policy.within_yearly, _year, "yearly within"),
    )
    windows = [
        _Window(rule, span, _cutoff(reference, span, tz), bucket, text)
        for rule, span, bucket, text in window_rules
        if span is not None and not span.is_zero()
    ]
    within = policy.within if policy.within is not None and not policy.within.is_zero() else None
    within_cutoff = _cutoff(reference, within, tz) if within is not None else 0.0

    oldest = len(entries) - 1
    decisions: list[Decision[S]] = []
    for nr, entry in enumerate(entries):
        reasons: list[Reason] = []
        for wanted in policy.tags:
            if _has_tags(entry.tags, wanted):
                reasons.append(Reason("tags", f"has tags [{', '.join(sorted(wanted))}]"))
        if within is not None and entry.time > within_cutoff:
            reasons.append(Reason("within", f"within {within}"))
        for counter in counters:
            if counter.count == 0:
                continue  # used up
            value = counter.bucket(entry.local, nr)
            if value != counter.last or nr == oldest:
                prefix = "oldest " if value == counter.last else ""
                counter.last = value
                if counter.count > 0:
                    counter.count -= 1
                reasons.append(Reason(counter.rule, prefix + counter.text))
        for window in windows:
            if entry.time <= window.cutoff:
                continue
            value = window.bucket(entry.local, nr)
            if value != window.last or nr == oldest:
                prefix = "oldest " if value == window.last else ""
                window.last = value
                reasons.append(Reason(window.rule, f"{prefix}{window.text} {window.duration}"))
        decisions.append(Decision(entry.snapshot, bool(reasons), tuple(reasons)))
    return decisions
