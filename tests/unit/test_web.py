"""The status page's HTTP side against a real server on 127.0.0.1 with canned figures:
the allow list, the token (bearer, once in the address for a cookie), read-only methods,
escaping of what friends and files name, security headers and the metrics' format."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from peerbak.adapters.files import write_private_once
from peerbak.adapters.home import Home
from peerbak.adapters.web import COOKIE, WebServer, allowed, metrics_text, networks, same_token
from peerbak.core.config import default_config_text, parse_config
from peerbak.core.errors import ConfigError

TOKEN = "t0ken-" + "x" * 40
HOSTILE = '<script>alert("hi")</script>'
NOW = 1_700_000_000.0


def member(name: str, state: str = "ok", passed: int = 5, failed: int = 0) -> dict[str, Any]:
    return {
        "node": "aa" * 32,
        "name": name,
        "state": state,
        "reachable_now": None,
        "error": "",
        "last_seen": NOW - 60,
        "uptime": 0.99,
        "latency_ms": 1.0,
        "challenges_passed": passed,
        "challenges_failed": failed,
        "failing_since": None,
        "shards_held_for_us": 3,
        "bytes_held_for_us": 3000,
        "bytes_we_hold_for_it": 1234,
        "manifests_we_keep_for_it": 0,
        "manifest_bytes_we_keep_for_it": 0,
    }


def sample() -> dict[str, Any]:
    """Figures shaped as the dashboard gathers them, with hostile names in them."""
    return {
        "generated": NOW,
        "node": {"name": "home <b>", "id": "cd" * 32},
        "health": {
            "verdict": "degraded: every snapshot can be restored from the members reachable now",
            "restorable_now": True,
            "packs": 7,
            "packs_full": 6,
            "packs_repairable": 1,
            "packs_below_k": 0,
            "packs_below_k_now": 0,
            "packs_at_risk_if_unreachable_stay_away": 0,
            "unreachable": [HOSTILE],
            "by_health": [{"healthy": 3, "k": 2, "n": 3, "packs": 6}],
            "members": [member("f1"), member(HOSTILE, "unreachable", 2, 3)],
            "last_backups": [
                {
                    "host": "h<1>",
                    "paths": ["/data/<x>"],
                    "snapshot": "ef" * 16,
                    "time": NOW - 100,
                    "age_seconds": 100.0,
                }
            ],
            "last_publish": None,
            "repair_uploads_pending": 2,
            "releases_pending": 1,
            "recent_failures": [],
            "advice": [f"{HOSTILE} is unreachable"],
        },
        "jobs": [
            {
                "name": "job<i>",
                "last_run": NOW - 50,
                "result": "ok",
                "level": "info",
                "snapshot": "ef" * 16,
                "error": "",
                "duration": 3.0,
                "last_success": NOW - 50,
                "runs": [
                    {
                        "time": NOW - 50,
                        "result": "ok",
                        "message": "m<&>",
                        "snapshot": "ef" * 16,
                        "error": "",
                    }
                ],
            }
        ],
        "snapshots_total": 1,
        "snapshots": [
            {
                "id": "ef" * 16,
                "time": NOW - 100,
                "host": "h<1>",
                "paths": ["/data/<x>"],
                "tags": ["t<ag>"],
                "files": 2,
                "bytes": 10,
                "files_new": 2,
                "data_added": 10,
                "stored_added": 30,
                "errors": 0,
            }
        ],
        "repair": {
            "uploads_pending": 2,
            "releases_pending": 1,
            "packs_repairable": 1,
            "packs_below_k": 0,
            "packs_below_k_now": 0,
        },
        "space": {"deduplicated_bytes": 10, "pack_bytes": 20, "stored_bytes": 30},
        "events": [
            {
                "id": 1,
                "time": NOW - 10,
                "level": "warning",
                "kind": "member.unreachable",
                "subject": HOSTILE,
                "message": f"{HOSTILE} is unreachable",
                "details": {},
            }
        ],
        "charts": {
            "stored": [{"time": NOW - 200, "bytes": 10}, {"time": NOW - 100, "bytes": 30}],
            "challenges": {
                "days": 2,
                "failed_per_day": [{"day": NOW - 86400, "failed": 3}, {"day": NOW, "failed": 0}],
                "passed_total": 7,
                "failed_total": 3,
            },
        },
    }


Start = Callable[..., Any]


@pytest.fixture
async def serve() -> AsyncIterator[Start]:
    """Start a server on 127.0.0.1 (port chosen by the OS): its base URL."""
    servers: list[WebServer] = []

    async def start(
        allow: list[str] | None = None,
        gather: Callable[[], Any] | None = None,
        token: Callable[[], str] = lambda: TOKEN,
        **options: Any,
    ) -> str:
        async def figures() -> dict[str, Any]:
            return sample()

        server = WebServer(gather or figures, token, allow or ["127.0.0.0/8"], **options)
        servers.append(server)
        port = await server.start("127.0.0.1", 0)
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_allow_list_by_address() -> None:
    allow = networks(["127.0.0.0/8", "::1/128", "192.168.1.7/24"])
    assert allowed("127.0.0.1", allow)
    assert allowed("127.9.9.9", allow)
    assert allowed("::1", allow)
    assert allowed("192.168.1.200", allow)  # host bits of the network are ignored
    assert allowed("::ffff:127.0.0.1", allow)  # IPv4 on an IPv6 socket
    assert not allowed("192.168.2.1", allow)
    assert not allowed("10.0.0.1", allow)
    assert not allowed("::2", allow)
    assert not allowed("::ffff:10.0.0.1", allow)
    assert not allowed("fe80::1%eth0", allow)
    assert not allowed("", allow)
    assert not allowed(None, allow)
    assert not allowed("not-an-address", allow)
    assert allowed("fe80::1%eth0", [ipaddress.ip_network("fe80::/10")])
    with pytest.raises(ConfigError, match=r"web\.allow"):
        networks(["300.1.1.0/24"])


def test_tokens_compare_whole() -> None:
    assert same_token(TOKEN, TOKEN)
    assert not same_token(TOKEN[:-1], TOKEN)
    assert not same_token(TOKEN + "x", TOKEN)
    assert not same_token("", TOKEN)
    assert not same_token("é" * 10, TOKEN)  # not ASCII: wrong, not an exception


async def test_without_the_token_the_answer_is_401(serve: Start) -> None:
    base = await serve()
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/status.json", "/metrics", "/nowhere"):
            async with http.get(base + path) as r:
                assert r.status == 401, path
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert "peerbak web" in await r.text()
        async with http.get(base + "/", headers=bearer("wrong")) as r:
            assert r.status == 401
        async with http.get(base + "/?token=wrong", allow_redirects=False) as r:
            assert r.status == 401
            assert "Set-Cookie" not in r.headers
        async with http.get(base + "/", headers=bearer()) as r:
            assert r.status == 200
        async with http.get(base + "/nowhere", headers=bearer()) as r:
            assert r.status == 404


async def test_the_token_in_the_address_becomes_a_cookie(serve: Start) -> None:
    base = await serve()
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for a bare IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{base}/status.json?a=1&token={TOKEN}", allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/status.json?a=1"
            cookie = r.cookies[COOKIE]
            assert cookie.value == TOKEN
            assert cookie["httponly"]
            assert cookie["samesite"] == "Strict"
            assert cookie["path"] == "/"
        async with http.get(base + "/status.json?a=1") as r:  # the cookie alone
            assert r.status == 200
            assert (await r.json())["health"]["packs"] == 7
        async with http.get(base + "/") as r:
            assert r.status == 200
    async with aiohttp.ClientSession() as http, http.get(base + "/") as r:  # no cookie
        assert r.status == 401


async def test_a_new_token_takes_effect_at_once(serve: Start) -> None:
    current = [TOKEN]
    base = await serve(token=lambda: current[0])
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/", headers=bearer()) as r:
            assert r.status == 200
        current[0] = "another-token-" + "y" * 30
        async with http.get(base + "/", headers=bearer()) as r:
            assert r.status == 401
        async with http.get(base + "/", headers=bearer(current[0])) as r:
            assert r.status == 200


async def test_read_only_other_methods_get_405(serve: Start) -> None:
    base = await serve()
    async with aiohttp.ClientSession() as http:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            async with http.request(method, base + "/", headers=bearer()) as r:
                assert r.status == 405, method
                assert r.headers["Allow"] == "GET, HEAD"
        async with http.head(base + "/", headers=bearer()) as r:
            assert r.status == 200


async def test_an_address_outside_the_allow_list_gets_403_and_is_logged(
    serve: Start, caplog: pytest.LogCaptureFixture
) -> None:
    base = await serve(allow=["10.0.0.0/8"])
    caplog.set_level(logging.WARNING, logger="peerbak.adapters.web")
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/", headers=bearer()) as r:
            assert r.status == 403
            assert "Content-Security-Policy" in r.headers
        async with http.get(f"{base}/?token={TOKEN}", allow_redirects=False) as r:
            assert r.status == 403  # the token does not open the door either
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == ["status page: refused a request from 127.0.0.1 (not in web.allow)"]


async def test_the_page_escapes_what_friends_and_files_name(serve: Start) -> None:
    base = await serve()
    async with aiohttp.ClientSession() as http, http.get(base + "/", headers=bearer()) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/html")
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp  # none at all: default-src 'none'
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cache-Control"] == "no-store"
        text = await r.text()
    assert "<script" not in text
    assert "&lt;script&gt;alert(&quot;hi&quot;)&lt;/script&gt;" in text
    for raw in ("home <b>", "h<1>", "/data/<x>", "t<ag>", "job<i>", "m<&>"):
        assert raw not in text, raw
    assert '<meta http-equiv="refresh" content="60">' in text
    assert text.count('class="member-name"') == 2
    assert 'data-state="unreachable"' in text
    assert '<span id="packs">7</span>' in text
    assert "<svg" in text
    assert "chart-stored" in text
    assert "chart-challenges" in text


async def test_the_metrics_parse_and_carry_each_member(serve: Start) -> None:
    base = await serve()
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics", headers=bearer()) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    assert text.encode() == metrics_text(sample())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    states = {
        (s.labels["member"], s.labels["state"]): s.value
        for s in families["peerbak_member_state"].samples
    }
    assert states[(HOSTILE, "unreachable")] == 1.0
    assert states[(HOSTILE, "ok")] == 0.0
    assert states[("f1", "ok")] == 1.0

    def by_member(name: str) -> dict[str, float]:
        return {s.labels["member"]: s.value for s in families[name].samples}

    assert by_member("peerbak_member_bytes_held_for_us") == {"f1": 3000, HOSTILE: 3000}
    assert by_member("peerbak_member_bytes_we_hold") == {"f1": 1234, HOSTILE: 1234}
    assert families["peerbak_member_challenges_failed"].type == "counter"
    assert by_member("peerbak_member_challenges_failed") == {"f1": 0, HOSTILE: 3}
    assert by_member("peerbak_member_challenges_passed") == {"f1": 5, HOSTILE: 2}
    packs = {s.labels["health"]: s.value for s in families["peerbak_packs"].samples}
    assert packs == {"all": 7, "full": 6, "repairable": 1, "below_k": 0, "below_k_now": 0}
    assert families["peerbak_restorable_now"].samples[0].value == 1.0
    (backup,) = families["peerbak_last_backup_timestamp_seconds"].samples
    assert backup.labels == {"host": "h<1>", "paths": "/data/<x>"}
    (job,) = families["peerbak_job_last_success_timestamp_seconds"].samples
    assert (job.labels, job.value) == ({"job": "job<i>"}, NOW - 50)


async def test_figures_too_slow_make_a_503_not_a_hang(serve: Start) -> None:
    never = asyncio.Event()

    async def stuck() -> dict[str, Any]:
        await never.wait()
        return sample()

    base = await serve(gather=stuck, timeout=0.2)
    async with aiohttp.ClientSession() as http, http.get(base + "/", headers=bearer()) as r:
        assert r.status == 503


async def test_figures_are_gathered_once_for_requests_close_together(serve: Start) -> None:
    calls = []

    async def counted() -> dict[str, Any]:
        calls.append(1)
        return sample()

    base = await serve(gather=counted, max_age=60.0)
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/status.json", "/metrics"):
            async with http.get(base + path, headers=bearer()) as r:
                assert r.status == 200
    assert len(calls) == 1


def test_the_token_file_is_made_once_private(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "n", b"\x01" * 32, default_config_text("a", 0))
    token = home.web_token()
    assert len(token) >= 40
    assert home.web_token() == token
    assert stat.S_IMODE(os.stat(home.web_token_path).st_mode) == 0o600
    assert not write_private_once(home.web_token_path, b"other\n")  # the first one stays
    assert home.web_token() == token
    assert [p.name for p in home.root.iterdir() if p.name.startswith(".")] == []
    home.web_token_path.unlink()
    assert home.web_token() != token  # a new one


def test_the_web_section_of_the_config() -> None:
    config = parse_config(default_config_text("a", 7420))
    assert (config.web.enabled, config.web.listen, config.web.port) == (True, "127.0.0.1", 7421)
    assert config.web.allow == ["127.0.0.0/8", "::1/128"]
    assert parse_config(default_config_text("a", 7420, web_port=0)).web.port == 0
    bad = default_config_text("a", 7420).replace(
        'allow = ["127.0.0.0/8", "::1/128"]', 'allow = ["127.0.0.0/8", "lan"]'
    )
    with pytest.raises(ConfigError, match=r"line \d+: web\.allow: not a network: 'lan'"):
        parse_config(bad)


def test_peerbak_web_without_a_daemon(tmp_path: Path) -> None:
    """The address from the config and the token, and exit 75: nobody serves it now."""
    from click.testing import CliRunner

    from peerbak.cli.main import cli
    from peerbak.node.compose import create_node

    root = tmp_path / "n"
    create_node(root, "n", 0, listen="127.0.0.1", lan=False)
    result = CliRunner().invoke(cli, ["--home", str(root), "web", "--json"])
    assert result.exit_code == 75, result.output
    info = json.loads(result.stdout.splitlines()[0])
    token = (root / "web.token").read_text().strip()
    assert info["url"] == f"http://127.0.0.1:7421/?token={token}"
    assert info["running"] is False
    assert "not serving the page" in result.stderr
    config = root / "config.toml"
    config.write_text(
        config.read_text().replace("enabled = true\nlisten", "enabled = false\nlisten")
    )
    result = CliRunner().invoke(cli, ["--home", str(root), "web"])
    assert result.exit_code == 78
    assert "turned off" in result.stderr
