"""When a backup job runs: a small, pure subset of systemd's ``OnCalendar=``, intervals,
and cron lines, all answering one question: the first time after ``t``.

Three spellings, told apart by their shape:

* **calendar** (systemd): ``[WEEKDAYS] [DATE] [TIME]`` such as ``*-*-* 03:00``,
  ``Mon..Fri 22:30``, ``Sat,Sun *-*-* 10:00``, ``*-*-01 04:00``, ``*:0/15``, and the
  shorthands ``hourly``, ``daily``, ``weekly`` (Monday 00:00), ``monthly`` (the 1st,
  00:00) and ``yearly``. A missing date is every day, a missing time is midnight;
  each field is ``*``, a number, a list ``a,b``, a range ``a..b`` and an optional
  step ``/n``. The year must be ``*``; seconds must be 0 (the resolution is a minute).
* **interval**: ``every 15min``, ``every 6h``, ``every 1d``: that long after the last
  run started.
* **cron**: five fields ``minute hour day-of-month month day-of-week`` (``30 3 * * *``,
  ``*/15 * * * 1-5``); as in cron, when both day fields are restricted a day matching
  either runs.

Times are wall-clock times in ``tz`` (``None``: the machine's local time, read through
the C library as :meth:`datetime.fromtimestamp` does). Across a daylight-saving change a
wall-clock time that does not exist runs an hour later, one that happens twice runs
once (the first). Pure: no clock of its own; the caller passes the times.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Final

from peerbak.core.errors import InputError

if TYPE_CHECKING:
    import random

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS: Final = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
SHORTHANDS: Final = {
    "minutely": "*-*-* *:*",
    "hourly": "*-*-* *:00",
    "daily": "*-*-* 00:00",
    "weekly": "Mon *-*-* 00:00",
    "monthly": "*-*-01 00:00",
    "yearly": "*-01-01 00:00",
    "annually": "*-01-01 00:00",
}
_UNITS: Final = {
    "": 1,
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
#: Steps the search may take before a schedule counts as one that never matches
#: (``*-02-30``); a leap day needs a few thousand at most.
_SEARCH_LIMIT: Final = 100_000
#: A fixed time to check, at parse time, that a schedule matches at all.
_REFERENCE: Final = 1_700_000_000.0


def parse_seconds(value: str | float) -> float:
    """``90``, ``"30s"``, ``"15min"``, ``"6h"``, ``"1d"``, ``"2w"`` → seconds (≥ 0)."""
    if isinstance(value, bool):
        raise InputError(f"not a duration: {value!r} (try 30s, 15min, 6h or 1d)")
    if isinstance(value, int | float):
        if value < 0:
            raise InputError(f"a duration cannot be negative: {value}")
        return float(value)
    match = _DURATION_RE.fullmatch(value.strip().lower())
    if match is None or match.group(2) not in _UNITS:
        raise InputError(f"not a duration: {value!r} (try 30s, 15min, 6h or 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def jitter_delay(jitter: float, rng: random.Random) -> float:
    """A random delay in ``[0, jitter]`` drawn from ``rng``, so that nodes sharing a
    schedule do not all reach their friends in the same second."""
    return rng.uniform(0.0, jitter) if jitter > 0 else 0.0


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; :meth:`next_after` gives its next time."""

    text: str
    #: Seconds between runs for ``every …``; 0 for a calendar or cron schedule.
    every: float = 0.0
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    #: Days of the month, or None for any.
    days: frozenset[int] | None = None
    months: frozenset[int] = frozenset(range(1, 13))
    #: Weekdays (0 is Monday), or None for any.
    weekdays: frozenset[int] | None = None
    #: cron's rule: with both day fields restricted, either one matching is enough.
    either_day: bool = False

    def __str__(self) -> str:
        return self.text

    def next_after(self, t: float, tz: tzinfo | None = None) -> float:
        """The first time strictly after ``t`` (epoch seconds) this schedule names."""
        if self.every:
            return t + self.every
        cur = (_local(t, tz) + timedelta(minutes=1)).replace(second=0, microsecond=0)
        for _ in range(_SEARCH_LIMIT):
            if cur.month not in self.months:
                year, month = (cur.year + 1, 1) if cur.month == 12 else (cur.year, cur.month + 1)
                cur = datetime(year, month, 1)
            elif not self._day_matches(cur):
                cur = datetime(cur.year, cur.month, cur.day) + timedelta(days=1)
            elif cur.hour not in self.hours:
                cur = cur.replace(minute=0) + timedelta(hours=1)
            elif cur.minute not in self.minutes:
                cur += timedelta(minutes=1)
            else:
                stamp = _stamp(cur, tz)
                if stamp > t:  # a repeated hour's second pass maps back before t
                    return stamp
                cur += timedelta(minutes=1)
        raise InputError(f"{self.text!r} never matches a real date")

    def _day_matches(self, day: datetime) -> bool:
        dom = self.days is None or day.day in self.days
        dow = self.weekdays is None or day.weekday() in self.weekdays
        return (dom or dow) if self.either_day else (dom and dow)


def _local(t: float, tz: tzinfo | None) -> datetime:
    """``t`` as a naive wall-clock time in ``tz`` (None: local time)."""
    return datetime.fromtimestamp(t, tz).replace(tzinfo=None) if tz else datetime.fromtimestamp(t)


