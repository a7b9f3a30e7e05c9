"""Notifications, the pure parts: the [notify] config, URLs masked for printing, the
rate limit, the unreachable threshold and the digest period, with a clock of the test's."""

from __future__ import annotations

import msgspec
import pytest

from peerbak.core.config import default_config_text, parse_config, parse_duration
from peerbak.core.errors import ConfigError, InputError
from peerbak.core.notices import RATE_LIMIT, Notice, NoticeBook, mask_url

TEXT = default_config_text("alice", 7420)
SECRET = "s3cr3t-T0KEN"


def _notify(lines: str) -> str:
    """The default config with a [notify] section of these lines only (it is the last)."""
    return TEXT[: TEXT.index("[notify]\n")] + f"[notify]\n{lines}\n"


def test_defaults() -> None:
    n = parse_config(TEXT).notify
    assert n.urls == ()
    assert n.unreachable_after == 3600
    assert n.quota_warn == 0.9
    assert n.digest == "off"
    assert n.owner_silent_after == 3 * 86400
    assert n.healthcheck_url == ""


def test_a_full_section_reads_back() -> None:
    text = _notify(
        f'urls = ["ntfys://ntfy.sh/{SECRET}", "json://127.0.0.1:8080/hook"]\n'
        'unreachable_after = "90min"\nowner_silent_after = "2d"\ndigest = "weekly"\n'
        'quota_warn = 0.8\nhealthcheck_url = "https://hc-ping.com/abc"'
    )
    n = parse_config(text).notify
    assert n.urls == (f"ntfys://ntfy.sh/{SECRET}", "json://127.0.0.1:8080/hook")
    assert (n.unreachable_after, n.owner_silent_after) == (5400, 2 * 86400)
    assert (n.digest, n.quota_warn, n.healthcheck_url) == ("weekly", 0.8, "https://hc-ping.com/abc")


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (f'urls = ["not a url {SECRET}"]', "notify.urls: URL 1 is not scheme://"),
        ('unreachable_after = "soon"', "notify.unreachable_after: not a duration"),
        ('unreachable_after = "30s"', "notify.unreachable_after: at least 1min"),
        ("owner_silent_after = 10", "notify.owner_silent_after: at least 1min"),
        ("quota_warn = 1.5", "notify.quota_warn"),
        ('digest = "hourly"', "notify.digest"),
        ('healthcheck_url = "ftp://x/y"', "notify.healthcheck_url: not an http"),
        ("volume = 11", "notify.volume: unknown key"),
    ],
)
def test_refusals_name_the_key_never_the_url(lines: str, words: str) -> None:
    text = _notify(lines)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.toml")
    assert words in str(info.value)
    assert SECRET not in str(info.value)
    assert str(info.value).startswith("config.toml line ")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("90", 90.0), ("2min", 120.0), ("1.5h", 5400.0), ("3d", 259200.0), ("1w", 6048e2)],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1", -1, True, "3 days"])
def test_bad_durations(text: str | float) -> None:
    with pytest.raises(InputError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("json://127.0.0.1:8080/hook", "json://127.0.0.1:8080/***"),
        (f"ntfys://ntfy.sh/{SECRET}", "ntfys://ntfy.sh/***"),
        (f"ntfy://{SECRET}", "ntfy://***"),
        (f"mailtos://me:{SECRET}@gmail.com?to=a@b.org", "mailtos://***@gmail.com/***"),
        (f"tgram://123456:{SECRET}/987", "tgram://***/***"),
        (f"gotify://gotify.example.org/{SECRET}", "gotify://gotify.example.org/***"),
        (f"matrixs://me:{SECRET}@[::1]:8448/#room", "matrixs://***@[::1]:8448/***"),
        (f"https://localhost/{SECRET}?x=1", "https://localhost/***"),
        (f"no scheme {SECRET}", "***"),
    ],
)
def test_masked_urls_keep_the_place_and_hide_the_secret(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert SECRET not in mask_url(url)


def _n(kind: str = "job.failed", subject: str = "photos") -> Notice:
    return Notice(kind, subject, "t", "b")


def test_the_same_news_at_most_once_per_six_hours() -> None:
    book, t = NoticeBook(), 1000.0
    assert book.allow(_n(), t)
    assert not book.allow(_n(), t + 60)
    assert book.allow(_n(subject="docs"), t + 60)  # another subject
    assert book.allow(_n(kind="challenge.failed"), t + 60)  # another kind
    assert not book.allow(_n(), t + RATE_LIMIT - 1)
    assert book.allow(_n(), t + RATE_LIMIT)
    assert not book.allow(_n(), t + RATE_LIMIT + 1)


def test_an_unreachable_member_is_told_once_it_has_lasted() -> None:
    book, t, hour = NoticeBook(), 1000.0, 3600.0
    book.gone("f1", t)
    assert book.due(t + 59 * 60, hour) == []
    assert book.due(t + hour, hour) == [("f1", hour)]
    assert book.due(t + 2 * hour, hour) == []  # told once per absence
    assert book.back("f1")  # its absence was told: so is its return
    book.gone("f1", t + 3 * hour)
    assert not book.back("f1")  # back before the threshold: nothing to tell either way
    assert book.due(t + 10 * hour, hour) == []


def test_gone_again_keeps_the_first_time_and_lost_is_told_at_once() -> None:
    book, t = NoticeBook(), 1000.0
    book.gone("f2", t)
    book.gone("f2", t + 500)  # a second event of the same absence
    assert book.due(t + 600, 600) == [("f2", 600)]
    book.lost("f3", t)
    assert book.due(t + 10**6, 600) == []  # told as lost already
    assert book.back("f3")


def test_the_book_survives_json_and_keeps_at_most_so_many_pending() -> None:
    book = NoticeBook()
    book.gone("f1", 5.0)
    book.allow(_n(), 7.0)
    book.keep([_n(subject=str(i)) for i in range(150)])
    again = msgspec.json.decode(msgspec.json.encode(book), type=NoticeBook)
    assert again == book
    assert len(again.pending) == 100
    assert again.pending[-1].subject == "149"


def test_a_digest_is_due_once_per_period_after_the_first() -> None:
    book, day = NoticeBook(), 86400.0
    assert book.digest_due(100.0, "off") is None
    assert book.digest_due(100.0, "daily") is None  # starts the first period
    assert book.digest_due(100.0 + day - 1, "daily") is None
    assert book.digest_due(100.0 + day, "daily") == 100.0
    assert book.digest_due(100.0 + day + 5, "daily") is None
    assert book.digest_due(100.0 + 7 * day, "weekly") is None
    assert book.digest_due(100.0 + 8 * day, "weekly") == 100.0 + day
