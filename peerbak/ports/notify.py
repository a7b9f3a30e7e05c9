"""How a service tells a person something, and pings a dead man's switch.

The daemon's notifier (``services/notifier.py``) decides what is worth a message; an
adapter (``adapters/notify.py``, apprise) delivers it. Tests hand in a fake that
records the calls.
"""

from __future__ import annotations

from typing import Protocol


class Notifier(Protocol):
    async def send(self, title: str, body: str, level: str) -> bool:
        """Deliver one message to every configured destination; True when every one
        took it (False: try again later). ``level`` is info, success, warning or
        error. Never raises for a destination that fails."""
        ...


class Pinger(Protocol):
    async def ping(self, url: str) -> bool:
        """An HTTP GET of ``url`` (a healthcheck); True on a 2xx answer. Never raises."""
        ...
