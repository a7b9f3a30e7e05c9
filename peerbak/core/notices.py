"""What is worth a message, and when: the rules the notifier follows, pure.

The notifier reads the event log and the pool's health; these rules decide which of
that reaches a person: the same kind of news about the same subject at most once per
:data:`RATE_LIMIT`, a member unreachable only once it has been so for a while (a
laptop closed for the night is not news), its recovery only if its absence was told,
and a notice that could not be sent kept for the next round. The state is a msgspec
struct so the daemon keeps it in its ledger across restarts (JSON, never pickle).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

#: Seconds between two notices of the same kind about the same subject.
RATE_LIMIT: Final = 6 * 3600.0
#: Notices kept for another try at most (the oldest go first).
MAX_PENDING: Final = 100
#: Digest periods in seconds.
DIGEST_PERIOD: Final = {"daily": 86400.0, "weekly": 7 * 86400.0}

#: A host that is a host (dotted name or IPv4, localhost, [IPv6]) with an optional port;
#: anything else in that place (a bot token, a topic) may be a secret.
_HOST_RE: Final = re.compile(
    r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|localhost|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)


def mask_url(url: str) -> str:
    """``url`` fit to print: its scheme and host only, every user, password, token,
    path and query as ``***`` (apprise URLs carry secrets in any of them)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return "***"
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    _, at, host = netloc.rpartition("@")
    shown = host if _HOST_RE.fullmatch(host) else "***"
    more = "/***" if len(rest) > len(netloc) else ""
    return f"{scheme}://{'***@' if at else ''}{shown}{more}"


class Notice(msgspec.Struct, frozen=True):
    """One message for a person: ``kind`` and ``subject`` say what it is about (for the
    rate limit), ``level`` is info, success, warning or error."""

    kind: str
    subject: str
    title: str
    body: str
    level: str = "info"

    @property
    def key(self) -> str:
        return f"{self.kind}|{self.subject}"


class Away(msgspec.Struct):
    """A member unreachable since ``since``; ``told`` once a person was told."""

    since: float
    told: bool = False


class NoticeBook(msgspec.Struct):
    """What the notifier remembers between rounds (see the module docstring)."""

    sent: dict[str, float] = {}
    pending: list[Notice] = []
    away: dict[str, Away] = {}
    digest_at: float = 0.0

    def allow(self, notice: Notice, now: float) -> bool:
        """Whether ``notice`` may go out now; if so it counts as sent from now."""
        last = self.sent.get(notice.key)
        if last is not None and now - last < RATE_LIMIT:
            return False
        self.sent[notice.key] = now
        self.sent = {k: t for k, t in self.sent.items() if now - t < RATE_LIMIT}
        return True

    def keep(self, notices: list[Notice]) -> None:
        """Keep ``notices`` for the next round (they could not be sent)."""
        self.pending = [*self.pending, *notices][-MAX_PENDING:]

    def gone(self, member: str, since: float) -> None:
        """``member`` became unreachable (last seen at ``since``)."""
        if member not in self.away:
            self.away[member] = Away(since)

    def lost(self, member: str, since: float) -> None:
        """``member`` is lost: told at once, so its return is told too."""
        self.away.setdefault(member, Away(since)).told = True

    def back(self, member: str) -> bool:
        """``member`` answers again: whether its absence was told (then so is this)."""
        away = self.away.pop(member, None)
        return away is not None and away.told

    def due(self, now: float, after: float) -> list[tuple[str, float]]:
        """Members unreachable for ``after`` seconds or more and not told yet: (name,
        seconds away), each marked told."""
        out = []
        for name, away in sorted(self.away.items()):
            if not away.told and now - away.since >= after:
                away.told = True
                out.append((name, now - away.since))
        return out

    def digest_due(self, now: float, digest: str) -> float | None:
        """The start of the period a digest is due for now, or None. The first call
        starts the first period (a new node has nothing to summarise yet)."""
        period = DIGEST_PERIOD.get(digest)
        if period is None:
            return None
        if self.digest_at <= 0:
            self.digest_at = now
            return None
        if now - self.digest_at < period:
            return None
        start, self.digest_at = self.digest_at, now
        return start


def ago(seconds: float) -> str:
    """``seconds`` in the largest unit that keeps it readable."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"
