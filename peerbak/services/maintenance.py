"""What the daemon does on its own between backups: probe members, challenge holders,
read a shard whole now and then, and repair.

Each round opens the repository like a command does (its own ledger connection and
member links, closed after, through the ``open_repo`` the daemon hands in), so the
daemon's holder service never shares a failure with it. Repair takes the writer's
lock: a round that finds a backup, prune or another repair running skips repair and
tries next round. The clock, the random source and
the wait between rounds are parameters, so a test drives rounds without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from peerbak.core.config import Config, parse_size
from peerbak.core.errors import ConfigError, Locked, PeerbakError
from peerbak.core.health import AT_FIRST_LOSS, DAY, RepairPolicy
from peerbak.core.words import plural
from peerbak.ports.workspace import Workspace
from peerbak.services import challenges, events
from peerbak.services.repair import RepairReport, repair
from peerbak.services.repository import Peer, RateLimit, Repository

log = logging.getLogger(__name__)

#: Share of challenge slots that read a whole shard instead, budget permitting.
READ_WHOLE_SHARE: Final = 0.1
#: Recent challenge outcomes and repair reports kept in memory (tests and status).
KEPT: Final = 1000
#: Packs repaired per hold of the lock: a backup waiting for it gets in between.
BATCH: Final = 32
#: Probes a member may miss in a row before it counts as unreachable.
MISSED_PROBES: Final = 3


def policy_of(config: Config) -> RepairPolicy:
    m = config.maintenance
    margin = AT_FIRST_LOSS if m.repair_margin is None else m.repair_margin
    lost_after = m.lost_after_days * DAY
    return RepairPolicy(
        margin=margin,
        lost_after=lost_after,
        offline_after=min(lost_after, MISSED_PROBES * m.probe_minutes * 60),
    )


@dataclass
class Maintainer:
    """The state kept between rounds: the challenge schedule and today's read budget."""

    home: Workspace
    open_repo: Callable[[], Awaitable[Repository]]
    rng: random.Random = field(default_factory=random.SystemRandom)
    clock: Callable[[], float] = time.time
    schedule: challenges.Schedule | None = None
    last_repair: float = 0.0
    read_day: int = -1
    read_today: int = 0
    outcomes: list[challenges.Outcome] = field(default_factory=list)
    last_report: RepairReport | None = None
    reports: list[RepairReport] = field(default_factory=list)

    async def round(self, *, repair_now: bool = False) -> float:
        """One round; returns the seconds until the next is due."""
        config = self.home.config()
        m = config.maintenance
        repo = await self.open_repo()
        repo.clock = self.clock
        async with repo:
            await repo.probe()
            now = self.clock()
            await events.track_members(repo, policy_of(config), now)
            if self.schedule is None or self.schedule.members != set(repo.members):
                self.schedule = challenges.Schedule(
                    repo.members, self.rng, now, m.challenges_per_day
                )
            for node in self.schedule.due(now):
                member = repo.members.get(node)
                if member is None or not member.up:
                    continue
                self.outcomes.append(await self._one(repo, member, parse_size(m.read_per_day)))
                del self.outcomes[:-KEPT]  # a daemon runs for months
            more = False
            if repair_now or now - self.last_repair >= m.probe_minutes * 60:
                more = await self._repair(repo, config, now)
        if more:  # the lock was let go between batches: go on at once
            return 1.0
        wait = min(self.schedule.next_time() - self.clock(), m.probe_minutes * 60)
        return max(wait, 1.0)

    async def _one(self, repo: Repository, member: Peer, budget: int) -> challenges.Outcome:
        now = self.clock()
        day = int(now // DAY)
        if day != self.read_day:
            self.read_day, self.read_today = day, 0
        if self.read_today < budget and self.rng.random() < READ_WHOLE_SHARE:
            outcome = await challenges.read_whole(repo, member, self.rng, now)
            self.read_today += outcome.wire_bytes
            return outcome
        return await challenges.challenge(repo, member, self.rng, now)

    async def _repair(self, repo: Repository, config: Config, now: float) -> bool:
        """One batch of repair under the lock; True if packs remain for the next."""
        per_hour = parse_size(config.maintenance.repair_per_hour)
        try:
            with self.home.lock("maintenance"):
                self.last_report = await repair(
                    repo,
                    policy_of(config),
                    now,
                    limit=RateLimit(per_hour) if per_hour else None,
                    max_packs=BATCH,
                )
        except Locked:
            log.info("repair waits: a backup, prune or repair is running")
            return False
        self.last_repair = now
        r = self.last_report
        self.reports.append(r)
        del self.reports[:-KEPT]
        if r.packs_repaired or r.shards_released or r.stuck:
            await events.note(
                repo.ledger,
                now,
                "error" if r.stuck else "info",
                "repair.stuck" if r.stuck else "repair.done",
                "",
                f"repair: {plural(r.packs_repaired, 'pack')} repaired, "
                f"{plural(r.shards_placed, 'shard')} placed, {r.shards_released} released, "
                f"{len(r.stuck)} stuck",
                packs_repaired=r.packs_repaired,
                shards_placed=r.shards_placed,
                stuck=r.stuck[:20],
            )
        return r.packs_left > 0


async def maintain_forever(
    home: Workspace,
    open_repo: Callable[[], Awaitable[Repository]],
    stopping: asyncio.Event,
    wait: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Rounds until ``stopping`` is set; errors are logged and the next round runs."""
    maintainer = Maintainer(home, open_repo)

    async def default_wait(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=seconds)

    pause = wait or default_wait
    if not home.config().maintenance.enabled:
        return
    while not stopping.is_set():
        try:
            seconds = await maintainer.round()
        except ConfigError:
            seconds = 600.0  # not in a pool yet
        except PeerbakError as exc:
            log.warning("maintenance round: %s", exc)
            seconds = 60.0
        await pause(seconds)