def _stamp(wall: datetime, tz: tzinfo | None) -> float:
    return wall.replace(tzinfo=tz).timestamp() if tz else wall.timestamp()


def parse_schedule(text: str) -> Schedule:
    """A schedule from its text; :class:`InputError` saying what is wrong otherwise."""
    try:
        return _parse(text)
    except InputError as exc:
        if str(exc).startswith(repr(text)):
            raise
        raise InputError(f"{text!r}: {exc}") from None


def _parse(text: str) -> Schedule:
    clean = " ".join(text.split())
    if not clean:
        raise InputError("an empty schedule (try daily, *-*-* 03:00 or every 6h)")
    lower = clean.lower()
    if lower.startswith("every "):
        seconds = parse_seconds(lower[len("every ") :])
        if seconds < 60:
            raise InputError(f"{text!r}: the shortest interval is a minute")
        return Schedule(clean, every=seconds)
    tokens = clean.split(" ")
    if len(tokens) == 5 and not any(":" in t for t in tokens):
        schedule = _cron(clean, tokens)
    else:
        schedule = _calendar(clean, SHORTHANDS.get(lower, clean))
    schedule.next_after(_REFERENCE, UTC)  # one that never matches fails here, not later
    return schedule


def _calendar(text: str, spec: str) -> Schedule:
    tokens = spec.split(" ")
    weekdays: frozenset[int] | None = None
    if tokens and re.match(r"[a-zA-Z]", tokens[0]):
        weekdays = _field(tokens.pop(0), 0, 6, WEEKDAYS, "weekday", ranges="..")
    if len(tokens) > 2:
        raise InputError(f"{text!r}: expected [WEEKDAYS] [DATE] [TIME], e.g. Mon..Fri 22:30")
    date: str | None = None
    time: str | None = None
    for token in tokens:
        if ":" in token and time is None:
            time = token
        elif "-" in token and ":" not in token and date is None:
            date = token
        else:
            raise InputError(f"{text!r}: {token!r} is not a date (*-*-*) or a time (HH:MM)")
    date, time = date or "*-*-*", time or "00:00"
    parts = date.split("-")
    if len(parts) == 2:
        parts = ["*", *parts]
    if len(parts) != 3:
        raise InputError(f"{text!r}: a date is YEAR-MONTH-DAY, e.g. *-*-01")
    if parts[0] != "*":
        raise InputError(f"{text!r}: the year must be * (a job repeats)")
    clock = time.split(":")
    if len(clock) not in (2, 3):
        raise InputError(f"{text!r}: a time is HH:MM, e.g. 03:00")
    if len(clock) == 3 and _field(clock[2], 0, 59, (), "second", ranges="..") != {0}:
        raise InputError(f"{text!r}: seconds must be 00 (a schedule's resolution is a minute)")
    day_field = parts[2]
    return Schedule(
        text,
        minutes=_field(clock[1], 0, 59, (), "minute", ranges=".."),
        hours=_field(clock[0], 0, 23, (), "hour", ranges=".."),
        days=None if day_field == "*" else _field(day_field, 1, 31, (), "day", ranges=".."),
        months=_field(parts[1], 1, 12, MONTHS, "month", ranges=".."),
        weekdays=weekdays,
    )


def _cron(text: str, tokens: list[str]) -> Schedule:
    minute, hour, dom, month, dow = tokens
    days = None if dom == "*" else _field(dom, 1, 31, (), "day of month", ranges="-")
    weekdays: frozenset[int] | None = None
    if dow != "*":
        # cron counts 0 (and 7) as Sunday; here 0 is Monday.
        cron_days = _field(dow, 0, 7, ("sun", *WEEKDAYS), "day of week", ranges="-")
        weekdays = frozenset((d + 6) % 7 for d in cron_days)
    return Schedule(
        text,
        minutes=_field(minute, 0, 59, (), "minute", ranges="-"),
        hours=_field(hour, 0, 23, (), "hour", ranges="-"),
        days=days,
        months=_field(month, 1, 12, MONTHS, "month", ranges="-"),
        weekdays=weekdays,
        either_day=days is not None and weekdays is not None,
    )


def _field(
    text: str, low: int, high: int, names: Iterable[str], what: str, *, ranges: str
) -> frozenset[int]:
    """``*``, ``5``, ``1,15``, ``1..5`` (cron: ``1-5``), ``*/15``, ``0/20``, or names
    (``Mon..Fri``, ``jan``) → the values it allows, each within ``[low, high]``."""
    named = {name: i + low for i, name in enumerate(names)}

    def value(token: str) -> int:
        token = token.strip().lower()
        if token[:3] in named and token.isalpha():
            return named[token[:3]]
        if not token.isdigit():
            raise InputError(f"not a {what}: {token!r}")
        number = int(token)
        if not low <= number <= high:
            raise InputError(f"{what} {number} is out of range ({low}..{high})")
        return number

    allowed: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise InputError(f"not a step: {item!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif ranges in base:
            a, _, b = base.partition(ranges)
            first, last = value(a), value(b)
            if first > last:
                raise InputError(f"a {what} range runs backwards: {item!r}")
        else:
            first = value(base)
            last = high if slash else first
        allowed.update(range(first, last + 1, step))
    if not allowed:
        raise InputError(f"no {what} in {text!r}")
    return frozenset(allowed)
