"""Retention: restic's ``forget`` policy, checked against restic's own golden files.

The snapshot table, the policies and the expected results are restic's
``TestApplyPolicy`` (``internal/data/snapshot_policy_test.go`` and
``internal/data/testdata/policy_keep_snapshots_N``, restic commit a80be147), copied into
``tests/data/restic_retention.json``: which snapshots are kept, in which order, and
restic's words for why.
"""

from __future__ import annotations

import json
import math
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
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

# --- restic's data ----------------------------------------------------------------------

RESTIC: Final[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "restic_retention.json").read_text("utf-8")
)
#: The policy fields restic's table gives as durations (``"1y2m3d3h"``).
_DURATIONS: Final = frozenset(
    {"within", "within_hourly", "within_daily", "within_weekly", "within_monthly", "within_yearly"}
)


def _restic_policy(fields: dict[str, Any]) -> KeepPolicy:
    """A policy of restic's table: counts as they are, tag lists as sets, durations parsed."""
    args: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "tags":
            args[name] = tuple(frozenset(tags) for tags in value)
        elif name in _DURATIONS:
            args[name] = parse_duration(value)
        else:
            args[name] = value
    return KeepPolicy(**args)


#: restic's ``tests`` in TestApplyPolicy; the index is the golden file's number.
POLICIES: Final[tuple[KeepPolicy, ...]] = tuple(
    _restic_policy(case["policy"]) for case in RESTIC["cases"]
)
#: restic's ``testExpireSnapshots``: (time in UTC, tags).
SNAPSHOTS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = tuple(
    (when, tuple(tags)) for when, tags in RESTIC["snapshots"]
)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _key(index: int) -> tuple[float, tuple[str, ...]]:
    when, tags = SNAPSHOTS[index]
    return _ts(when), tags


def _golden(case: int) -> list[tuple[int, tuple[str, ...]]]:
    """restic's kept snapshots for a case: (index into SNAPSHOTS, reasons), newest first."""
    rows: list[tuple[int, tuple[str, ...]]] = []
    for index, when, reasons in RESTIC["cases"][case]["kept"]:
        assert SNAPSHOTS[index][0] == when, (case, index)  # the table is consistent
        rows.append((index, tuple(reasons)))
    return rows


#: Where peerbak words a reason differently on purpose: tag lists are sets, shown sorted.
WORDING: Final[dict[str, str]] = {"has tags [foo, bar]": "has tags [bar, foo]"}


def _kept(decisions: list[Decision[int]]) -> list[int]:
    return [d.snapshot for d in decisions if d.kept]


# --- restic's TestApplyPolicy ---------------------------------------------------------


def test_restic_table_is_whole() -> None:
    """40 cases over 103 snapshots, as restic has them: a cut file cannot pass unseen."""
    assert (len(POLICIES), len(SNAPSHOTS)) == (40, 103)
    assert sum(len(case["kept"]) for case in RESTIC["cases"]) == 1047


@pytest.mark.parametrize("case", range(1, len(POLICIES)))
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
