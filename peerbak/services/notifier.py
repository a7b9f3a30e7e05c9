"""The daemon's notifier: tells a person what needs them, through a
:class:`~peerbak.ports.notify.Notifier`.

It follows the event log (the id of the last event handled is kept in the ledger's
meta under :data:`EVENT_KEY`, so a restart neither repeats nor loses one) and, every
few minutes, looks at the pool itself: packs down to k + margin healthy shards, a
member near the quota this node lends it, and, from the holder's side, an owner whose
backups stopped reaching this node (logged as ``owner.silent``). What is worth a
message, and how often, is :mod:`peerbak.core.notices`. A job's end also pings a
dead man's switch (healthchecks.io's protocol: ``<url>`` on success, ``<url>/fail``).

The clock, the notifier and the pinger are parameters: a test drives rounds without
waiting and records what would have been sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from peerbak.core.config import Config
from peerbak.core.errors import ConfigError, NoPool, PeerbakError
from peerbak.core.ids import NodeId
from peerbak.core.notices import Notice, NoticeBook, ago
from peerbak.core.words import plural
from peerbak.ports.ledger import Event, Ledger
from peerbak.ports.notify import Notifier, Pinger
from peerbak.ports.workspace import Workspace
from peerbak.services.events import note
from peerbak.services.maintenance import policy_of
from peerbak.services.repository import Repository
from peerbak.services.status import pool_health

log = logging.getLogger(__name__)

#: Ledger meta: the id of the last event handled.
EVENT_KEY: Final = "notified_event"
#: Ledger meta: the :class:`~peerbak.core.notices.NoticeBook` (JSON).
BOOK_KEY: Final = "notify_book"
#: Seconds between two reads of the event log (a failed job is told within this).
FOLLOW_EVERY: Final = 15.0
#: Events handled per round at most (the rest next round).
BATCH: Final = 500


def _told(kind: str) -> str:
    return kind.replace(".", " ")


@dataclass
class NotifyRound:
    """The state kept between rounds: when the pool was last looked at."""

    home: Workspace
    open_repo: Callable[[], Awaitable[Repository]]
    notifier_for: Callable[[Sequence[str]], Notifier]
    pinger: Pinger
    clock: Callable[[], float] = time.time
    last_check: float = float("-inf")
    _notifier: tuple[tuple[str, ...], Notifier] | None = field(default=None, repr=False)

    def _current(self, urls: tuple[str, ...]) -> Notifier | None:
        """The notifier for ``urls`` (built again only when the config changed)."""
        if not urls:
            return None
        if self._notifier is None or self._notifier[0] != urls:
            self._notifier = (urls, self.notifier_for(urls))
        return self._notifier[1]

    async def round(self) -> list[Notice]:
        """One round; returns the notices delivered."""
        config = self.home.config()
        repo = await self.open_repo()
        repo.clock = self.clock
        async with repo:
            now = self.clock()
            ledger = repo.ledger
            book = await load_book(ledger)
            last = await ledger.get_meta(EVENT_KEY)
            if last is None:  # a first start: what happened before is not news
                newest = await ledger.events(limit=1, newest_first=True)
                after = newest[0].id if newest else 0
            else:
                after = int(last)
            notices: list[Notice] = []
            names = {peer.label for peer in repo.members.values()}
            book.away = {k: v for k, v in book.away.items() if k in names}
            if now - self.last_check >= config.maintenance.probe_minutes * 60:
                self.last_check = now
                await owners_silent(
                    ledger,
                    {node: peer.label for node, peer in repo.members.items()},
                    repo.home.manifest_received,
                    config.notify.owner_silent_after,
                    now,
                )
                if config.notify.urls:
                    notices += await self._look(repo, config, now)
            for event in await ledger.events(after=after, limit=BATCH):
                notices += on_event(book, event)
                await self._ping(config, event)
                after = event.id
            n = config.notify
            notices += [
                Notice(
                    "member.unreachable",
                    name,
                    f"peerbak: {name} is unreachable",
                    f"{name} has not answered for {ago(away)}. Its shards still count; "
                    "`peerbak status` says what that means for restoring.",
                    "warning",
                )
                for name, away in book.due(now, n.unreachable_after)
            ]
            start = book.digest_due(now, n.digest)
            if start is not None:
                notices.append(await digest(repo, config, start, now))
            sent = await self._deliver(book, notices, n.urls, now)
            await ledger.set_meta(BOOK_KEY, msgspec.json.encode(book))
            await ledger.set_meta(EVENT_KEY, str(after).encode())
        return sent

    async def _deliver(
        self, book: NoticeBook, notices: list[Notice], urls: tuple[str, ...], now: float
    ) -> list[Notice]:
        """Send what the rate limit lets through, and what failed before; keep what
        fails now for the next round."""
        notifier = self._current(urls)
        fresh = [n for n in notices if book.allow(n, now)]
        todo, book.pending = [*book.pending, *fresh], []
        if notifier is None:
            return []  # nobody to tell: dropped, not kept for later
        sent: list[Notice] = []
        failed: list[Notice] = []
        for notice in todo:
            ok = await notifier.send(notice.title, notice.body, notice.level)
            (sent if ok else failed).append(notice)
        if failed:
            log.warning(
                "%s not delivered; tried again next round", plural(len(failed), "notification")
            )
            book.keep(failed)
        return sent

    async def _ping(self, config: Config, event: Event) -> None:
        """The dead man's switch: ``url`` on a job done, ``url/fail`` on one failed."""
        if event.kind not in ("job.ok", "job.failed"):
            return
        url = str(event.details.get("healthcheck_url") or config.notify.healthcheck_url)
        if not url:
            return
        if event.kind == "job.failed":
            url = url.rstrip("/") + "/fail"
        await self.pinger.ping(url)

    async def _look(self, repo: Repository, config: Config, now: float) -> list[Notice]:
        """The pool as it is now: thin packs, members near their quota here."""
        health = await pool_health(repo, policy_of(config), now)
        out = []
        thin = health["packs_repairable"] + health["packs_below_k"]
        if thin:
            out.append(
                Notice(
                    "packs.thin",
                    "",
                    f"peerbak: {plural(thin, 'pack')} need repair",
                    f"{health['verdict']}. {health['advice'][0]}",
                    "error" if health["packs_below_k"] else "warning",
                )
            )
        warn = config.notify.quota_warn
        for row in health["members"]:
            lend = config.lend_for(NodeId.from_hex(row["node"]))
            used = row["bytes_we_hold_for_it"]
            if lend > 0 and used >= warn * lend:
                name = row["name"]
                out.append(
                    Notice(
                        "quota.lent",
                        name,
                        f"peerbak: {name} uses {used / lend:.0%} of what you lend it",
                        f"{name} keeps {used} bytes here of the {lend} this node lends it; "
                        "past that its backups here are refused (storage.lend in "
                        "config.toml).",
                        "warning",
                    )
                )
        return out


