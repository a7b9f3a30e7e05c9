"""Retention: restic's ``forget`` policy, checked against restic's own golden files.

The snapshot table, the policies and the expected results are restic's
``TestApplyPolicy`` (``internal/data/snapshot_policy_test.go`` and
``internal/data/testdata/policy_keep_snapshots_N``, restic commit a80be147), copied
here: which snapshots are kept, in which order, and restic's words for why.
"""

from __future__ import annotations

import math
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Final

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from peerbak.core.errors import InputError, PeerbakError
from peerbak.core.retention import (
    Decision,
    Duration,
    KeepPolicy,
    Reason,
    apply_policy,
    parse_duration,
)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _key(index: int) -> tuple[float, tuple[str, ...]]:
    when, tags = SNAPSHOTS[index]
    return _ts(when), tags


def _golden(case: int) -> list[tuple[int, tuple[str, ...]]]:
    """restic's kept snapshots for a case: (index into SNAPSHOTS, reasons), newest first."""
    rows: list[tuple[int, tuple[str, ...]]] = []
    for line in GOLDEN[case].strip("\n").splitlines():
        head, _, matches = line.partition("|")
        reasons = tuple(m.strip() for m in matches.split(";"))
        if not head.strip():  # a continuation line: more reasons for the row above
            rows[-1] = (rows[-1][0], rows[-1][1] + reasons)
            continue
        index, when = head.split(maxsplit=1)
        assert SNAPSHOTS[int(index)][0] == when.strip(), line  # the table is consistent
        rows.append((int(index), reasons))
    return rows


#: Where peerbak words a reason differently on purpose: tag lists are sets, shown sorted.
WORDING: Final[dict[str, str]] = {"has tags [foo, bar]": "has tags [bar, foo]"}


def _kept(decisions: list[Decision[int]]) -> list[int]:
    return [d.snapshot for d in decisions if d.kept]


# --- restic's TestApplyPolicy ---------------------------------------------------------


@pytest.mark.parametrize("case", range(1, 40))
def test_apply_policy_matches_restic_golden_file(case: int) -> None:
    policy = POLICIES[case]
    decisions = apply_policy(range(len(SNAPSHOTS)), policy, key=_key)

    got = [(d.snapshot, tuple(str(r) for r in d.reasons)) for d in decisions if d.kept]
    want = [(i, tuple(WORDING.get(m, m) for m in ms)) for i, ms in _golden(case)]
    assert got == want

    # restic's own checks: every snapshot decided once, no more kept than the counts allow
    assert sorted(d.snapshot for d in decisions) == list(range(len(SNAPSHOTS)))
    assert all(d.kept == bool(d.reasons) for d in decisions)
    counts = [getattr(policy, f) for f in COUNTS]
    if -1 not in counts and sum(counts) > 0:
        assert len(got) <= sum(counts)
    times = [_key(d.snapshot)[0] for d in decisions]
    assert times == sorted(times, reverse=True)


def test_empty_policy_keeps_everything_where_restic_apply_policy_keeps_nothing() -> None:
    # restic's golden file 0 keeps nothing, but its forget command refuses an empty
    # policy ("no policy was specified, no snapshots will be removed"): nothing is lost.
    assert _golden(0) == []
    decisions = apply_policy(range(len(SNAPSHOTS)), POLICIES[0], key=_key)
    assert len(decisions) == len(SNAPSHOTS)
    assert all(d.kept for d in decisions)
    assert {d.reasons for d in decisions} == {
        (Reason("empty-policy", "no policy: nothing is removed"),)
    }


def test_reasons_name_their_rule() -> None:
    decisions = apply_policy(range(len(SNAPSHOTS)), POLICIES[17], key=_key)
    rules = {(r.rule, r.text) for d in decisions for r in d.reasons}
    assert rules == {
        ("daily", "daily snapshot"),
        ("weekly", "weekly snapshot"),
        ("monthly", "monthly snapshot"),
        ("yearly", "yearly snapshot"),
        ("yearly", "oldest yearly snapshot"),
    }
    decisions = apply_policy(range(len(SNAPSHOTS)), POLICIES[35], key=_key)
    assert {r.rule for d in decisions for r in d.reasons} == {
        "within",
        "within-hourly",
        "within-daily",
        "within-weekly",
        "within-monthly",
        "within-yearly",
    }


# --- restic's TestForgetOptionValues and TestExpireSnapshotOps --------------------------

COUNTS: Final = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
SPANS: Final = (
    "within",
    "within_hourly",
    "within_daily",
    "within_weekly",
    "within_monthly",
    "within_yearly",
)


def _policy(field: str, value: object) -> KeepPolicy:
    fields: dict[str, Any] = {field: value}
    return KeepPolicy(**fields)


@pytest.mark.parametrize("field", COUNTS)
@pytest.mark.parametrize("value", [1, 0, -1])
def test_counts_may_be_positive_zero_or_unlimited(field: str, value: int) -> None:
    _policy(field, value)


@pytest.mark.parametrize("field", COUNTS)
def test_counts_below_minus_one_are_refused(field: str) -> None:
    with pytest.raises(InputError, match="negative values other than -1"):
        _policy(field, -2)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("within", "-1y2m3d3h"),
        ("within_hourly", "1y-2m3d3h"),
        ("within_daily", "1y2m-3d3h"),
        ("within_weekly", "1y2m3d-3h"),
        ("within_monthly", "-2y4m6d8h"),
        ("within_yearly", "2y-4m6d8h"),
    ],
)
def test_negative_durations_are_refused(field: str, text: str) -> None:
    _policy(field, parse_duration(text.replace("-", "")))
    with pytest.raises(InputError, match="negative parts"):
        _policy(field, parse_duration(text))


def test_empty() -> None:
    assert KeepPolicy().empty()
    assert KeepPolicy(tags=()).empty()
    assert KeepPolicy(within=Duration(), within_daily=parse_duration("")).empty()
    assert not KeepPolicy(daily=7, weekly=2, monthly=3, yearly=10).empty()
    assert not KeepPolicy(last=-1).empty()
    assert not KeepPolicy(within_yearly=Duration(hours=1)).empty()
    assert not KeepPolicy(tags=(frozenset(),)).empty()  # one tag list, matching all


# --- tags, windows, time zones --------------------------------------------------------


def _apply(
    times: list[float],
    policy: KeepPolicy,
    tags: list[frozenset[str]] | None = None,
    *,
    tz: tzinfo = UTC,
    now: float | None = None,
) -> list[Decision[int]]:
    marks = tags or [frozenset()] * len(times)
    return apply_policy(
        range(len(times)), policy, key=lambda i: (times[i], marks[i]), tz=tz, now=now
    )


def test_tag_lists_need_every_tag_of_one_list() -> None:
    tags = [frozenset({"a", "b"}), frozenset({"a"}), frozenset({"b", "c"}), frozenset()]
    times = [4.0, 3.0, 2.0, 1.0]
    ab = KeepPolicy(tags=(frozenset({"a", "b"}),))
    assert _kept(_apply(times, ab, tags)) == [0]
    either = KeepPolicy(tags=(frozenset({"a"}), frozenset({"c"})))
    assert _kept(_apply(times, either, tags)) == [0, 1, 2]
    untagged = KeepPolicy(tags=(frozenset({""}),))  # restic: "" matches "no tags"
    assert _kept(_apply(times, untagged, tags)) == [3]
    anything = KeepPolicy(tags=(frozenset(),))
    assert [d.reasons for d in _apply(times, anything, tags)] == [
        (Reason("tags", "has tags []"),)
    ] * 4


def test_tag_only_policy_may_keep_nothing() -> None:
    # restic's forget then refuses to delete the last snapshot; that is the caller's job
    decisions = _apply([1.0, 2.0], KeepPolicy(tags=(frozenset({"x"}),)))
    assert not any(d.kept for d in decisions)


def test_month_back_from_31_march_is_2_march_as_in_go() -> None:
    # Go's AddDate(0, -1, 0) on 2016-03-31 gives "2016-02-31", normalised to 2016-03-02.
    newest = _ts("2016-03-31 00:00:00")
    times = [
        newest,
        _ts("2016-03-02 00:00:01"),
        _ts("2016-03-02 00:00:00"),  # exactly at the window's start: outside, as in restic
        _ts("2016-03-01 12:00:00"),
        _ts("2016-02-29 12:00:00"),
    ]
    assert _kept(_apply(times, KeepPolicy(within=parse_duration("1m")))) == [0, 1]


def test_within_hours_are_exact_hours() -> None:
    newest = _ts("2020-01-02 00:30:00")
    times = [newest, newest - 3 * 3600 + 1, newest - 3 * 3600]
    assert _kept(_apply(times, KeepPolicy(within=Duration(hours=3)))) == [0, 1]


def test_buckets_follow_the_time_zone() -> None:
    times = [
        _ts("2020-01-02 12:00:00"),
        _ts("2020-01-02 00:30:00"),
        _ts("2020-01-01 23:30:00"),
        _ts("2019-12-31 12:00:00"),
    ]
    policy = KeepPolicy(daily=2)
    assert _kept(_apply(times, policy)) == [0, 2]  # UTC: 2 Jan, 1 Jan
    east = timezone(timedelta(hours=2))  # the first three are all on 2 January
    assert _kept(_apply(times, policy, tz=east)) == [0, 3]


def test_calendar_days_follow_daylight_saving_time() -> None:
    try:
        berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    except zoneinfo.ZoneInfoNotFoundError:  # pragma: no cover - no tz database here
        pytest.skip("no time zone database")
    newest = _ts("2021-03-28 10:00:00")  # 12:00 CEST, the day clocks went forward
    times = [newest, newest - 22.5 * 3600, newest - 23.5 * 3600]
    policy = KeepPolicy(within=Duration(days=1))
    assert _kept(_apply(times, policy)) == [0, 1, 2]  # UTC: a day is 24 hours
    assert _kept(_apply(times, policy, tz=berlin)) == [0, 1]  # that day had 23


def test_weeks_are_iso_weeks_across_new_year() -> None:
    times = [
        _ts("2016-01-04 12:00:00"),  # 2016-W01
        _ts("2016-01-03 12:00:00"),  # 2015-W53
        _ts("2015-12-28 12:00:00"),  # 2015-W53 too
        _ts("2015-12-20 12:00:00"),  # 2015-W51
    ]
    assert _kept(_apply(times, KeepPolicy(weekly=3))) == [0, 1, 3]


def test_now_leaves_future_snapshots_out_of_the_reference() -> None:
    day = 86400.0
    times = [100 * day, 10 * day, 9.5 * day, 8 * day]  # the first is "in the future"
    policy = KeepPolicy(within=Duration(days=1))
    assert _kept(_apply(times, policy)) == [0]
    assert _kept(_apply(times, policy, now=20 * day)) == [0, 1, 2]
    # nothing before now: restic's reference is the zero time, so everything is within
    assert _kept(_apply(times, policy, now=0.0)) == [0, 1, 2, 3]


def test_ties_keep_input_order() -> None:
    decisions = _apply([5.0, 7.0, 5.0, 7.0], KeepPolicy(last=3))
    assert [d.snapshot for d in decisions] == [1, 3, 0, 2]
    assert _kept(decisions) == [1, 3, 0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e20])
def test_unusable_times_are_input_errors(bad: float) -> None:
    with pytest.raises(InputError):
        _apply([1.0, bad], KeepPolicy(last=1))


def test_no_snapshots() -> None:
    assert _apply([], KeepPolicy(last=3)) == []
    assert _apply([], KeepPolicy()) == []


