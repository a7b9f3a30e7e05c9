"""Schedules: each spelling's next time (in UTC, and across a daylight-saving change),
jitter within its bounds, and refusals that say what is wrong."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from peerbak.core.errors import InputError
from peerbak.core.schedule import jitter_delay, parse_schedule, parse_seconds


def _t(*parts: int, tz: ZoneInfo | None = None) -> float:
    return datetime(*parts, tzinfo=tz or UTC).timestamp()  # type: ignore[arg-type,misc]


#: Wednesday 5 March 2025, 12:00 UTC.
WED_NOON = _t(2025, 3, 5, 12, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hourly", (2025, 3, 5, 13, 0)),
        ("daily", (2025, 3, 6, 0, 0)),
        ("weekly", (2025, 3, 10, 0, 0)),  # the next Monday
        ("monthly", (2025, 4, 1, 0, 0)),
        ("yearly", (2026, 1, 1, 0, 0)),
        ("*-*-* 03:00", (2025, 3, 6, 3, 0)),
        ("*-*-* 12:00", (2025, 3, 6, 12, 0)),  # strictly after: not noon today
        ("*-*-* 12:01", (2025, 3, 5, 12, 1)),
        ("Mon..Fri 22:30", (2025, 3, 5, 22, 30)),
        ("Sat,Sun 10:00", (2025, 3, 8, 10, 0)),
        ("Mon *-*-* 04:15:00", (2025, 3, 10, 4, 15)),
        ("*-*-01 04:00", (2025, 4, 1, 4, 0)),
        ("*-12-25 08:00", (2025, 12, 25, 8, 0)),
        ("*:0/20", (2025, 3, 5, 12, 20)),
        ("*-02-29 00:00", (2028, 2, 29, 0, 0)),
        ("every 15min", (2025, 3, 5, 12, 15)),
        ("every 6h", (2025, 3, 5, 18, 0)),
        ("every 1d", (2025, 3, 6, 12, 0)),
        ("30 3 * * *", (2025, 3, 6, 3, 30)),
        ("*/15 * * * 1-5", (2025, 3, 5, 12, 15)),
        ("0 0 * * 0", (2025, 3, 9, 0, 0)),  # cron's 0 is Sunday
        ("0 0 * * 7", (2025, 3, 9, 0, 0)),  # and so is 7
        ("0 0 13 * fri", (2025, 3, 7, 0, 0)),  # cron: either day field
        ("0 9 1 jan *", (2026, 1, 1, 9, 0)),
    ],
)
def test_next_time_in_utc(text: str, expected: tuple[int, ...]) -> None:
    assert parse_schedule(text).next_after(WED_NOON, UTC) == _t(*expected)


def test_next_times_walk_forward_one_by_one() -> None:
    schedule = parse_schedule("Mon..Fri 22:30")
    t, seen = WED_NOON, []
    for _ in range(4):
        t = schedule.next_after(t, UTC)
        seen.append(datetime.fromtimestamp(t, UTC).strftime("%a %d %H:%M"))
    assert seen == ["Wed 05 22:30", "Thu 06 22:30", "Fri 07 22:30", "Mon 10 22:30"]


def test_local_time_across_daylight_saving_changes() -> None:
    """03:00 every day stays 03:00 on the wall clock (an hour less or more between);
    a time the spring change skips runs an hour later, a doubled one once."""
    paris = ZoneInfo("Europe/Paris")
    daily = parse_schedule("*-*-* 03:00")
    before_spring = _t(2025, 3, 29, 0, 0, tz=paris)
    first = daily.next_after(before_spring, paris)
    second = daily.next_after(first, paris)
    assert datetime.fromtimestamp(first, paris).hour == 3
    assert datetime.fromtimestamp(second, paris).hour == 3
    assert second - first == 23 * 3600
    skipped = parse_schedule("*-*-* 02:30").next_after(_t(2025, 3, 30, 0, 0, tz=paris), paris)
    assert skipped - _t(2025, 3, 30, 0, 0, tz=paris) == 2.5 * 3600  # 03:30 summer time
    doubled = parse_schedule("*-*-* 02:30")
    autumn = _t(2025, 10, 26, 0, 0, tz=paris)
    once = doubled.next_after(autumn, paris)
    assert doubled.next_after(once, paris) - once == 25 * 3600  # not again an hour later


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty schedule"),
        ("*-02-30", "never matches"),
        ("Mon..Fry 22:30", "not a weekday: 'fry'"),
        ("25:00", "hour 25 is out of range"),
        ("*-*-* 03:00:30", "seconds must be 00"),
        ("2024-01-01", "the year must be *"),
        ("every 10s", "the shortest interval is a minute"),
        ("every often", "not a duration"),
        ("Fri..Mon", "runs backwards"),
        ("61 * * * *", "minute 61 is out of range"),
        ("*/0 * * * *", "not a step"),
        ("Mon *-*-* 03:00 extra", "expected [WEEKDAYS] [DATE] [TIME]"),
    ],
)
def test_bad_schedules_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(InputError, match="^" + repr(text).replace("*", r"\*").replace(".", r"\.")):
        parse_schedule(text)
    with pytest.raises(InputError) as info:
        parse_schedule(text)
    assert why in str(info.value)


def test_jitter_stays_within_its_bounds_and_follows_the_rng() -> None:
    rng = random.Random(7)
    delays = [jitter_delay(1800, rng) for _ in range(1000)]
    assert all(0 <= d <= 1800 for d in delays)
    assert max(delays) > 1500
    assert min(delays) < 300
    again = random.Random(7)
    assert [jitter_delay(1800, again) for _ in range(1000)] == delays
    assert jitter_delay(0, rng) == 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90), ("30s", 30), ("15min", 900), ("6h", 21600), ("1d", 86400), ("1.5h", 5400)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["-5", "ten", "5 parsecs", -1, True])
def test_bad_durations(text: str | int) -> None:
    with pytest.raises(InputError):
        parse_seconds(text)