#: Events told as they are: kind → (title, level); ``{}`` is the subject.
TOLD_AT_ONCE: Final = {
    "job.failed": ("peerbak: backup job {} failed", "error"),
    "challenge.failed": ("peerbak: {} failed a storage challenge", "error"),
    "repair.stuck": ("peerbak: repair is stuck", "error"),
    "owner.silent": ("peerbak: {}'s backups to you stopped", "warning"),
}


def on_event(book: NoticeBook, event: Event) -> list[Notice]:
    """The notices one event makes (and what the book remembers of it)."""
    kind, who = event.kind, event.subject
    since = float(event.details.get("last_seen") or event.time)
    title, level = "", ""
    if kind == "member.unreachable":
        book.gone(who, since)  # told by NoticeBook.due once it has lasted
    elif kind == "member.lost":
        book.lost(who, since)
        title, level = f"peerbak: {who} is lost", "error"
    elif kind == "member.ok" and book.back(who):
        title, level = f"peerbak: {who} recovered", "success"
    elif kind in TOLD_AT_ONCE:
        form, level = TOLD_AT_ONCE[kind]
        title = form.format(who)
    return [Notice(kind, who, title, event.message, level)] if title else []


async def load_book(ledger: Ledger) -> NoticeBook:
    raw = await ledger.get_meta(BOOK_KEY)
    if raw is None:
        return NoticeBook()
    try:
        return msgspec.json.decode(raw, type=NoticeBook)
    except msgspec.DecodeError:
        log.warning("the notifier's memory was unreadable: starting afresh")
        return NoticeBook()


async def owners_silent(
    ledger: Ledger,
    owners: Mapping[bytes, str],
    received: Callable[[NodeId], float | None],
    after: float,
    now: float,
) -> list[str]:
    """Log ``owner.silent`` once per silence for each of ``owners`` (node → name) whose
    last manifest reached this node (``received``) ``after`` seconds ago or more;
    returns their names."""
    out = []
    for node, name in sorted(owners.items()):
        when = await asyncio.to_thread(received, NodeId(node))
        if when is None or now - when < after:
            continue
        last = await ledger.events(kinds=["owner.silent"], subject=name, limit=1, newest_first=True)
        if last and last[0].details.get("received") == when:
            continue  # this silence was told
        await note(
            ledger,
            now,
            "warning",
            "owner.silent",
            name,
            f"{name}'s backups to you stopped {ago(now - when)} ago: the last one reached "
            f"this node then. Ask {name} whether their machine and peerbak still run.",
            received=when,
            node=node.hex(),
        )
        out.append(name)
    return out


async def digest(repo: Repository, config: Config, start: float, now: float) -> Notice:
    """The period's events counted by kind, its warnings and errors, and the health."""
    events = await repo.ledger.events(since=start, limit=10_000)
    counts = Counter(e.kind for e in events)
    health = await pool_health(repo, policy_of(config), now)
    lines = [f"Pool: {health['verdict']}."]
    if counts:
        told = ", ".join(f"{c} {_told(k)}" for k, c in sorted(counts.items()))
        lines.append(f"Since the last digest: {told}.")
    else:
        lines.append("Nothing happened since the last digest.")
    lines += [f"- {e.message}" for e in events if e.level != "info"][-20:]
    if health["advice"] != ["nothing to do"]:
        lines += ["", *health["advice"]]
    period = config.notify.digest
    return Notice("digest", period, f"peerbak: {period} digest", "\n".join(lines), "info")


async def notify_forever(
    home: Workspace,
    open_repo: Callable[[], Awaitable[Repository]],
    stopping: asyncio.Event,
    notifier_for: Callable[[Sequence[str]], Notifier],
    pinger: Pinger,
    wait: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Rounds every :data:`FOLLOW_EVERY` seconds until ``stopping`` is set; errors are
    logged (never with a URL) and the next round runs."""
    rounds = NotifyRound(home, open_repo, notifier_for, pinger)

    async def default_wait(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=seconds)

    pause = wait or default_wait
    while not stopping.is_set():
        seconds = FOLLOW_EVERY
        try:
            await rounds.round()
        except NoPool:
            seconds = 60.0  # not in a pool yet
        except ConfigError as exc:
            log.warning("notifier: %s", exc)  # a URL apprise does not know (masked)
            seconds = 60.0
        except PeerbakError as exc:
            log.warning("notifier round: %s", exc)
            seconds = 60.0
        await pause(seconds)