# --- restic's TestParseDuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "duration", "shown"),
    [
        ("9h", Duration(hours=9), "9h"),
        ("3d", Duration(days=3), "3d"),
        ("4d2h", Duration(days=4, hours=2), "4d2h"),
        ("7m5d", Duration(months=7, days=5), "7m5d"),
        ("6m4d8h", Duration(months=6, days=4, hours=8), "6m4d8h"),
        ("5d7m", Duration(months=7, days=5), "7m5d"),
        ("4h3d9m", Duration(months=9, days=3, hours=4), "9m3d4h"),
        ("-7m5d", Duration(months=-7, days=5), "-7m5d"),
        ("1y4m-5d-3h", Duration(years=1, months=4, days=-5, hours=-3), "1y4m-5d-3h"),
        ("2y7m-5d", Duration(years=2, months=7, days=-5), "2y7m-5d"),
        # beyond restic's table, same code paths
        ("", Duration(), ""),
        ("  5d\t", Duration(days=5), "5d"),
        ("1d2d", Duration(days=2), "2d"),
        ("0y", Duration(), ""),
        ("1y2m3d4h", Duration(1, 2, 3, 4), "1y2m3d4h"),
    ],
)
def test_parse_duration(text: str, duration: Duration, shown: str) -> None:
    assert parse_duration(text) == duration
    assert str(duration) == shown
    assert duration.is_zero() == (shown == "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2w", "invalid unit 'w'"),
        ("1y4m3w1d", "invalid unit 'w'"),
        ("s", "no number found"),
        ("\u07c0d", "no number found"),  # NKO DIGIT ZERO: only ASCII digits count
        ("5", "no unit found after number 5"),
        ("-", "no number found"),
        ("--5d", "no number found"),
        ("5 d", "invalid unit ' '"),
        ("1D", "invalid unit 'D'"),
    ],
)
def test_parse_duration_refuses(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_duration(text)
    assert isinstance(caught.value, PeerbakError)


# --- properties -----------------------------------------------------------------------

EPOCH: Final = 1_577_836_800  # 2020-01-01
counts = st.integers(-1, 6)
spans = st.none() | st.builds(
    Duration,
    years=st.integers(0, 2),
    months=st.integers(0, 14),
    days=st.integers(0, 40),
    hours=st.integers(0, 50),
)
tag_lists = st.lists(st.frozensets(st.sampled_from(["a", "b", ""]), max_size=2), max_size=2)
policies = st.builds(
    KeepPolicy,
    last=counts,
    hourly=counts,
    daily=counts,
    weekly=counts,
    monthly=counts,
    yearly=counts,
    within=spans,
    within_hourly=spans,
    within_daily=spans,
    within_weekly=spans,
    within_monthly=spans,
    within_yearly=spans,
    tags=tag_lists.map(tuple),
)
instants = st.integers(EPOCH, EPOCH + 3 * 365 * 86400) | st.sampled_from([EPOCH, EPOCH + 3600])
history = st.lists(
    st.tuples(instants.map(float), st.frozensets(st.sampled_from(["a", "b"]))), max_size=40
)


def _run(snaps: list[tuple[float, frozenset[str]]], policy: KeepPolicy) -> list[Decision[int]]:
    return apply_policy(range(len(snaps)), policy, key=lambda i: snaps[i])


def _newest_first(snaps: list[tuple[float, frozenset[str]]]) -> list[int]:
    return sorted(range(len(snaps)), key=lambda i: -snaps[i][0])


@settings(max_examples=300, deadline=None)
@given(snaps=history, policy=policies)
def test_every_snapshot_is_kept_or_removed_once(
    snaps: list[tuple[float, frozenset[str]]], policy: KeepPolicy
) -> None:
    decisions = _run(snaps, policy)
    kept = {d.snapshot for d in decisions if d.kept}
    removed = {d.snapshot for d in decisions if not d.kept}
    assert kept | removed == set(range(len(snaps)))
    assert not kept & removed
    assert len(decisions) == len(snaps)
    assert [d.snapshot for d in decisions] == _newest_first(snaps)
    assert all(d.kept == bool(d.reasons) for d in decisions)


@settings(max_examples=200, deadline=None)
@given(snaps=history, n=st.integers(1, 50))
def test_keep_last_keeps_exactly_the_newest(
    snaps: list[tuple[float, frozenset[str]]], n: int
) -> None:
    kept = _kept(_run(snaps, KeepPolicy(last=n)))
    assert kept == _newest_first(snaps)[: min(n, len(snaps))]
    assert _kept(_run(snaps, KeepPolicy(last=-1))) == _newest_first(snaps)


@settings(max_examples=100, deadline=None)
@given(snaps=history)
def test_empty_policy_keeps_all(snaps: list[tuple[float, frozenset[str]]]) -> None:
    assert _kept(_run(snaps, KeepPolicy())) == _newest_first(snaps)


@settings(max_examples=200, deadline=None)
@given(snaps=history, policy=policies)
def test_counts_bound_what_count_rules_keep(
    snaps: list[tuple[float, frozenset[str]]], policy: KeepPolicy
) -> None:
    only_counts = KeepPolicy(**{f: max(getattr(policy, f), 0) for f in COUNTS})
    limit = sum(getattr(only_counts, f) for f in COUNTS)
    assume(limit > 0)  # else the policy is empty, and keeps everything
    assert len(_kept(_run(snaps, only_counts))) <= limit


@settings(max_examples=200, deadline=None)
@given(snaps=history, span=spans.filter(lambda s: s is not None and not s.is_zero()))
def test_within_keeps_a_newest_first_run_starting_at_the_newest(
    snaps: list[tuple[float, frozenset[str]]], span: Duration
) -> None:
    decisions = _run(snaps, KeepPolicy(within=span))
    flags = [d.kept for d in decisions]
    assert flags == sorted(flags, reverse=True)
    assert not snaps or flags[0]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), policy=policies)
def test_input_order_does_not_matter(data: st.DataObject, policy: KeepPolicy) -> None:
    times = data.draw(st.lists(instants, max_size=30, unique=True))
    tags = data.draw(
        st.lists(
            st.frozensets(st.sampled_from(["a", "b"])), min_size=len(times), max_size=len(times)
        )
    )
    snaps = list(zip(map(float, times), tags, strict=True))
    shuffled = data.draw(st.permutations(snaps))
    first = [(snaps[d.snapshot], d.reasons) for d in _run(snaps, policy)]
    second = [(shuffled[d.snapshot], d.reasons) for d in _run(shuffled, policy)]
    assert first == second


# --- restic's data ----------------------------------------------------------------------

D = parse_duration

#: restic's ``tests`` in TestApplyPolicy; the index is the golden file's number.
POLICIES: Final[tuple[KeepPolicy, ...]] = (
    KeepPolicy(),
    KeepPolicy(last=10),
    KeepPolicy(last=15),
    KeepPolicy(last=99),
    KeepPolicy(last=200),
    KeepPolicy(hourly=20),
    KeepPolicy(daily=3),
    KeepPolicy(daily=10),
    KeepPolicy(daily=30),
    KeepPolicy(last=5, daily=5),
    KeepPolicy(last=2, daily=10),
    KeepPolicy(weekly=2),
    KeepPolicy(weekly=4),
    KeepPolicy(daily=3, weekly=4),
    KeepPolicy(monthly=6),
    KeepPolicy(daily=2, weekly=2, monthly=6),
    KeepPolicy(yearly=10),
    KeepPolicy(daily=7, weekly=2, monthly=3, yearly=10),
    KeepPolicy(tags=(frozenset({"foo"}),)),
    KeepPolicy(tags=(frozenset({"foo", "bar"}),)),
    KeepPolicy(tags=(frozenset({"foo"}), frozenset({"bar"}))),
    KeepPolicy(within=D("1d")),
    KeepPolicy(within=D("2d")),
    KeepPolicy(within=D("7d")),
    KeepPolicy(within=D("1m")),
    KeepPolicy(within=D("1m14d")),
    KeepPolicy(within=D("1y1d1m")),
    KeepPolicy(within=D("13d23h")),
    KeepPolicy(within=D("2m2h")),
    KeepPolicy(within=D("1y2m3d3h")),
    KeepPolicy(within_hourly=D("1y2m3d3h")),
    KeepPolicy(within_daily=D("1y2m3d3h")),
    KeepPolicy(within_weekly=D("1y2m3d3h")),
    KeepPolicy(within_monthly=D("1y2m3d3h")),
    KeepPolicy(within_yearly=D("1y2m3d3h")),
    KeepPolicy(
        within=D("1h"),
        within_hourly=D("1d"),
        within_daily=D("7d"),
        within_weekly=D("1m"),
        within_monthly=D("1y"),
        within_yearly=D("9999y"),
    ),
    KeepPolicy(last=-1),  # keep all
    KeepPolicy(last=-1, hourly=-1),  # keep all (last overrides hourly)
    KeepPolicy(hourly=-1),  # keep all hourlies
    KeepPolicy(daily=3, weekly=2, monthly=-1, yearly=-1),
)

