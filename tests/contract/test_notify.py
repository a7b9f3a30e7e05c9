"""The notification adapters against a webhook receiver on 127.0.0.1: apprise delivers
title, body and level to every URL and says which failed, never printing a URL whole;
the healthcheck pinger GETs; ``peerbak notify test`` reports each URL masked."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbak.adapters.notify import AppriseNotifier, HttpPinger
from peerbak.core.errors import ConfigError
from peerbak.tools.localpool import peerbak
from tests.receiver import Receiver, receiving

SECRET = "s3cr3t-T0KEN"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_every_url_gets_title_body_and_level(receiver: Receiver) -> None:
    base = f"json://127.0.0.1:{receiver.port}"
    notifier = AppriseNotifier([f"{base}/one", f"{base}/{SECRET}"])
    assert notifier.masked == [f"json://127.0.0.1:{receiver.port}/***"] * 2
    assert await notifier.send("f1 is unreachable", "for an hour", "warning")
    assert [p for p, _ in receiver.posts] == ["/one", f"/{SECRET}"]
    body = receiver.posts[0][1]
    assert (body["title"], body["message"], body["type"]) == (
        "f1 is unreachable",
        "for an hour",
        "warning",
    )
    assert await notifier.send("t", "b", "error")
    assert receiver.posts[-1][1]["type"] == "failure"


async def test_a_failing_url_is_told_masked(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    good = f"json://127.0.0.1:{receiver.port}/ok"
    dead = f"json://127.0.0.1:{_dead_port()}/{SECRET}"
    notifier = AppriseNotifier([good, dead])
    with caplog.at_level(logging.DEBUG):
        results = await notifier.send_each("t", "b", "info")
        assert not await notifier.send("t", "b", "info")
    assert [ok for _, ok in results] == [True, False]
    assert "failed" in caplog.text
    assert SECRET not in caplog.text
    receiver.status = 500
    assert not await AppriseNotifier([good]).send("t", "b", "info")


def test_a_url_apprise_does_not_know_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        AppriseNotifier([f"nosuchservice://{SECRET}@example.org/x"])
    assert "URL 1" in str(info.value)
    assert SECRET not in str(info.value)


async def test_the_pinger_gets_and_says_whether_it_took(receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.port}/ping/{SECRET}"
    assert await HttpPinger().ping(url)
    assert await HttpPinger().ping(url + "/fail")
    assert receiver.gets == [f"/ping/{SECRET}", f"/ping/{SECRET}/fail"]
    receiver.status = 503
    assert not await HttpPinger().ping(url)
    assert not await HttpPinger().ping(f"http://127.0.0.1:{_dead_port()}/x")


def test_notify_test_reports_each_url_masked(receiver: Receiver, tmp_path: Path) -> None:
    home = tmp_path / "n"
    peerbak(home, "init", "--name", "n", "--port", "0", "--no-lan")
    out = peerbak(home, "notify", "test", check=False)
    assert out.returncode == 78
    assert "no notification URLs" in out.stderr
    config = home / "config.toml"
    good = f"json://127.0.0.1:{receiver.port}/{SECRET}"
    dead = f"json://127.0.0.1:{_dead_port()}/{SECRET}"
    config.write_text(config.read_text().replace("urls = []", f'urls = ["{good}"]'))
    out = peerbak(home, "notify", "test", check=False)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows == [{"url": f"json://127.0.0.1:{receiver.port}/***", "delivered": True}]
    assert receiver.posts[0][1]["title"] == "peerbak: a test notification"
    config.write_text(
        config.read_text().replace(f'urls = ["{good}"]', f'urls = ["{good}", "{dead}"]')
    )
    out = peerbak(home, "notify", "test", check=False)
    assert out.returncode == 75
    assert [json.loads(line)["delivered"] for line in out.stdout.splitlines()] == [True, False]
    assert SECRET not in out.stdout + out.stderr
