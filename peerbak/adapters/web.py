"""The status page, ``/status.json`` and ``/metrics`` over HTTP (aiohttp, prometheus_client).

Read-only and closed by default: it listens on 127.0.0.1, answers only the networks of
``web.allow`` (403 for anyone else, logged), only GET and HEAD (405), and only with the
login token of ``web.token`` (401): as ``Authorization: Bearer <token>`` (a Prometheus
scraper), or once as ``?token=`` in the address, which trades it for an HttpOnly,
SameSite=Strict cookie and redirects to the address without it (a browser, so the token
stays out of its history and of any Referer). Tokens are compared in constant time.

The figures come from a ``gather`` callable the node hands in (the dashboard service on
a repository of its own), at most one gathering at a time, kept for a few seconds so a
page, its JSON and a scrape agree, and cut off after a timeout so a slow ledger makes a
503 instead of a page that hangs.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Final

from aiohttp import web
from multidict import MultiDict
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from peerbak.adapters import web_pages
from peerbak.core.errors import ConfigError, PeerbakError

log = logging.getLogger(__name__)

COOKIE: Final = "peerbak_web"
#: Seconds one gathering of the figures is served again, and the most it may take.
MAX_AGE: Final = 5.0
GATHER_TIMEOUT: Final = 20.0
#: Seconds between two log lines about the same refused address.
REFUSED_LOG_EVERY: Final = 60.0
#: Member states, each a 0/1 sample of ``peerbak_member_state``.
STATES: Final = ("ok", "unreachable", "lost", "failing")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Gather = Callable[[], Awaitable[dict[str, Any]]]


def networks(allow: Sequence[str]) -> list[Network]:
    """``web.allow`` parsed (host bits are ignored: ``192.168.1.7/24`` is the /24)."""
    try:
        return [ipaddress.ip_network(n, strict=False) for n in allow]
    except ValueError as exc:
        raise ConfigError(f"web.allow: {exc}") from None


def allowed(address: str | None, allow: Sequence[Network]) -> bool:
    """Whether a peer at ``address`` may connect: in one of ``allow`` (an IPv4 peer
    reaching an IPv6 socket, ``::ffff:a.b.c.d``, counts as its IPv4 address)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in allow)


def same_token(given: str, token: str) -> bool:
    """Constant-time comparison (bytes: a non-ASCII guess is just wrong)."""
    return hmac.compare_digest(given.encode(), token.encode())


# --- metrics ----------------------------------------------------------------------------------


class Figures(Collector):
    """The dashboard's figures as Prometheus metric families (one scrape's worth)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def collect(self) -> Iterator[Metric]:
        health = self.data["health"]
        members = health["members"]
        state = GaugeMetricFamily(
            "peerbak_member_state",
            "1 for the member's state as this node sees it, 0 for the others",
            labels=["member", "state"],
        )
        seen = GaugeMetricFamily(
            "peerbak_member_last_seen_timestamp_seconds",
            "When the member last answered",
            labels=["member"],
        )
        for_us = GaugeMetricFamily(
            "peerbak_member_bytes_held_for_us",
            "Bytes of this node's shards the member acknowledged",
            labels=["member"],
        )
        we_hold = GaugeMetricFamily(
            "peerbak_member_bytes_we_hold",
            "Bytes this node keeps for the member",
            labels=["member"],
        )
        passed = CounterMetricFamily(
            "peerbak_member_challenges_passed",
            "Storage challenges the member passed",
            labels=["member"],
        )
        failed = CounterMetricFamily(
            "peerbak_member_challenges_failed",
            "Storage challenges the member failed",
            labels=["member"],
        )
        for m in members:
            name = str(m["name"])
            for s in STATES:
                state.add_metric([name, s], 1.0 if m["state"] == s else 0.0)
            if m["last_seen"] is not None:
                seen.add_metric([name], float(m["last_seen"]))
            for_us.add_metric([name], float(m["bytes_held_for_us"]))
            we_hold.add_metric([name], float(m["bytes_we_hold_for_it"]))
            passed.add_metric([name], float(m["challenges_passed"]))
            failed.add_metric([name], float(m["challenges_failed"]))
        yield from (state, seen, for_us, we_hold, passed, failed)
        packs = GaugeMetricFamily(
            "peerbak_packs",
            "Packs by health (a pack may count in more than one)",
            labels=["health"],
        )
        for label, key in (
            ("all", "packs"),
            ("full", "packs_full"),
            ("repairable", "packs_repairable"),
            ("below_k", "packs_below_k"),
            ("below_k_now", "packs_below_k_now"),
        ):
            packs.add_metric([label], float(health[key]))
        yield packs
        yield GaugeMetricFamily(
            "peerbak_restorable_now",
            "1 if every snapshot can be restored from the members reachable now",
            value=1.0 if health["restorable_now"] else 0.0,
        )
        backups = GaugeMetricFamily(
            "peerbak_last_backup_timestamp_seconds",
            "Time of the newest snapshot of each host and path set",
            labels=["host", "paths"],
        )
        for b in health["last_backups"]:
            backups.add_metric([str(b["host"]), " ".join(b["paths"])], float(b["time"]))
        yield backups
        yield GaugeMetricFamily(
            "peerbak_snapshots", "Snapshots of this node", value=float(self.data["snapshots_total"])
        )
        repair = self.data["repair"]
        moves = GaugeMetricFamily(
            "peerbak_repair_moves_pending", "Repair moves not finished", labels=["phase"]
        )
        moves.add_metric(["upload"], float(repair["uploads_pending"]))
        moves.add_metric(["release"], float(repair["releases_pending"]))
        yield moves
        success = GaugeMetricFamily(
            "peerbak_job_last_success_timestamp_seconds",
            "When each backup job last succeeded",
            labels=["job"],
        )
        last_run = GaugeMetricFamily(
            "peerbak_job_last_run_timestamp_seconds", "When each job last ran", labels=["job"]
        )
        job_ok = GaugeMetricFamily(
            "peerbak_job_last_run_ok", "1 if the job's last run succeeded", labels=["job"]
        )
        for j in self.data["jobs"]:
            if j["last_success"] is not None:
                success.add_metric([str(j["name"])], float(j["last_success"]))
            last_run.add_metric([str(j["name"])], float(j["last_run"]))
            job_ok.add_metric([str(j["name"])], 1.0 if j["result"] == "ok" else 0.0)
        yield from (success, last_run, job_ok)
        stored = GaugeMetricFamily(
            "peerbak_stored_bytes", "Bytes of this node's backups", labels=["kind"]
        )
        for kind, key in (("deduplicated", "deduplicated_bytes"), ("on_members", "stored_bytes")):
            stored.add_metric([kind], float(self.data["space"][key]))
        yield stored


def metrics_text(data: dict[str, Any]) -> bytes:
    """The figures in Prometheus' text format, from a registry of this scrape alone."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Figures(data))
    return generate_latest(registry)