#: restic's ``testExpireSnapshots``: (time in UTC, tags). Snapshot 73 also has paths,
#: which only matter to restic's grouping.
SNAPSHOTS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("2014-09-01 10:20:30", ()),  # 0
    ("2014-09-02 10:20:30", ()),  # 1
    ("2014-09-05 10:20:30", ()),  # 2
    ("2014-09-06 10:20:30", ()),  # 3
    ("2014-09-08 10:20:30", ()),  # 4
    ("2014-09-09 10:20:30", ()),  # 5
    ("2014-09-10 10:20:30", ()),  # 6
    ("2014-09-11 10:20:30", ()),  # 7
    ("2014-09-20 10:20:30", ()),  # 8
    ("2014-09-22 10:20:30", ()),  # 9
    ("2014-08-08 10:20:30", ()),  # 10
    ("2014-08-10 10:20:30", ()),  # 11
    ("2014-08-12 10:20:30", ()),  # 12
    ("2014-08-13 10:20:30", ()),  # 13
    ("2014-08-13 10:20:30.1", ()),  # 14
    ("2014-08-15 10:20:30", ()),  # 15
    ("2014-08-18 10:20:30", ()),  # 16
    ("2014-08-20 10:20:30", ()),  # 17
    ("2014-08-21 10:20:30", ()),  # 18
    ("2014-08-22 10:20:30", ()),  # 19
    ("2014-10-01 10:20:30", ("foo",)),  # 20
    ("2014-10-02 10:20:30", ("foo",)),  # 21
    ("2014-10-05 10:20:30", ("foo",)),  # 22
    ("2014-10-06 10:20:30", ("foo",)),  # 23
    ("2014-10-08 10:20:30", ("foo",)),  # 24
    ("2014-10-09 10:20:30", ("foo",)),  # 25
    ("2014-10-10 10:20:30", ("foo",)),  # 26
    ("2014-10-11 10:20:30", ("foo",)),  # 27
    ("2014-10-20 10:20:30", ("foo",)),  # 28
    ("2014-10-22 10:20:30", ("foo",)),  # 29
    ("2014-11-08 10:20:30", ("foo",)),  # 30
    ("2014-11-10 10:20:30", ("foo",)),  # 31
    ("2014-11-12 10:20:30", ("foo",)),  # 32
    ("2014-11-13 10:20:30", ("foo",)),  # 33
    ("2014-11-13 10:20:30.1", ("bar",)),  # 34
    ("2014-11-15 10:20:30", ("foo", "bar")),  # 35
    ("2014-11-18 10:20:30", ()),  # 36
    ("2014-11-20 10:20:30", ()),  # 37
    ("2014-11-21 10:20:30", ()),  # 38
    ("2014-11-22 10:20:30", ()),  # 39
    ("2015-09-01 10:20:30", ()),  # 40
    ("2015-09-02 10:20:30", ()),  # 41
    ("2015-09-05 10:20:30", ()),  # 42
    ("2015-09-06 10:20:30", ()),  # 43
    ("2015-09-08 10:20:30", ()),  # 44
    ("2015-09-09 10:20:30", ()),  # 45
    ("2015-09-10 10:20:30", ()),  # 46
    ("2015-09-11 10:20:30", ()),  # 47
    ("2015-09-20 10:20:30", ()),  # 48
    ("2015-09-22 10:20:30", ()),  # 49
    ("2015-08-08 10:20:30", ()),  # 50
    ("2015-08-10 10:20:30", ()),  # 51
    ("2015-08-12 10:20:30", ()),  # 52
    ("2015-08-13 10:20:30", ()),  # 53
    ("2015-08-13 10:20:30.1", ()),  # 54
    ("2015-08-15 10:20:30", ()),  # 55
    ("2015-08-18 10:20:30", ()),  # 56
    ("2015-08-20 10:20:30", ()),  # 57
    ("2015-08-21 10:20:30", ()),  # 58
    ("2015-08-22 10:20:30", ()),  # 59
    ("2015-10-01 10:20:30", ()),  # 60
    ("2015-10-02 10:20:30", ()),  # 61
    ("2015-10-05 10:20:30", ()),  # 62
    ("2015-10-06 10:20:30", ()),  # 63
    ("2015-10-08 10:20:30", ()),  # 64
    ("2015-10-09 10:20:30", ()),  # 65
    ("2015-10-10 10:20:30", ()),  # 66
    ("2015-10-11 10:20:30", ()),  # 67
    ("2015-10-20 10:20:30", ()),  # 68
    ("2015-10-22 10:20:30", ()),  # 69
    ("2015-10-22 10:20:30", ()),  # 70
    ("2015-10-22 10:20:30", ("foo", "bar")),  # 71
    ("2015-10-22 10:20:30", ("foo", "bar")),  # 72
    ("2015-10-22 10:20:30", ("foo", "bar")),  # 73
    ("2015-11-08 10:20:30", ()),  # 74
    ("2015-11-10 10:20:30", ()),  # 75
    ("2015-11-12 10:20:30", ()),  # 76
    ("2015-11-13 10:20:30", ()),  # 77
    ("2015-11-13 10:20:30.1", ()),  # 78
    ("2015-11-15 10:20:30", ()),  # 79
    ("2015-11-18 10:20:30", ()),  # 80
    ("2015-11-20 10:20:30", ()),  # 81
    ("2015-11-21 10:20:30", ()),  # 82
    ("2015-11-22 10:20:30", ()),  # 83
    ("2016-01-01 01:02:03", ()),  # 84
    ("2016-01-01 01:03:03", ()),  # 85
    ("2016-01-01 07:08:03", ()),  # 86
    ("2016-01-03 07:02:03", ()),  # 87
    ("2016-01-04 10:23:03", ()),  # 88
    ("2016-01-04 11:23:03", ()),  # 89
    ("2016-01-04 12:23:03", ()),  # 90
    ("2016-01-04 12:24:03", ()),  # 91
    ("2016-01-04 12:28:03", ()),  # 92
    ("2016-01-04 12:30:03", ()),  # 93
    ("2016-01-04 16:23:03", ()),  # 94
    ("2016-01-05 09:02:03", ()),  # 95
    ("2016-01-06 08:02:03", ()),  # 96
    ("2016-01-07 10:02:03", ()),  # 97
    ("2016-01-08 20:02:03", ()),  # 98
    ("2016-01-09 21:02:03", ()),  # 99
    ("2016-01-12 21:02:03", ()),  # 100
    ("2016-01-12 21:08:03", ()),  # 101
    ("2016-01-18 12:02:03", ()),  # 102
)

