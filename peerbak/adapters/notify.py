"""Notifications through apprise (ntfy, Gotify, email, Matrix, JSON webhooks, ...) and
healthcheck pings over HTTP: the :mod:`peerbak.ports.notify` ports.

Apprise URLs carry secrets (tokens, passwords, private topics): they are logged and
shown only through :func:`~peerbak.core.notices.mask_url`, and apprise's own logger,
which may print them, is kept quiet.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Final

import apprise

from peerbak.core.errors import ConfigError
from peerbak.core.notices import mask_url

log = logging.getLogger(__name__)
# Apprise logs failures with the URL in them; ours say the same with the URL masked.
logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)

#: Seconds a healthcheck ping may take.
PING_TIMEOUT: Final = 10.0

_TYPES: Final = {
    "info": apprise.NotifyType.INFO,
    "success": apprise.NotifyType.SUCCESS,
    "warning": apprise.NotifyType.WARNING,
    "error": apprise.NotifyType.FAILURE,
}


class AppriseNotifier:
    """Each configured URL as its own apprise target, so a result names the URL."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._targets: list[tuple[str, apprise.Apprise]] = []
        for i, url in enumerate(urls, 1):
            target = apprise.Apprise()
            if not target.add(url):
                raise ConfigError(
                    f"notify.urls: URL {i} ({mask_url(url)}) is not one apprise knows "
                    "(see https://github.com/caronc/apprise/wiki)"
                )
            self._targets.append((mask_url(url), target))

    @property
    def masked(self) -> list[str]:
        return [masked for masked, _ in self._targets]

    async def send_each(self, title: str, body: str, level: str) -> list[tuple[str, bool]]:
        """(masked URL, delivered) for every URL, tried one after the other."""
        out = []
        kind = _TYPES.get(level, apprise.NotifyType.INFO)
        for masked, target in self._targets:
            try:
                ok = bool(
                    await asyncio.to_thread(target.notify, body=body, title=title, notify_type=kind)
                )
            except Exception as exc:  # a plugin's bug must not stop the daemon's notifier
                log.warning("notification to %s failed: %s", masked, type(exc).__name__)
                ok = False
            else:
                if not ok:
                    log.warning("notification to %s failed", masked)
            out.append((masked, ok))
        return out

    async def send(self, title: str, body: str, level: str) -> bool:
        return all(ok for _, ok in await self.send_each(title, body, level))


def _get(url: str) -> bool:
    request = urllib.request.Request(url, headers={"User-Agent": "peerbak"})  # noqa: S310 - http(s) only: checked at config load
    try:
        with urllib.request.urlopen(request, timeout=PING_TIMEOUT) as reply:  # noqa: S310
            return 200 <= int(reply.status) < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("healthcheck ping to %s failed: %s", mask_url(url), type(exc).__name__)
        return False


class HttpPinger:
    """GET a healthcheck URL in a thread, with a timeout."""

    async def ping(self, url: str) -> bool:
        return await asyncio.to_thread(_get, url)