# --- the server -------------------------------------------------------------------------------


class WebServer:
    """The HTTP server; ``token`` is read at each request (a new web.token takes effect
    at once)."""

    def __init__(
        self,
        gather: Gather,
        token: Callable[[], str],
        allow: Sequence[str],
        *,
        max_age: float = MAX_AGE,
        timeout: float = GATHER_TIMEOUT,
    ) -> None:
        self.gather = gather
        self.token = token
        self.allow = networks(allow)
        self.max_age = max_age
        self.timeout = timeout
        self._lock = asyncio.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._refused: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._guard])
        self.app.on_response_prepare.append(_secure_headers)
        self.app.router.add_get("/", self._page)
        self.app.router.add_get("/status.json", self._json)
        self.app.router.add_get("/metrics", self._metrics)

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (the OS's choice for 0)."""
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def figures(self) -> dict[str, Any]:
        """The dashboard's data: gathered at most once per ``max_age``, one at a time."""
        async with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self.max_age:
                return self._cached[1]
            try:
                async with asyncio.timeout(self.timeout):
                    data = await self.gather()
            except TimeoutError:
                raise _refusal(
                    web.HTTPServiceUnavailable, "Busy", "the figures took too long; try again"
                ) from None
            except PeerbakError as exc:
                raise _refusal(web.HTTPServiceUnavailable, "Unavailable", str(exc)) from None
            self._cached = (time.monotonic(), data)
            return data

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        remote = request.remote
        if not allowed(remote, self.allow):
            self._log_refused(remote or "?")
            return _message(403, "Forbidden", "this address may not see this node's status")
        if request.method not in ("GET", "HEAD"):
            response = _message(405, "Method not allowed", "this page is read-only")
            response.headers["Allow"] = "GET, HEAD"
            return response
        try:
            token = self.token()
        except PeerbakError as exc:
            return _message(503, "Unavailable", str(exc))
        given = request.query.get("token")
        if given is not None:
            return self._login(request, given, token)
        if not self._authorized(request, token):
            return _unauthorized()
        return await handler(request)

    @staticmethod
    def _login(request: web.Request, given: str, token: str) -> web.Response:
        """``?token=``: the cookie, and the same address without the token."""
        if not same_token(given, token):
            return _unauthorized()
        query = MultiDict(request.query)
        del query["token"]
        response = web.Response(
            status=303, headers={"Location": str(request.rel_url.with_query(query))}
        )
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response

    @staticmethod
    def _authorized(request: web.Request, token: str) -> bool:
        """A bearer token if one is given, else the cookie."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return same_token(credentials.strip(), token)
        return same_token(request.cookies.get(COOKIE, ""), token)

    def _log_refused(self, remote: str) -> None:
        now = time.monotonic()
        if now - self._refused.get(remote, -REFUSED_LOG_EVERY) >= REFUSED_LOG_EVERY:
            if len(self._refused) > 1000:
                self._refused.clear()
            self._refused[remote] = now
            log.warning("status page: refused a request from %s (not in web.allow)", remote)

    async def _page(self, request: web.Request) -> web.Response:
        data = await self.figures()
        return web.Response(text=web_pages.page(data), content_type="text/html")

    async def _json(self, request: web.Request) -> web.Response:
        data = await self.figures()
        return web.Response(text=json.dumps(data), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        data = await self.figures()
        return web.Response(body=metrics_text(data), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = web_pages.CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"


def _message(status: int, title: str, text: str) -> web.Response:
    return web.Response(
        status=status, text=web_pages.message_page(title, text), content_type="text/html"
    )


def _unauthorized() -> web.Response:
    response = _message(
        401,
        "Login needed",
        "open the address `peerbak web` prints (it carries the login token), or send "
        "Authorization: Bearer <token> (the token is in web.token in the node's home)",
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="peerbak"'
    return response


def _refusal(kind: type[web.HTTPException], title: str, text: str) -> web.HTTPException:
    return kind(text=web_pages.message_page(title, text), content_type="text/html")