#: restic's golden files ``policy_keep_snapshots_N``: the kept snapshots, newest first, as
#: "index time | reasons" (a line starting with "|" continues the reasons above).
GOLDEN: Final[dict[int, str]] = {
    0: """
""",
    1: """
102 2016-01-18 12:02:03   | last snapshot
101 2016-01-12 21:08:03   | last snapshot
100 2016-01-12 21:02:03   | last snapshot
 99 2016-01-09 21:02:03   | last snapshot
 98 2016-01-08 20:02:03   | last snapshot
 97 2016-01-07 10:02:03   | last snapshot
 96 2016-01-06 08:02:03   | last snapshot
 95 2016-01-05 09:02:03   | last snapshot
 94 2016-01-04 16:23:03   | last snapshot
 93 2016-01-04 12:30:03   | last snapshot
""",
    2: """
102 2016-01-18 12:02:03   | last snapshot
101 2016-01-12 21:08:03   | last snapshot
100 2016-01-12 21:02:03   | last snapshot
 99 2016-01-09 21:02:03   | last snapshot
 98 2016-01-08 20:02:03   | last snapshot
 97 2016-01-07 10:02:03   | last snapshot
 96 2016-01-06 08:02:03   | last snapshot
 95 2016-01-05 09:02:03   | last snapshot
 94 2016-01-04 16:23:03   | last snapshot
 93 2016-01-04 12:30:03   | last snapshot
 92 2016-01-04 12:28:03   | last snapshot
 91 2016-01-04 12:24:03   | last snapshot
 90 2016-01-04 12:23:03   | last snapshot
 89 2016-01-04 11:23:03   | last snapshot
 88 2016-01-04 10:23:03   | last snapshot
""",
    3: """
102 2016-01-18 12:02:03   | last snapshot
101 2016-01-12 21:08:03   | last snapshot
100 2016-01-12 21:02:03   | last snapshot
 99 2016-01-09 21:02:03   | last snapshot
 98 2016-01-08 20:02:03   | last snapshot
 97 2016-01-07 10:02:03   | last snapshot
 96 2016-01-06 08:02:03   | last snapshot
 95 2016-01-05 09:02:03   | last snapshot
 94 2016-01-04 16:23:03   | last snapshot
 93 2016-01-04 12:30:03   | last snapshot
 92 2016-01-04 12:28:03   | last snapshot
 91 2016-01-04 12:24:03   | last snapshot
 90 2016-01-04 12:23:03   | last snapshot
 89 2016-01-04 11:23:03   | last snapshot
 88 2016-01-04 10:23:03   | last snapshot
 87 2016-01-03 07:02:03   | last snapshot
 86 2016-01-01 07:08:03   | last snapshot
 85 2016-01-01 01:03:03   | last snapshot
 84 2016-01-01 01:02:03   | last snapshot
 83 2015-11-22 10:20:30   | last snapshot
 82 2015-11-21 10:20:30   | last snapshot
 81 2015-11-20 10:20:30   | last snapshot
 80 2015-11-18 10:20:30   | last snapshot
 79 2015-11-15 10:20:30   | last snapshot
 78 2015-11-13 10:20:30.1 | last snapshot
 77 2015-11-13 10:20:30   | last snapshot
 76 2015-11-12 10:20:30   | last snapshot
 75 2015-11-10 10:20:30   | last snapshot
 74 2015-11-08 10:20:30   | last snapshot
 69 2015-10-22 10:20:30   | last snapshot
 70 2015-10-22 10:20:30   | last snapshot
 71 2015-10-22 10:20:30   | last snapshot
 72 2015-10-22 10:20:30   | last snapshot
 73 2015-10-22 10:20:30   | last snapshot
 68 2015-10-20 10:20:30   | last snapshot
 67 2015-10-11 10:20:30   | last snapshot
 66 2015-10-10 10:20:30   | last snapshot
 65 2015-10-09 10:20:30   | last snapshot
 64 2015-10-08 10:20:30   | last snapshot
 63 2015-10-06 10:20:30   | last snapshot
 62 2015-10-05 10:20:30   | last snapshot
 61 2015-10-02 10:20:30   | last snapshot
 60 2015-10-01 10:20:30   | last snapshot
 49 2015-09-22 10:20:30   | last snapshot
 48 2015-09-20 10:20:30   | last snapshot
 47 2015-09-11 10:20:30   | last snapshot
 46 2015-09-10 10:20:30   | last snapshot
 45 2015-09-09 10:20:30   | last snapshot
 44 2015-09-08 10:20:30   | last snapshot
 43 2015-09-06 10:20:30   | last snapshot
 42 2015-09-05 10:20:30   | last snapshot
 41 2015-09-02 10:20:30   | last snapshot
 40 2015-09-01 10:20:30   | last snapshot
 59 2015-08-22 10:20:30   | last snapshot
 58 2015-08-21 10:20:30   | last snapshot
 57 2015-08-20 10:20:30   | last snapshot
 56 2015-08-18 10:20:30   | last snapshot
 55 2015-08-15 10:20:30   | last snapshot
 54 2015-08-13 10:20:30.1 | last snapshot
 53 2015-08-13 10:20:30   | last snapshot
 52 2015-08-12 10:20:30   | last snapshot
 51 2015-08-10 10:20:30   | last snapshot
 50 2015-08-08 10:20:30   | last snapshot
 39 2014-11-22 10:20:30   | last snapshot
 38 2014-11-21 10:20:30   | last snapshot
 37 2014-11-20 10:20:30   | last snapshot
 36 2014-11-18 10:20:30   | last snapshot
 35 2014-11-15 10:20:30   | last snapshot
 34 2014-11-13 10:20:30.1 | last snapshot
 33 2014-11-13 10:20:30   | last snapshot
 32 2014-11-12 10:20:30   | last snapshot
 31 2014-11-10 10:20:30   | last snapshot
 30 2014-11-08 10:20:30   | last snapshot
 29 2014-10-22 10:20:30   | last snapshot
 28 2014-10-20 10:20:30   | last snapshot
 27 2014-10-11 10:20:30   | last snapshot
 26 2014-10-10 10:20:30   | last snapshot
 25 2014-10-09 10:20:30   | last snapshot
 24 2014-10-08 10:20:30   | last snapshot
 23 2014-10-06 10:20:30   | last snapshot
 22 2014-10-05 10:20:30   | last snapshot
 21 2014-10-02 10:20:30   | last snapshot
 20 2014-10-01 10:20:30   | last snapshot
  9 2014-09-22 10:20:30   | last snapshot
  8 2014-09-20 10:20:30   | last snapshot
  7 2014-09-11 10:20:30   | last snapshot
  6 2014-09-10 10:20:30   | last snapshot
  5 2014-09-09 10:20:30   | last snapshot
  4 2014-09-08 10:20:30   | last snapshot
  3 2014-09-06 10:20:30   | last snapshot
  2 2014-09-05 10:20:30   | last snapshot
  1 2014-09-02 10:20:30   | last snapshot
  0 2014-09-01 10:20:30   | last snapshot
 19 2014-08-22 10:20:30   | last snapshot
 18 2014-08-21 10:20:30   | last snapshot
 17 2014-08-20 10:20:30   | last snapshot
 16 2014-08-18 10:20:30   | last snapshot
 15 2014-08-15 10:20:30   | last snapshot
 14 2014-08-13 10:20:30.1 | last snapshot
""",
    4: """
102 2016-01-18 12:02:03   | last snapshot
101 2016-01-12 21:08:03   | last snapshot
100 2016-01-12 21:02:03   | last snapshot
 99 2016-01-09 21:02:03   | last snapshot
 98 2016-01-08 20:02:03   | last snapshot
 97 2016-01-07 10:02:03   | last snapshot
 96 2016-01-06 08:02:03   | last snapshot
 95 2016-01-05 09:02:03   | last snapshot
 94 2016-01-04 16:23:03   | last snapshot
 93 2016-01-04 12:30:03   | last snapshot
 92 2016-01-04 12:28:03   | last snapshot
 91 2016-01-04 12:24:03   | last snapshot
 90 2016-01-04 12:23:03   | last snapshot
 89 2016-01-04 11:23:03   | last snapshot
 88 2016-01-04 10:23:03   | last snapshot
 87 2016-01-03 07:02:03   | last snapshot
 86 2016-01-01 07:08:03   | last snapshot
 85 2016-01-01 01:03:03   | last snapshot
 84 2016-01-01 01:02:03   | last snapshot
 83 2015-11-22 10:20:30   | last snapshot
 82 2015-11-21 10:20:30   | last snapshot
 81 2015-11-20 10:20:30   | last snapshot
 80 2015-11-18 10:20:30   | last snapshot
 79 2015-11-15 10:20:30   | last snapshot
 78 2015-11-13 10:20:30.1 | last snapshot
 77 2015-11-13 10:20:30   | last snapshot
 76 2015-11-12 10:20:30   | last snapshot
 75 2015-11-10 10:20:30   | last snapshot
 74 2015-11-08 10:20:30   | last snapshot
 69 2015-10-22 10:20:30   | last snapshot
 70 2015-10-22 10:20:30   | last snapshot
 71 2015-10-22 10:20:30   | last snapshot
 72 2015-10-22 10:20:30   | last snapshot
 73 2015-10-22 10:20:30   | last snapshot
 68 2015-10-20 10:20:30   | last snapshot
 67 2015-10-11 10:20:30   | last snapshot
 66 2015-10-10 10:20:30   | last snapshot
 65 2015-10-09 10:20:30   | last snapshot
 64 2015-10-08 10:20:30   | last snapshot
 63 2015-10-06 10:20:30   | last snapshot
 62 2015-10-05 10:20:30   | last snapshot
 61 2015-10-02 10:20:30   | last snapshot
 60 2015-10-01 10:20:30   | last snapshot
 49 2015-09-22 10:20:30   | last snapshot
 48 2015-09-20 10:20:30   | last snapshot
 47 2015-09-11 10:20:30   | last snapshot
 46 2015-09-10 10:20:30   | last snapshot
 45 2015-09-09 10:20:30   | last snapshot
 44 2015-09-08 10:20:30   | last snapshot
 43 2015-09-06 10:20:30   | last snapshot
 42 2015-09-05 10:20:30   | last snapshot
 41 2015-09-02 10:20:30   | last snapshot
 40 2015-09-01 10:20:30   | last snapshot
 59 2015-08-22 10:20:30   | last snapshot
 58 2015-08-21 10:20:30   | last snapshot
 57 2015-08-20 10:20:30   | last snapshot
 56 2015-08-18 10:20:30   | last snapshot
 55 2015-08-15 10:20:30   | last snapshot
 54 2015-08-13 10:20:30.1 | last snapshot
 53 2015-08-13 10:20:30   | last snapshot
 52 2015-08-12 10:20:30   | last snapshot
 51 2015-08-10 10:20:30   | last snapshot
 50 2015-08-08 10:20:30   | last snapshot
 39 2014-11-22 10:20:30   | last snapshot
 38 2014-11-21 10:20:30   | last snapshot
 37 2014-11-20 10:20:30   | last snapshot
 36 2014-11-18 10:20:30   | last snapshot
 35 2014-11-15 10:20:30   | last snapshot
 34 2014-11-13 10:20:30.1 | last snapshot
 33 2014-11-13 10:20:30   | last snapshot
 32 2014-11-12 10:20:30   | last snapshot
 31 2014-11-10 10:20:30   | last snapshot
 30 2014-11-08 10:20:30   | last snapshot
 29 2014-10-22 10:20:30   | last snapshot
 28 2014-10-20 10:20:30   | last snapshot
 27 2014-10-11 10:20:30   | last snapshot
 26 2014-10-10 10:20:30   | last snapshot
 25 2014-10-09 10:20:30   | last snapshot
 24 2014-10-08 10:20:30   | last snapshot
 23 2014-10-06 10:20:30   | last snapshot
 22 2014-10-05 10:20:30   | last snapshot
 21 2014-10-02 10:20:30   | last snapshot
 20 2014-10-01 10:20:30   | last snapshot
  9 2014-09-22 10:20:30   | last snapshot
  8 2014-09-20 10:20:30   | last snapshot
  7 2014-09-11 10:20:30   | last snapshot
  6 2014-09-10 10:20:30   | last snapshot
  5 2014-09-09 10:20:30   | last snapshot
  4 2014-09-08 10:20:30   | last snapshot
  3 2014-09-06 10:20:30   | last snapshot
  2 2014-09-05 10:20:30   | last snapshot
  1 2014-09-02 10:20:30   | last snapshot
  0 2014-09-01 10:20:30   | last snapshot
 19 2014-08-22 10:20:30   | last snapshot
 18 2014-08-21 10:20:30   | last snapshot
 17 2014-08-20 10:20:30   | last snapshot
 16 2014-08-18 10:20:30   | last snapshot
 15 2014-08-15 10:20:30   | last snapshot
 14 2014-08-13 10:20:30.1 | last snapshot
 13 2014-08-13 10:20:30   | last snapshot
 12 2014-08-12 10:20:30   | last snapshot
 11 2014-08-10 10:20:30   | last snapshot
 10 2014-08-08 10:20:30   | last snapshot
""",
    5: """
102 2016-01-18 12:02:03   | hourly snapshot
101 2016-01-12 21:08:03   | hourly snapshot
 99 2016-01-09 21:02:03   | hourly snapshot
 98 2016-01-08 20:02:03   | hourly snapshot
 97 2016-01-07 10:02:03   | hourly snapshot
 96 2016-01-06 08:02:03   | hourly snapshot
 95 2016-01-05 09:02:03   | hourly snapshot
 94 2016-01-04 16:23:03   | hourly snapshot
 93 2016-01-04 12:30:03   | hourly snapshot
 89 2016-01-04 11:23:03   | hourly snapshot
 88 2016-01-04 10:23:03   | hourly snapshot
 87 2016-01-03 07:02:03   | hourly snapshot
 86 2016-01-01 07:08:03   | hourly snapshot
 85 2016-01-01 01:03:03   | hourly snapshot
 83 2015-11-22 10:20:30   | hourly snapshot
 82 2015-11-21 10:20:30   | hourly snapshot
 81 2015-11-20 10:20:30   | hourly snapshot
 80 2015-11-18 10:20:30   | hourly snapshot
 79 2015-11-15 10:20:30   | hourly snapshot
 78 2015-11-13 10:20:30.1 | hourly snapshot
""",
    6: """
102 2016-01-18 12:02:03   | daily snapshot
101 2016-01-12 21:08:03   | daily snapshot
 99 2016-01-09 21:02:03   | daily snapshot
""",
    7: """
102 2016-01-18 12:02:03   | daily snapshot
101 2016-01-12 21:08:03   | daily snapshot
 99 2016-01-09 21:02:03   | daily snapshot
 98 2016-01-08 20:02:03   | daily snapshot
 97 2016-01-07 10:02:03   | daily snapshot
 96 2016-01-06 08:02:03   | daily snapshot
 95 2016-01-05 09:02:03   | daily snapshot
 94 2016-01-04 16:23:03   | daily snapshot
 87 2016-01-03 07:02:03   | daily snapshot
 86 2016-01-01 07:08:03   | daily snapshot
""",
    8: """
102 2016-01-18 12:02:03   | daily snapshot
101 2016-01-12 21:08:03   | daily snapshot
 99 2016-01-09 21:02:03   | daily snapshot
 98 2016-01-08 20:02:03   | daily snapshot
 97 2016-01-07 10:02:03   | daily snapshot
 96 2016-01-06 08:02:03   | daily snapshot
 95 2016-01-05 09:02:03   | daily snapshot
 94 2016-01-04 16:23:03   | daily snapshot
 87 2016-01-03 07:02:03   | daily snapshot
 86 2016-01-01 07:08:03   | daily snapshot
 83 2015-11-22 10:20:30   | daily snapshot
 82 2015-11-21 10:20:30   | daily snapshot
 81 2015-11-20 10:20:30   | daily snapshot
 80 2015-11-18 10:20:30   | daily snapshot
 79 2015-11-15 10:20:30   | daily snapshot
 78 2015-11-13 10:20:30.1 | daily snapshot
 76 2015-11-12 10:20:30   | daily snapshot
 75 2015-11-10 10:20:30   | daily snapshot
 74 2015-11-08 10:20:30   | daily snapshot
 69 2015-10-22 10:20:30   | daily snapshot
 68 2015-10-20 10:20:30   | daily snapshot
 67 2015-10-11 10:20:30   | daily snapshot
 66 2015-10-10 10:20:30   | daily snapshot
 65 2015-10-09 10:20:30   | daily snapshot
 64 2015-10-08 10:20:30   | daily snapshot
 63 2015-10-06 10:20:30   | daily snapshot
 62 2015-10-05 10:20:30   | daily snapshot
 61 2015-10-02 10:20:30   | daily snapshot
 60 2015-10-01 10:20:30   | daily snapshot
 49 2015-09-22 10:20:30   | daily snapshot
""",
    9: """
102 2016-01-18 12:02:03   | last snapshot; daily snapshot
101 2016-01-12 21:08:03   | last snapshot; daily snapshot
100 2016-01-12 21:02:03   | last snapshot
 99 2016-01-09 21:02:03   | last snapshot; daily snapshot
 98 2016-01-08 20:02:03   | last snapshot; daily snapshot
 97 2016-01-07 10:02:03   | daily snapshot
""",
    10: """
102 2016-01-18 12:02:03   | last snapshot; daily snapshot
101 2016-01-12 21:08:03   | last snapshot; daily snapshot
 99 2016-01-09 21:02:03   | daily snapshot
 98 2016-01-08 20:02:03   | daily snapshot
 97 2016-01-07 10:02:03   | daily snapshot
 96 2016-01-06 08:02:03   | daily snapshot
 95 2016-01-05 09:02:03   | daily snapshot
 94 2016-01-04 16:23:03   | daily snapshot
 87 2016-01-03 07:02:03   | daily snapshot
 86 2016-01-01 07:08:03   | daily snapshot
""",
    11: """
102 2016-01-18 12:02:03   | weekly snapshot
101 2016-01-12 21:08:03   | weekly snapshot
""",
    12: """
102 2016-01-18 12:02:03   | weekly snapshot
101 2016-01-12 21:08:03   | weekly snapshot
 99 2016-01-09 21:02:03   | weekly snapshot
 87 2016-01-03 07:02:03   | weekly snapshot
""",
    13: """
102 2016-01-18 12:02:03   | daily snapshot; weekly snapshot
101 2016-01-12 21:08:03   | daily snapshot; weekly snapshot
 99 2016-01-09 21:02:03   | daily snapshot; weekly snapshot
 87 2016-01-03 07:02:03   | weekly snapshot
""",
    14: """
102 2016-01-18 12:02:03   | monthly snapshot
 83 2015-11-22 10:20:30   | monthly snapshot
 69 2015-10-22 10:20:30   | monthly snapshot
 49 2015-09-22 10:20:30   | monthly snapshot
 59 2015-08-22 10:20:30   | monthly snapshot
 39 2014-11-22 10:20:30   | monthly snapshot
""",
    15: """
102 2016-01-18 12:02:03   | daily snapshot; weekly snapshot; monthly snapshot
101 2016-01-12 21:08:03   | daily snapshot; weekly snapshot
 83 2015-11-22 10:20:30   | monthly snapshot
 69 2015-10-22 10:20:30   | monthly snapshot
 49 2015-09-22 10:20:30   | monthly snapshot
 59 2015-08-22 10:20:30   | monthly snapshot
 39 2014-11-22 10:20:30   | monthly snapshot
""",
    16: """
102 2016-01-18 12:02:03   | yearly snapshot
 83 2015-11-22 10:20:30   | yearly snapshot
 39 2014-11-22 10:20:30   | yearly snapshot
 10 2014-08-08 10:20:30   | oldest yearly snapshot
""",
    17: """
102 2016-01-18 12:02:03   | daily snapshot; weekly snapshot; monthly snapshot; yearly snapshot
101 2016-01-12 21:08:03   | daily snapshot; weekly snapshot
 99 2016-01-09 21:02:03   | daily snapshot
 98 2016-01-08 20:02:03   | daily snapshot
 97 2016-01-07 10:02:03   | daily snapshot
 96 2016-01-06 08:02:03   | daily snapshot
 95 2016-01-05 09:02:03   | daily snapshot
 83 2015-11-22 10:20:30   | monthly snapshot; yearly snapshot
 69 2015-10-22 10:20:30   | monthly snapshot
 39 2014-11-22 10:20:30   | yearly snapshot
 10 2014-08-08 10:20:30   | oldest yearly snapshot
""",
    18: """
 71 2015-10-22 10:20:30   | has tags [foo]
 72 2015-10-22 10:20:30   | has tags [foo]
 73 2015-10-22 10:20:30   | has tags [foo]
 35 2014-11-15 10:20:30   | has tags [foo]
 33 2014-11-13 10:20:30   | has tags [foo]
 32 2014-11-12 10:20:30   | has tags [foo]
 31 2014-11-10 10:20:30   | has tags [foo]
 30 2014-11-08 10:20:30   | has tags [foo]
 29 2014-10-22 10:20:30   | has tags [foo]
 28 2014-10-20 10:20:30   | has tags [foo]
 27 2014-10-11 10:20:30   | has tags [foo]
 26 2014-10-10 10:20:30   | has tags [foo]
 25 2014-10-09 10:20:30   | has tags [foo]
 24 2014-10-08 10:20:30   | has tags [foo]
 23 2014-10-06 10:20:30   | has tags [foo]
 22 2014-10-05 10:20:30   | has tags [foo]
 21 2014-10-02 10:20:30   | has tags [foo]
 20 2014-10-01 10:20:30   | has tags [foo]
""",
    19: """
 71 2015-10-22 10:20:30   | has tags [foo, bar]
 72 2015-10-22 10:20:30   | has tags [foo, bar]
 73 2015-10-22 10:20:30   | has tags [foo, bar]
 35 2014-11-15 10:20:30   | has tags [foo, bar]
""",
    20: """
 71 2015-10-22 10:20:30   | has tags [foo]; has tags [bar]
 72 2015-10-22 10:20:30   | has tags [foo]; has tags [bar]
 73 2015-10-22 10:20:30   | has tags [foo]; has tags [bar]
 35 2014-11-15 10:20:30   | has tags [foo]; has tags [bar]
 34 2014-11-13 10:20:30.1 | has tags [bar]
 33 2014-11-13 10:20:30   | has tags [foo]
 32 2014-11-12 10:20:30   | has tags [foo]
 31 2014-11-10 10:20:30   | has tags [foo]
 30 2014-11-08 10:20:30   | has tags [foo]
 29 2014-10-22 10:20:30   | has tags [foo]
 28 2014-10-20 10:20:30   | has tags [foo]
 27 2014-10-11 10:20:30   | has tags [foo]
 26 2014-10-10 10:20:30   | has tags [foo]
 25 2014-10-09 10:20:30   | has tags [foo]
 24 2014-10-08 10:20:30   | has tags [foo]
 23 2014-10-06 10:20:30   | has tags [foo]
 22 2014-10-05 10:20:30   | has tags [foo]
 21 2014-10-02 10:20:30   | has tags [foo]
 20 2014-10-01 10:20:30   | has tags [foo]
""",
    21: """
102 2016-01-18 12:02:03   | within 1d
""",
    22: """
102 2016-01-18 12:02:03   | within 2d
""",
    23: """
102 2016-01-18 12:02:03   | within 7d
101 2016-01-12 21:08:03   | within 7d
100 2016-01-12 21:02:03   | within 7d
""",
    24: """
102 2016-01-18 12:02:03   | within 1m
101 2016-01-12 21:08:03   | within 1m
100 2016-01-12 21:02:03   | within 1m
 99 2016-01-09 21:02:03   | within 1m
 98 2016-01-08 20:02:03   | within 1m
 97 2016-01-07 10:02:03   | within 1m
 96 2016-01-06 08:02:03   | within 1m
 95 2016-01-05 09:02:03   | within 1m
 94 2016-01-04 16:23:03   | within 1m
 93 2016-01-04 12:30:03   | within 1m
 92 2016-01-04 12:28:03   | within 1m
 91 2016-01-04 12:24:03   | within 1m
 90 2016-01-04 12:23:03   | within 1m
 89 2016-01-04 11:23:03   | within 1m
 88 2016-01-04 10:23:03   | within 1m
 87 2016-01-03 07:02:03   | within 1m
 86 2016-01-01 07:08:03   | within 1m
 85 2016-01-01 01:03:03   | within 1m
 84 2016-01-01 01:02:03   | within 1m
""",
    25: """
102 2016-01-18 12:02:03   | within 1m14d
101 2016-01-12 21:08:03   | within 1m14d
100 2016-01-12 21:02:03   | within 1m14d
 99 2016-01-09 21:02:03   | within 1m14d
 98 2016-01-08 20:02:03   | within 1m14d
 97 2016-01-07 10:02:03   | within 1m14d
 96 2016-01-06 08:02:03   | within 1m14d
 95 2016-01-05 09:02:03   | within 1m14d
 94 2016-01-04 16:23:03   | within 1m14d
 93 2016-01-04 12:30:03   | within 1m14d
 92 2016-01-04 12:28:03   | within 1m14d
 91 2016-01-04 12:24:03   | within 1m14d
 90 2016-01-04 12:23:03   | within 1m14d
 89 2016-01-04 11:23:03   | within 1m14d
 88 2016-01-04 10:23:03   | within 1m14d
 87 2016-01-03 07:02:03   | within 1m14d
 86 2016-01-01 07:08:03   | within 1m14d
 85 2016-01-01 01:03:03   | within 1m14d
 84 2016-01-01 01:02:03   | within 1m14d
""",
    26: """
102 2016-01-18 12:02:03   | within 1y1m1d
101 2016-01-12 21:08:03   | within 1y1m1d
100 2016-01-12 21:02:03   | within 1y1m1d
 99 2016-01-09 21:02:03   | within 1y1m1d
 98 2016-01-08 20:02:03   | within 1y1m1d
 97 2016-01-07 10:02:03   | within 1y1m1d
 96 2016-01-06 08:02:03   | within 1y1m1d
 95 2016-01-05 09:02:03   | within 1y1m1d
 94 2016-01-04 16:23:03   | within 1y1m1d
 93 2016-01-04 12:30:03   | within 1y1m1d
 92 2016-01-04 12:28:03   | within 1y1m1d
 91 2016-01-04 12:24:03   | within 1y1m1d
 90 2016-01-04 12:23:03   | within 1y1m1d
 89 2016-01-04 11:23:03   | within 1y1m1d
 88 2016-01-04 10:23:03   | within 1y1m1d
 87 2016-01-03 07:02:03   | within 1y1m1d
 86 2016-01-01 07:08:03   | within 1y1m1d
 85 2016-01-01 01:03:03   | within 1y1m1d
 84 2016-01-01 01:02:03   | within 1y1m1d
 83 2015-11-22 10:20:30   | within 1y1m1d
 82 2015-11-21 10:20:30   | within 1y1m1d
 81 2015-11-20 10:20:30   | within 1y1m1d
 80 2015-11-18 10:20:30   | within 1y1m1d
 79 2015-11-15 10:20:30   | within 1y1m1d
 78 2015-11-13 10:20:30.1 | within 1y1m1d
 77 2015-11-13 10:20:30   | within 1y1m1d
 76 2015-11-12 10:20:30   | within 1y1m1d
 75 2015-11-10 10:20:30   | within 1y1m1d
 74 2015-11-08 10:20:30   | within 1y1m1d
 69 2015-10-22 10:20:30   | within 1y1m1d
 70 2015-10-22 10:20:30   | within 1y1m1d
 71 2015-10-22 10:20:30   | within 1y1m1d
 72 2015-10-22 10:20:30   | within 1y1m1d
 73 2015-10-22 10:20:30   | within 1y1m1d
 68 2015-10-20 10:20:30   | within 1y1m1d
 67 2015-10-11 10:20:30   | within 1y1m1d
 66 2015-10-10 10:20:30   | within 1y1m1d
 65 2015-10-09 10:20:30   | within 1y1m1d
 64 2015-10-08 10:20:30   | within 1y1m1d
 63 2015-10-06 10:20:30   | within 1y1m1d
 62 2015-10-05 10:20:30   | within 1y1m1d
 61 2015-10-02 10:20:30   | within 1y1m1d
 60 2015-10-01 10:20:30   | within 1y1m1d
 49 2015-09-22 10:20:30   | within 1y1m1d
 48 2015-09-20 10:20:30   | within 1y1m1d
 47 2015-09-11 10:20:30   | within 1y1m1d
 46 2015-09-10 10:20:30   | within 1y1m1d
 45 2015-09-09 10:20:30   | within 1y1m1d
 44 2015-09-08 10:20:30   | within 1y1m1d
 43 2015-09-06 10:20:30   | within 1y1m1d
 42 2015-09-05 10:20:30   | within 1y1m1d
 41 2015-09-02 10:20:30   | within 1y1m1d
 40 2015-09-01 10:20:30   | within 1y1m1d
 59 2015-08-22 10:20:30   | within 1y1m1d
 58 2015-08-21 10:20:30   | within 1y1m1d
 57 2015-08-20 10:20:30   | within 1y1m1d
 56 2015-08-18 10:20:30   | within 1y1m1d
 55 2015-08-15 10:20:30   | within 1y1m1d
 54 2015-08-13 10:20:30.1 | within 1y1m1d
 53 2015-08-13 10:20:30   | within 1y1m1d
 52 2015-08-12 10:20:30   | within 1y1m1d
 51 2015-08-10 10:20:30   | within 1y1m1d
 50 2015-08-08 10:20:30   | within 1y1m1d
""",
    27: """
102 2016-01-18 12:02:03   | within 13d23h
101 2016-01-12 21:08:03   | within 13d23h
100 2016-01-12 21:02:03   | within 13d23h
 99 2016-01-09 21:02:03   | within 13d23h
 98 2016-01-08 20:02:03   | within 13d23h
 97 2016-01-07 10:02:03   | within 13d23h
 96 2016-01-06 08:02:03   | within 13d23h
 95 2016-01-05 09:02:03   | within 13d23h
 94 2016-01-04 16:23:03   | within 13d23h
""",
    28: """
102 2016-01-18 12:02:03   | within 2m2h
101 2016-01-12 21:08:03   | within 2m2h
100 2016-01-12 21:02:03   | within 2m2h
 99 2016-01-09 21:02:03   | within 2m2h
 98 2016-01-08 20:02:03   | within 2m2h
 97 2016-01-07 10:02:03   | within 2m2h
 96 2016-01-06 08:02:03   | within 2m2h
 95 2016-01-05 09:02:03   | within 2m2h
 94 2016-01-04 16:23:03   | within 2m2h
 93 2016-01-04 12:30:03   | within 2m2h
 92 2016-01-04 12:28:03   | within 2m2h
 91 2016-01-04 12:24:03   | within 2m2h
 90 2016-01-04 12:23:03   | within 2m2h
 89 2016-01-04 11:23:03   | within 2m2h
 88 2016-01-04 10:23:03   | within 2m2h
 87 2016-01-03 07:02:03   | within 2m2h
 86 2016-01-01 07:08:03   | within 2m2h
 85 2016-01-01 01:03:03   | within 2m2h
 84 2016-01-01 01:02:03   | within 2m2h
 83 2015-11-22 10:20:30   | within 2m2h
 82 2015-11-21 10:20:30   | within 2m2h
 81 2015-11-20 10:20:30   | within 2m2h
 80 2015-11-18 10:20:30   | within 2m2h
""",
    29: """
102 2016-01-18 12:02:03   | within 1y2m3d3h
101 2016-01-12 21:08:03   | within 1y2m3d3h
100 2016-01-12 21:02:03   | within 1y2m3d3h
 99 2016-01-09 21:02:03   | within 1y2m3d3h
 98 2016-01-08 20:02:03   | within 1y2m3d3h
 97 2016-01-07 10:02:03   | within 1y2m3d3h
 96 2016-01-06 08:02:03   | within 1y2m3d3h
 95 2016-01-05 09:02:03   | within 1y2m3d3h
 94 2016-01-04 16:23:03   | within 1y2m3d3h
 93 2016-01-04 12:30:03   | within 1y2m3d3h
 92 2016-01-04 12:28:03   | within 1y2m3d3h
 91 2016-01-04 12:24:03   | within 1y2m3d3h
 90 2016-01-04 12:23:03   | within 1y2m3d3h
 89 2016-01-04 11:23:03   | within 1y2m3d3h
 88 2016-01-04 10:23:03   | within 1y2m3d3h
 87 2016-01-03 07:02:03   | within 1y2m3d3h
 86 2016-01-01 07:08:03   | within 1y2m3d3h
 85 2016-01-01 01:03:03   | within 1y2m3d3h
 84 2016-01-01 01:02:03   | within 1y2m3d3h
 83 2015-11-22 10:20:30   | within 1y2m3d3h
 82 2015-11-21 10:20:30   | within 1y2m3d3h
 81 2015-11-20 10:20:30   | within 1y2m3d3h
 80 2015-11-18 10:20:30   | within 1y2m3d3h
 79 2015-11-15 10:20:30   | within 1y2m3d3h
 78 2015-11-13 10:20:30.1 | within 1y2m3d3h
 77 2015-11-13 10:20:30   | within 1y2m3d3h
 76 2015-11-12 10:20:30   | within 1y2m3d3h
 75 2015-11-10 10:20:30   | within 1y2m3d3h
 74 2015-11-08 10:20:30   | within 1y2m3d3h
 69 2015-10-22 10:20:30   | within 1y2m3d3h
 70 2015-10-22 10:20:30   | within 1y2m3d3h
 71 2015-10-22 10:20:30   | within 1y2m3d3h
 72 2015-10-22 10:20:30   | within 1y2m3d3h
 73 2015-10-22 10:20:30   | within 1y2m3d3h
 68 2015-10-20 10:20:30   | within 1y2m3d3h
 67 2015-10-11 10:20:30   | within 1y2m3d3h
 66 2015-10-10 10:20:30   | within 1y2m3d3h
 65 2015-10-09 10:20:30   | within 1y2m3d3h
 64 2015-10-08 10:20:30   | within 1y2m3d3h
 63 2015-10-06 10:20:30   | within 1y2m3d3h
 62 2015-10-05 10:20:30   | within 1y2m3d3h
 61 2015-10-02 10:20:30   | within 1y2m3d3h
 60 2015-10-01 10:20:30   | within 1y2m3d3h
 49 2015-09-22 10:20:30   | within 1y2m3d3h
 48 2015-09-20 10:20:30   | within 1y2m3d3h
 47 2015-09-11 10:20:30   | within 1y2m3d3h
 46 2015-09-10 10:20:30   | within 1y2m3d3h
 45 2015-09-09 10:20:30   | within 1y2m3d3h
 44 2015-09-08 10:20:30   | within 1y2m3d3h
 43 2015-09-06 10:20:30   | within 1y2m3d3h
 42 2015-09-05 10:20:30   | within 1y2m3d3h
 41 2015-09-02 10:20:30   | within 1y2m3d3h
 40 2015-09-01 10:20:30   | within 1y2m3d3h
 59 2015-08-22 10:20:30   | within 1y2m3d3h
 58 2015-08-21 10:20:30   | within 1y2m3d3h
 57 2015-08-20 10:20:30   | within 1y2m3d3h
 56 2015-08-18 10:20:30   | within 1y2m3d3h
 55 2015-08-15 10:20:30   | within 1y2m3d3h
 54 2015-08-13 10:20:30.1 | within 1y2m3d3h
 53 2015-08-13 10:20:30   | within 1y2m3d3h
 52 2015-08-12 10:20:30   | within 1y2m3d3h
 51 2015-08-10 10:20:30   | within 1y2m3d3h
 50 2015-08-08 10:20:30   | within 1y2m3d3h
 39 2014-11-22 10:20:30   | within 1y2m3d3h
 38 2014-11-21 10:20:30   | within 1y2m3d3h
 37 2014-11-20 10:20:30   | within 1y2m3d3h
 36 2014-11-18 10:20:30   | within 1y2m3d3h
 35 2014-11-15 10:20:30   | within 1y2m3d3h
""",
    30: """
102 2016-01-18 12:02:03   | hourly within 1y2m3d3h
101 2016-01-12 21:08:03   | hourly within 1y2m3d3h
 99 2016-01-09 21:02:03   | hourly within 1y2m3d3h
 98 2016-01-08 20:02:03   | hourly within 1y2m3d3h
 97 2016-01-07 10:02:03   | hourly within 1y2m3d3h
 96 2016-01-06 08:02:03   | hourly within 1y2m3d3h
 95 2016-01-05 09:02:03   | hourly within 1y2m3d3h
 94 2016-01-04 16:23:03   | hourly within 1y2m3d3h
 93 2016-01-04 12:30:03   | hourly within 1y2m3d3h
 89 2016-01-04 11:23:03   | hourly within 1y2m3d3h
 88 2016-01-04 10:23:03   | hourly within 1y2m3d3h
 87 2016-01-03 07:02:03   | hourly within 1y2m3d3h
 86 2016-01-01 07:08:03   | hourly within 1y2m3d3h
 85 2016-01-01 01:03:03   | hourly within 1y2m3d3h
 83 2015-11-22 10:20:30   | hourly within 1y2m3d3h
 82 2015-11-21 10:20:30   | hourly within 1y2m3d3h
 81 2015-11-20 10:20:30   | hourly within 1y2m3d3h
 80 2015-11-18 10:20:30   | hourly within 1y2m3d3h
 79 2015-11-15 10:20:30   | hourly within 1y2m3d3h
 78 2015-11-13 10:20:30.1 | hourly within 1y2m3d3h
 76 2015-11-12 10:20:30   | hourly within 1y2m3d3h
 75 2015-11-10 10:20:30   | hourly within 1y2m3d3h
 74 2015-11-08 10:20:30   | hourly within 1y2m3d3h
 69 2015-10-22 10:20:30   | hourly within 1y2m3d3h
 68 2015-10-20 10:20:30   | hourly within 1y2m3d3h
 67 2015-10-11 10:20:30   | hourly within 1y2m3d3h
 66 2015-10-10 10:20:30   | hourly within 1y2m3d3h
 65 2015-10-09 10:20:30   | hourly within 1y2m3d3h
 64 2015-10-08 10:20:30   | hourly within 1y2m3d3h
 63 2015-10-06 10:20:30   | hourly within 1y2m3d3h
 62 2015-10-05 10:20:30   | hourly within 1y2m3d3h
 61 2015-10-02 10:20:30   | hourly within 1y2m3d3h
 60 2015-10-01 10:20:30   | hourly within 1y2m3d3h
 49 2015-09-22 10:20:30   | hourly within 1y2m3d3h
 48 2015-09-20 10:20:30   | hourly within 1y2m3d3h
 47 2015-09-11 10:20:30   | hourly within 1y2m3d3h
 46 2015-09-10 10:20:30   | hourly within 1y2m3d3h
 45 2015-09-09 10:20:30   | hourly within 1y2m3d3h
 44 2015-09-08 10:20:30   | hourly within 1y2m3d3h
 43 2015-09-06 10:20:30   | hourly within 1y2m3d3h
 42 2015-09-05 10:20:30   | hourly within 1y2m3d3h
 41 2015-09-02 10:20:30   | hourly within 1y2m3d3h
 40 2015-09-01 10:20:30   | hourly within 1y2m3d3h
 59 2015-08-22 10:20:30   | hourly within 1y2m3d3h
 58 2015-08-21 10:20:30   | hourly within 1y2m3d3h
 57 2015-08-20 10:20:30   | hourly within 1y2m3d3h
 56 2015-08-18 10:20:30   | hourly within 1y2m3d3h
 55 2015-08-15 10:20:30   | hourly within 1y2m3d3h
 54 2015-08-13 10:20:30.1 | hourly within 1y2m3d3h
 52 2015-08-12 10:20:30   | hourly within 1y2m3d3h
 51 2015-08-10 10:20:30   | hourly within 1y2m3d3h
 50 2015-08-08 10:20:30   | hourly within 1y2m3d3h
 39 2014-11-22 10:20:30   | hourly within 1y2m3d3h
 38 2014-11-21 10:20:30   | hourly within 1y2m3d3h
 37 2014-11-20 10:20:30   | hourly within 1y2m3d3h
 36 2014-11-18 10:20:30   | hourly within 1y2m3d3h
 35 2014-11-15 10:20:30   | hourly within 1y2m3d3h
""",
    31: """
102 2016-01-18 12:02:03   | daily within 1y2m3d3h
101 2016-01-12 21:08:03   | daily within 1y2m3d3h
 99 2016-01-09 21:02:03   | daily within 1y2m3d3h
 98 2016-01-08 20:02:03   | daily within 1y2m3d3h
 97 2016-01-07 10:02:03   | daily within 1y2m3d3h
 96 2016-01-06 08:02:03   | daily within 1y2m3d3h
 95 2016-01-05 09:02:03   | daily within 1y2m3d3h
 94 2016-01-04 16:23:03   | daily within 1y2m3d3h
 87 2016-01-03 07:02:03   | daily within 1y2m3d3h
 86 2016-01-01 07:08:03   | daily within 1y2m3d3h
 83 2015-11-22 10:20:30   | daily within 1y2m3d3h
 82 2015-11-21 10:20:30   | daily within 1y2m3d3h
 81 2015-11-20 10:20:30   | daily within 1y2m3d3h
 80 2015-11-18 10:20:30   | daily within 1y2m3d3h
 79 2015-11-15 10:20:30   | daily within 1y2m3d3h
 78 2015-11-13 10:20:30.1 | daily within 1y2m3d3h
 76 2015-11-12 10:20:30   | daily within 1y2m3d3h
 75 2015-11-10 10:20:30   | daily within 1y2m3d3h
 74 2015-11-08 10:20:30   | daily within 1y2m3d3h
 69 2015-10-22 10:20:30   | daily within 1y2m3d3h
 68 2015-10-20 10:20:30   | daily within 1y2m3d3h
 67 2015-10-11 10:20:30   | daily within 1y2m3d3h
 66 2015-10-10 10:20:30   | daily within 1y2m3d3h
 65 2015-10-09 10:20:30   | daily within 1y2m3d3h
 64 2015-10-08 10:20:30   | daily within 1y2m3d3h
 63 2015-10-06 10:20:30   | daily within 1y2m3d3h
 62 2015-10-05 10:20:30   | daily within 1y2m3d3h
 61 2015-10-02 10:20:30   | daily within 1y2m3d3h
 60 2015-10-01 10:20:30   | daily within 1y2m3d3h
 49 2015-09-22 10:20:30   | daily within 1y2m3d3h
 48 2015-09-20 10:20:30   | daily within 1y2m3d3h
 47 2015-09-11 10:20:30   | daily within 1y2m3d3h
 46 2015-09-10 10:20:30   | daily within 1y2m3d3h
 45 2015-09-09 10:20:30   | daily within 1y2m3d3h
 44 2015-09-08 10:20:30   | daily within 1y2m3d3h
 43 2015-09-06 10:20:30   | daily within 1y2m3d3h
 42 2015-09-05 10:20:30   | daily within 1y2m3d3h
 41 2015-09-02 10:20:30   | daily within 1y2m3d3h
 40 2015-09-01 10:20:30   | daily within 1y2m3d3h
 59 2015-08-22 10:20:30   | daily within 1y2m3d3h
 58 2015-08-21 10:20:30   | daily within 1y2m3d3h
 57 2015-08-20 10:20:30   | daily within 1y2m3d3h
 56 2015-08-18 10:20:30   | daily within 1y2m3d3h
 55 2015-08-15 10:20:30   | daily within 1y2m3d3h
 54 2015-08-13 10:20:30.1 | daily within 1y2m3d3h
 52 2015-08-12 10:20:30   | daily within 1y2m3d3h
 51 2015-08-10 10:20:30   | daily within 1y2m3d3h
 50 2015-08-08 10:20:30   | daily within 1y2m3d3h
 39 2014-11-22 10:20:30   | daily within 1y2m3d3h
 38 2014-11-21 10:20:30   | daily within 1y2m3d3h
 37 2014-11-20 10:20:30   | daily within 1y2m3d3h
 36 2014-11-18 10:20:30   | daily within 1y2m3d3h
 35 2014-11-15 10:20:30   | daily within 1y2m3d3h
""",
    32: """
102 2016-01-18 12:02:03   | weekly within 1y2m3d3h
101 2016-01-12 21:08:03   | weekly within 1y2m3d3h
 99 2016-01-09 21:02:03   | weekly within 1y2m3d3h
 87 2016-01-03 07:02:03   | weekly within 1y2m3d3h
 83 2015-11-22 10:20:30   | weekly within 1y2m3d3h
 79 2015-11-15 10:20:30   | weekly within 1y2m3d3h
 74 2015-11-08 10:20:30   | weekly within 1y2m3d3h
 69 2015-10-22 10:20:30   | weekly within 1y2m3d3h
 67 2015-10-11 10:20:30   | weekly within 1y2m3d3h
 61 2015-10-02 10:20:30   | weekly within 1y2m3d3h
 49 2015-09-22 10:20:30   | weekly within 1y2m3d3h
 48 2015-09-20 10:20:30   | weekly within 1y2m3d3h
 47 2015-09-11 10:20:30   | weekly within 1y2m3d3h
 43 2015-09-06 10:20:30   | weekly within 1y2m3d3h
 59 2015-08-22 10:20:30   | weekly within 1y2m3d3h
 55 2015-08-15 10:20:30   | weekly within 1y2m3d3h
 50 2015-08-08 10:20:30   | weekly within 1y2m3d3h
 39 2014-11-22 10:20:30   | weekly within 1y2m3d3h
 35 2014-11-15 10:20:30   | weekly within 1y2m3d3h
""",
    33: """
102 2016-01-18 12:02:03   | monthly within 1y2m3d3h
 83 2015-11-22 10:20:30   | monthly within 1y2m3d3h
 69 2015-10-22 10:20:30   | monthly within 1y2m3d3h
 49 2015-09-22 10:20:30   | monthly within 1y2m3d3h
 59 2015-08-22 10:20:30   | monthly within 1y2m3d3h
 39 2014-11-22 10:20:30   | monthly within 1y2m3d3h
""",
    34: """
102 2016-01-18 12:02:03   | yearly within 1y2m3d3h
 83 2015-11-22 10:20:30   | yearly within 1y2m3d3h
 39 2014-11-22 10:20:30   | yearly within 1y2m3d3h
""",
    35: """
102 2016-01-18 12:02:03   | within 1h; hourly within 1d; daily within 7d; weekly within 1m
                          | monthly within 1y; yearly within 9999y
101 2016-01-12 21:08:03   | daily within 7d; weekly within 1m
 99 2016-01-09 21:02:03   | weekly within 1m
 87 2016-01-03 07:02:03   | weekly within 1m
 83 2015-11-22 10:20:30   | monthly within 1y; yearly within 9999y
 69 2015-10-22 10:20:30   | monthly within 1y
 49 2015-09-22 10:20:30   | monthly within 1y
 59 2015-08-22 10:20:30   | monthly within 1y
 39 2014-11-22 10:20:30   | yearly within 9999y
 10 2014-08-08 10:20:30   | oldest yearly within 9999y
""",
    36: """
102 2016-01-18 12:02:03   | last snapshot
101 2016-01-12 21:08:03   | last snapshot
100 2016-01-12 21:02:03   | last snapshot
 99 2016-01-09 21:02:03   | last snapshot
 98 2016-01-08 20:02:03   | last snapshot
 97 2016-01-07 10:02:03   | last snapshot
 96 2016-01-06 08:02:03   | last snapshot
 95 2016-01-05 09:02:03   | last snapshot
 94 2016-01-04 16:23:03   | last snapshot
 93 2016-01-04 12:30:03   | last snapshot
 92 2016-01-04 12:28:03   | last snapshot
 91 2016-01-04 12:24:03   | last snapshot
 90 2016-01-04 12:23:03   | last snapshot
 89 2016-01-04 11:23:03   | last snapshot
 88 2016-01-04 10:23:03   | last snapshot
 87 2016-01-03 07:02:03   | last snapshot
 86 2016-01-01 07:08:03   | last snapshot
 85 2016-01-01 01:03:03   | last snapshot
 84 2016-01-01 01:02:03   | last snapshot
 83 2015-11-22 10:20:30   | last snapshot
 82 2015-11-21 10:20:30   | last snapshot
 81 2015-11-20 10:20:30   | last snapshot
 80 2015-11-18 10:20:30   | last snapshot
 79 2015-11-15 10:20:30   | last snapshot
 78 2015-11-13 10:20:30.1 | last snapshot
 77 2015-11-13 10:20:30   | last snapshot
 76 2015-11-12 10:20:30   | last snapshot
 75 2015-11-10 10:20:30   | last snapshot
 74 2015-11-08 10:20:30   | last snapshot
 69 2015-10-22 10:20:30   | last snapshot
 70 2015-10-22 10:20:30   | last snapshot
 71 2015-10-22 10:20:30   | last snapshot
 72 2015-10-22 10:20:30   | last snapshot
 73 2015-10-22 10:20:30   | last snapshot
 68 2015-10-20 10:20:30   | last snapshot
 67 2015-10-11 10:20:30   | last snapshot
 66 2015-10-10 10:20:30   | last snapshot
 65 2015-10-09 10:20:30   | last snapshot
 64 2015-10-08 10:20:30   | last snapshot
 63 2015-10-06 10:20:30   | last snapshot
 62 2015-10-05 10:20:30   | last snapshot
 61 2015-10-02 10:20:30   | last snapshot
 60 2015-10-01 10:20:30   | last snapshot
 49 2015-09-22 10:20:30   | last snapshot
 48 2015-09-20 10:20:30   | last snapshot
 47 2015-09-11 10:20:30   | last snapshot
 46 2015-09-10 10:20:30   | last snapshot
 45 2015-09-09 10:20:30   | last snapshot
 44 2015-09-08 10:20:30   | last snapshot
 43 2015-09-06 10:20:30   | last snapshot
 42 2015-09-05 10:20:30   | last snapshot
 41 2015-09-02 10:20:30   | last snapshot
 40 2015-09-01 10:20:30   | last snapshot
 59 2015-08-22 10:20:30   | last snapshot
 58 2015-08-21 10:20:30   | last snapshot
 57 2015-08-20 10:20:30   | last snapshot
 56 2015-08-18 10:20:30   | last snapshot
 55 2015-08-15 10:20:30   | last snapshot
 54 2015-08-13 10:20:30.1 | last snapshot
 53 2015-08-13 10:20:30   | last snapshot
 52 2015-08-12 10:20:30   | last snapshot
 51 2015-08-10 10:20:30   | last snapshot
 50 2015-08-08 10:20:30   | last snapshot
 39 2014-11-22 10:20:30   | last snapshot
 38 2014-11-21 10:20:30   | last snapshot
 37 2014-11-20 10:20:30   | last snapshot
 36 2014-11-18 10:20:30   | last snapshot
 35 2014-11-15 10:20:30   | last snapshot
 34 2014-11-13 10:20:30.1 | last snapshot
 33 2014-11-13 10:20:30   | last snapshot
 32 2014-11-12 10:20:30   | last snapshot
 31 2014-11-10 10:20:30   | last snapshot
 30 2014-11-08 10:20:30   | last snapshot
 29 2014-10-22 10:20:30   | last snapshot
 28 2014-10-20 10:20:30   | last snapshot
 27 2014-10-11 10:20:30   | last snapshot
 26 2014-10-10 10:20:30   | last snapshot
 25 2014-10-09 10:20:30   | last snapshot
 24 2014-10-08 10:20:30   | last snapshot
 23 2014-10-06 10:20:30   | last snapshot
 22 2014-10-05 10:20:30   | last snapshot
 21 2014-10-02 10:20:30   | last snapshot
 20 2014-10-01 10:20:30   | last snapshot
  9 2014-09-22 10:20:30   | last snapshot
  8 2014-09-20 10:20:30   | last snapshot
  7 2014-09-11 10:20:30   | last snapshot
  6 2014-09-10 10:20:30   | last snapshot
  5 2014-09-09 10:20:30   | last snapshot
  4 2014-09-08 10:20:30   | last snapshot
  3 2014-09-06 10:20:30   | last snapshot
  2 2014-09-05 10:20:30   | last snapshot
  1 2014-09-02 10:20:30   | last snapshot
  0 2014-09-01 10:20:30   | last snapshot
 19 2014-08-22 10:20:30   | last snapshot
 18 2014-08-21 10:20:30   | last snapshot
 17 2014-08-20 10:20:30   | last snapshot
 16 2014-08-18 10:20:30   | last snapshot
 15 2014-08-15 10:20:30   | last snapshot
 14 2014-08-13 10:20:30.1 | last snapshot
 13 2014-08-13 10:20:30   | last snapshot
 12 2014-08-12 10:20:30   | last snapshot
 11 2014-08-10 10:20:30   | last snapshot
 10 2014-08-08 10:20:30   | last snapshot
""",
    37: """
102 2016-01-18 12:02:03   | last snapshot; hourly snapshot
101 2016-01-12 21:08:03   | last snapshot; hourly snapshot
100 2016-01-12 21:02:03   | last snapshot
 99 2016-01-09 21:02:03   | last snapshot; hourly snapshot
 98 2016-01-08 20:02:03   | last snapshot; hourly snapshot
 97 2016-01-07 10:02:03   | last snapshot; hourly snapshot
 96 2016-01-06 08:02:03   | last snapshot; hourly snapshot
 95 2016-01-05 09:02:03   | last snapshot; hourly snapshot
 94 2016-01-04 16:23:03   | last snapshot; hourly snapshot
 93 2016-01-04 12:30:03   | last snapshot; hourly snapshot
 92 2016-01-04 12:28:03   | last snapshot
 91 2016-01-04 12:24:03   | last snapshot
 90 2016-01-04 12:23:03   | last snapshot
 89 2016-01-04 11:23:03   | last snapshot; hourly snapshot
 88 2016-01-04 10:23:03   | last snapshot; hourly snapshot
 87 2016-01-03 07:02:03   | last snapshot; hourly snapshot
 86 2016-01-01 07:08:03   | last snapshot; hourly snapshot
 85 2016-01-01 01:03:03   | last snapshot; hourly snapshot
 84 2016-01-01 01:02:03   | last snapshot
 83 2015-11-22 10:20:30   | last snapshot; hourly snapshot
 82 2015-11-21 10:20:30   | last snapshot; hourly snapshot
 81 2015-11-20 10:20:30   | last snapshot; hourly snapshot
 80 2015-11-18 10:20:30   | last snapshot; hourly snapshot
 79 2015-11-15 10:20:30   | last snapshot; hourly snapshot
 78 2015-11-13 10:20:30.1 | last snapshot; hourly snapshot
 77 2015-11-13 10:20:30   | last snapshot
 76 2015-11-12 10:20:30   | last snapshot; hourly snapshot
 75 2015-11-10 10:20:30   | last snapshot; hourly snapshot
 74 2015-11-08 10:20:30   | last snapshot; hourly snapshot
 69 2015-10-22 10:20:30   | last snapshot; hourly snapshot
 70 2015-10-22 10:20:30   | last snapshot
 71 2015-10-22 10:20:30   | last snapshot
 72 2015-10-22 10:20:30   | last snapshot
 73 2015-10-22 10:20:30   | last snapshot
 68 2015-10-20 10:20:30   | last snapshot; hourly snapshot
 67 2015-10-11 10:20:30   | last snapshot; hourly snapshot
 66 2015-10-10 10:20:30   | last snapshot; hourly snapshot
 65 2015-10-09 10:20:30   | last snapshot; hourly snapshot
 64 2015-10-08 10:20:30   | last snapshot; hourly snapshot
 63 2015-10-06 10:20:30   | last snapshot; hourly snapshot
 62 2015-10-05 10:20:30   | last snapshot; hourly snapshot
 61 2015-10-02 10:20:30   | last snapshot; hourly snapshot
 60 2015-10-01 10:20:30   | last snapshot; hourly snapshot
 49 2015-09-22 10:20:30   | last snapshot; hourly snapshot
 48 2015-09-20 10:20:30   | last snapshot; hourly snapshot
 47 2015-09-11 10:20:30   | last snapshot; hourly snapshot
 46 2015-09-10 10:20:30   | last snapshot; hourly snapshot
 45 2015-09-09 10:20:30   | last snapshot; hourly snapshot
 44 2015-09-08 10:20:30   | last snapshot; hourly snapshot
 43 2015-09-06 10:20:30   | last snapshot; hourly snapshot
 42 2015-09-05 10:20:30   | last snapshot; hourly snapshot
 41 2015-09-02 10:20:30   | last snapshot; hourly snapshot
 40 2015-09-01 10:20:30   | last snapshot; hourly snapshot
 59 2015-08-22 10:20:30   | last snapshot; hourly snapshot
 58 2015-08-21 10:20:30   | last snapshot; hourly snapshot
 57 2015-08-20 10:20:30   | last snapshot; hourly snapshot
 56 2015-08-18 10:20:30   | last snapshot; hourly snapshot
 55 2015-08-15 10:20:30   | last snapshot; hourly snapshot
 54 2015-08-13 10:20:30.1 | last snapshot; hourly snapshot
 53 2015-08-13 10:20:30   | last snapshot
 52 2015-08-12 10:20:30   | last snapshot; hourly snapshot
 51 2015-08-10 10:20:30   | last snapshot; hourly snapshot
 50 2015-08-08 10:20:30   | last snapshot; hourly snapshot
 39 2014-11-22 10:20:30   | last snapshot; hourly snapshot
 38 2014-11-21 10:20:30   | last snapshot; hourly snapshot
 37 2014-11-20 10:20:30   | last snapshot; hourly snapshot
 36 2014-11-18 10:20:30   | last snapshot; hourly snapshot
 35 2014-11-15 10:20:30   | last snapshot; hourly snapshot
 34 2014-11-13 10:20:30.1 | last snapshot; hourly snapshot
 33 2014-11-13 10:20:30   | last snapshot
 32 2014-11-12 10:20:30   | last snapshot; hourly snapshot
 31 2014-11-10 10:20:30   | last snapshot; hourly snapshot
 30 2014-11-08 10:20:30   | last snapshot; hourly snapshot
 29 2014-10-22 10:20:30   | last snapshot; hourly snapshot
 28 2014-10-20 10:20:30   | last snapshot; hourly snapshot
 27 2014-10-11 10:20:30   | last snapshot; hourly snapshot
 26 2014-10-10 10:20:30   | last snapshot; hourly snapshot
 25 2014-10-09 10:20:30   | last snapshot; hourly snapshot
 24 2014-10-08 10:20:30   | last snapshot; hourly snapshot
 23 2014-10-06 10:20:30   | last snapshot; hourly snapshot
 22 2014-10-05 10:20:30   | last snapshot; hourly snapshot
 21 2014-10-02 10:20:30   | last snapshot; hourly snapshot
 20 2014-10-01 10:20:30   | last snapshot; hourly snapshot
  9 2014-09-22 10:20:30   | last snapshot; hourly snapshot
  8 2014-09-20 10:20:30   | last snapshot; hourly snapshot
  7 2014-09-11 10:20:30   | last snapshot; hourly snapshot
  6 2014-09-10 10:20:30   | last snapshot; hourly snapshot
  5 2014-09-09 10:20:30   | last snapshot; hourly snapshot
  4 2014-09-08 10:20:30   | last snapshot; hourly snapshot
  3 2014-09-06 10:20:30   | last snapshot; hourly snapshot
  2 2014-09-05 10:20:30   | last snapshot; hourly snapshot
  1 2014-09-02 10:20:30   | last snapshot; hourly snapshot
  0 2014-09-01 10:20:30   | last snapshot; hourly snapshot
 19 2014-08-22 10:20:30   | last snapshot; hourly snapshot
 18 2014-08-21 10:20:30   | last snapshot; hourly snapshot
 17 2014-08-20 10:20:30   | last snapshot; hourly snapshot
 16 2014-08-18 10:20:30   | last snapshot; hourly snapshot
 15 2014-08-15 10:20:30   | last snapshot; hourly snapshot
 14 2014-08-13 10:20:30.1 | last snapshot; hourly snapshot
 13 2014-08-13 10:20:30   | last snapshot
 12 2014-08-12 10:20:30   | last snapshot; hourly snapshot
 11 2014-08-10 10:20:30   | last snapshot; hourly snapshot
 10 2014-08-08 10:20:30   | last snapshot; hourly snapshot
""",
    38: """
102 2016-01-18 12:02:03   | hourly snapshot
101 2016-01-12 21:08:03   | hourly snapshot
 99 2016-01-09 21:02:03   | hourly snapshot
 98 2016-01-08 20:02:03   | hourly snapshot
 97 2016-01-07 10:02:03   | hourly snapshot
 96 2016-01-06 08:02:03   | hourly snapshot
 95 2016-01-05 09:02:03   | hourly snapshot
 94 2016-01-04 16:23:03   | hourly snapshot
 93 2016-01-04 12:30:03   | hourly snapshot
 89 2016-01-04 11:23:03   | hourly snapshot
 88 2016-01-04 10:23:03   | hourly snapshot
 87 2016-01-03 07:02:03   | hourly snapshot
 86 2016-01-01 07:08:03   | hourly snapshot
 85 2016-01-01 01:03:03   | hourly snapshot
 83 2015-11-22 10:20:30   | hourly snapshot
 82 2015-11-21 10:20:30   | hourly snapshot
 81 2015-11-20 10:20:30   | hourly snapshot
 80 2015-11-18 10:20:30   | hourly snapshot
 79 2015-11-15 10:20:30   | hourly snapshot
 78 2015-11-13 10:20:30.1 | hourly snapshot
 76 2015-11-12 10:20:30   | hourly snapshot
 75 2015-11-10 10:20:30   | hourly snapshot
 74 2015-11-08 10:20:30   | hourly snapshot
 69 2015-10-22 10:20:30   | hourly snapshot
 68 2015-10-20 10:20:30   | hourly snapshot
 67 2015-10-11 10:20:30   | hourly snapshot
 66 2015-10-10 10:20:30   | hourly snapshot
 65 2015-10-09 10:20:30   | hourly snapshot
 64 2015-10-08 10:20:30   | hourly snapshot
 63 2015-10-06 10:20:30   | hourly snapshot
 62 2015-10-05 10:20:30   | hourly snapshot
 61 2015-10-02 10:20:30   | hourly snapshot
 60 2015-10-01 10:20:30   | hourly snapshot
 49 2015-09-22 10:20:30   | hourly snapshot
 48 2015-09-20 10:20:30   | hourly snapshot
 47 2015-09-11 10:20:30   | hourly snapshot
 46 2015-09-10 10:20:30   | hourly snapshot
 45 2015-09-09 10:20:30   | hourly snapshot
 44 2015-09-08 10:20:30   | hourly snapshot
 43 2015-09-06 10:20:30   | hourly snapshot
 42 2015-09-05 10:20:30   | hourly snapshot
 41 2015-09-02 10:20:30   | hourly snapshot
 40 2015-09-01 10:20:30   | hourly snapshot
 59 2015-08-22 10:20:30   | hourly snapshot
 58 2015-08-21 10:20:30   | hourly snapshot
 57 2015-08-20 10:20:30   | hourly snapshot
 56 2015-08-18 10:20:30   | hourly snapshot
 55 2015-08-15 10:20:30   | hourly snapshot
 54 2015-08-13 10:20:30.1 | hourly snapshot
 52 2015-08-12 10:20:30   | hourly snapshot
 51 2015-08-10 10:20:30   | hourly snapshot
 50 2015-08-08 10:20:30   | hourly snapshot
 39 2014-11-22 10:20:30   | hourly snapshot
 38 2014-11-21 10:20:30   | hourly snapshot
 37 2014-11-20 10:20:30   | hourly snapshot
 36 2014-11-18 10:20:30   | hourly snapshot
 35 2014-11-15 10:20:30   | hourly snapshot
 34 2014-11-13 10:20:30.1 | hourly snapshot
 32 2014-11-12 10:20:30   | hourly snapshot
 31 2014-11-10 10:20:30   | hourly snapshot
 30 2014-11-08 10:20:30   | hourly snapshot
 29 2014-10-22 10:20:30   | hourly snapshot
 28 2014-10-20 10:20:30   | hourly snapshot
 27 2014-10-11 10:20:30   | hourly snapshot
 26 2014-10-10 10:20:30   | hourly snapshot
 25 2014-10-09 10:20:30   | hourly snapshot
 24 2014-10-08 10:20:30   | hourly snapshot
 23 2014-10-06 10:20:30   | hourly snapshot
 22 2014-10-05 10:20:30   | hourly snapshot
 21 2014-10-02 10:20:30   | hourly snapshot
 20 2014-10-01 10:20:30   | hourly snapshot
  9 2014-09-22 10:20:30   | hourly snapshot
  8 2014-09-20 10:20:30   | hourly snapshot
  7 2014-09-11 10:20:30   | hourly snapshot
  6 2014-09-10 10:20:30   | hourly snapshot
  5 2014-09-09 10:20:30   | hourly snapshot
  4 2014-09-08 10:20:30   | hourly snapshot
  3 2014-09-06 10:20:30   | hourly snapshot
  2 2014-09-05 10:20:30   | hourly snapshot
  1 2014-09-02 10:20:30   | hourly snapshot
  0 2014-09-01 10:20:30   | hourly snapshot
 19 2014-08-22 10:20:30   | hourly snapshot
 18 2014-08-21 10:20:30   | hourly snapshot
 17 2014-08-20 10:20:30   | hourly snapshot
 16 2014-08-18 10:20:30   | hourly snapshot
 15 2014-08-15 10:20:30   | hourly snapshot
 14 2014-08-13 10:20:30.1 | hourly snapshot
 12 2014-08-12 10:20:30   | hourly snapshot
 11 2014-08-10 10:20:30   | hourly snapshot
 10 2014-08-08 10:20:30   | hourly snapshot
""",
    39: """
102 2016-01-18 12:02:03   | daily snapshot; weekly snapshot; monthly snapshot; yearly snapshot
101 2016-01-12 21:08:03   | daily snapshot; weekly snapshot
 99 2016-01-09 21:02:03   | daily snapshot
 83 2015-11-22 10:20:30   | monthly snapshot; yearly snapshot
 69 2015-10-22 10:20:30   | monthly snapshot
 49 2015-09-22 10:20:30   | monthly snapshot
 59 2015-08-22 10:20:30   | monthly snapshot
 39 2014-11-22 10:20:30   | monthly snapshot; yearly snapshot
 29 2014-10-22 10:20:30   | monthly snapshot
  9 2014-09-22 10:20:30   | monthly snapshot
 19 2014-08-22 10:20:30   | monthly snapshot
 10 2014-08-08 10:20:30   | oldest monthly snapshot; oldest yearly snapshot
""",
}
