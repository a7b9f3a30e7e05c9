"""One seeded run: a discrete-event loop over member events, deciding with peerbak's policy.

Only members change state on their own (outages, disk failures, departures, disasters,
silent loss, challenge detection); a pack's shard counts are recomputed only for the
packs a changed member holds, so a run costs events × packs-per-member, not time × packs.
Placement is :func:`peerbak.core.placement.place`; which shards count, when to repair
and in which order are :class:`peerbak.core.health.RepairPolicy` and
:func:`peerbak.core.health.repair_order`.
Times are simulated seconds from 0; nothing reads the clock, all chance comes from the
``random.Random`` passed in.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Any, Final

from peerbak.core.health import DAY, RepairPolicy
from peerbak.core.placement import Candidate, place
from simulations.repair import REPAIRED, RepairQueue
from simulations.scenario import YEAR, MemberSpec, Scenario

#: Member event kinds; a finished repair (REPAIRED) comes last, as the handlers list them.
OUTAGE_START, OUTAGE_END, DISK, LEAVE, DISASTER, REFILL, LOSTCHECK, SILENT, DETECT = range(REPAIRED)

#: The daemon re-rates a silent member this long after its grace runs out (member_state
#: wants silence strictly longer than ``lost_after``).
_TICK: Final = 1.0


@dataclass(slots=True)
class Member:
    """One slot of the pool; ``gen`` counts the members that have held it (new disk, new friend)."""

    slot: int
    spec: MemberSpec
    node: bytes
    gen: int = 0
    alive: bool = True  # its disk still holds what we gave it
    gone: bool = False  # announced its departure: out of the roster
    away: int = 0  # outages in progress
    offline_since: float | None = None
    epoch: int = 0  # bumped at every disconnection, cancels stale LOSTCHECK events
    failed: bool = False  # failed a storage challenge
    counts: bool = True  # whether the policy counts its shards (OK or UNREACHABLE)
    detect_scheduled: bool = False
    missing: int = 0  # our shards it silently dropped that we have not yet taken back
    packs: set[int] = field(default_factory=set)

    @property
    def online(self) -> bool:
        return self.alive and not self.gone and self.away == 0


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run measured."""

    first_loss: float | None  # seconds until the first pack fell below k surviving shards
    packs_lost: int
    below_fraction: float  # pack-time with fewer than k + margin surviving shards
    repair_bytes: float  # downloaded k shards + uploaded rebuilt shards, all repairs
    released_bytes: float  # shards dropped as superfluous when their holder came back
    repairs: int


class Simulation:
    """The state of one run; :meth:`run` plays it to the horizon."""

    def __init__(self, sc: Scenario, rng: random.Random) -> None:
        self.sc, self.rng, self.policy = sc, rng, sc.policy
        self.k, self.n, self.horizon = sc.k, sc.n, sc.horizon
        self.shard = sc.volume / sc.packs / sc.k  # bytes of one simulated pack's shard
        self.events: list[tuple[float, int, int, int, Any]] = []
        self.seq = 0
        self.owner = rng.randbytes(32)
        self.members = [Member(i, spec, rng.randbytes(32)) for i, spec in enumerate(sc.members)]
        self.by_node = {m.node: m.slot for m in self.members}
        self.domains = sorted({m.domain for m in sc.members})
        self.pack_ids = [rng.randbytes(32) for _ in range(sc.packs)]
        self.pack_index = {pid: p for p, pid in enumerate(self.pack_ids)}
        self.holders: list[list[int]] = [[] for _ in range(sc.packs)]
        self.ok: list[list[bool]] = [[] for _ in range(sc.packs)]
        self.cnt = [0] * sc.packs  # shards the policy counts as healthy, kept up to date
        self.lost = [False] * sc.packs
        self.below = [False] * sc.packs
        self.below_count, self.below_area, self.below_since = 0, 0.0, 0.0
        self.version = 0  # bumped whenever a member may have become usable
        self.first_loss: float | None = None
        self.released_bytes = 0.0
        self.repair = RepairQueue(self)

    # --- event plumbing ---------------------------------------------------------------

    def push(self, t: float, kind: int, a: int, b: Any = None) -> None:
        if t <= self.horizon:
            self.seq += 1
            heapq.heappush(self.events, (t, self.seq, kind, a, b))

    def after(self, per_year: float) -> float:
        """Waiting time of a Poisson process with ``per_year`` events a year (inf at 0)."""
        return self.rng.expovariate(per_year / YEAR) if per_year > 0 else math.inf

    def run(self) -> RunResult:
        self.start()
        handlers = (
            self.on_outage_start,
            self.on_outage_end,
            self.on_disk,
            self.on_leave,
            self.on_disaster,
            self.on_refill,
            self.on_lostcheck,
            self.on_silent,
            self.on_detect,
            self.on_repaired,
        )
        while self.events:
            t, _, kind, a, b = heapq.heappop(self.events)
            handlers[kind](t, a, b)
            if not self.events or self.events[0][0] > t:  # simultaneous events settle first
                self.repair.kick(t)
        self.account(self.horizon)
        return RunResult(
            first_loss=self.first_loss,
            packs_lost=sum(self.lost),
            below_fraction=self.below_area / (self.horizon * len(self.lost)),
            repair_bytes=self.repair.bytes,
            released_bytes=self.released_bytes,
            repairs=self.repair.count,
        )

    def start(self) -> None:
        cands = [Candidate(m.node, m.spec.domain) for m in self.members]
        for p, pid in enumerate(self.pack_ids):
            for node in place(pid, self.n, cands, self.owner, int(self.shard)):
                self.add_holder(p, self.by_node[node])
            self.refresh(p, 0.0)
        for m in self.members:
            self.schedule_life(m, 0.0)
            for i, outage in enumerate(m.spec.outages):
                if outage.window is None:
                    self.push(self.after(outage.per_year), OUTAGE_START, m.slot, (i, 0))
                else:
                    self.push(self.window_start(outage.window, 0), OUTAGE_START, m.slot, (i, 0))
        for d in range(len(self.domains)):
            self.push(self.after(self.sc.disaster_per_year), DISASTER, d)

    def window_start(self, window: tuple[float, float], year: int) -> float:
        return year * YEAR + self.rng.uniform(*window) * DAY

    def schedule_life(self, m: Member, now: float) -> None:
        """The fates of the member now in slot ``m``; the first to come ends its generation."""
        self.push(now + self.after(m.spec.disk_failure_per_year), DISK, m.slot, m.gen)
        self.push(now + self.after(m.spec.leave_per_year), LEAVE, m.slot, m.gen)
        self.push(now + self.after(m.spec.silent_loss_per_year), SILENT, m.slot, m.gen)

    # --- packs ------------------------------------------------------------------------

    def add_holder(self, p: int, slot: int) -> None:
        m = self.members[slot]
        self.holders[p].append(slot)
        self.ok[p].append(True)
        m.packs.add(p)
        self.cnt[p] += m.counts

    def drop_holder(self, p: int, slot: int) -> None:
        m = self.members[slot]
        i = self.holders[p].index(slot)
        if not self.ok[p][i] and m.alive:
            m.missing -= 1
        del self.holders[p][i]
        del self.ok[p][i]
        m.packs.discard(p)
        self.cnt[p] -= m.counts

    def account(self, now: float) -> None:
        self.below_area += self.below_count * (now - self.below_since)
        self.below_since = now

    def refresh(self, p: int, now: float) -> None:
        """Re-judge pack ``p`` after a change: lost, below the margin, in need of repair."""
        if self.lost[p]:
            return
        alive = sum(self.ok[p])
        below = alive < self.k + self.policy.effective_margin(self.k, self.n)
        if below != self.below[p]:
            self.account(now)
            self.below[p] = below
            self.below_count += 1 if below else -1
        if alive < self.k:
            self.lost[p] = True
            self.repair.queue.discard(p)
            if self.first_loss is None:
                self.first_loss = now
            return
        if self.policy.needs_repair(self.cnt[p], self.k, self.n):
            self.repair.want(p)

    def refresh_all(self, m: Member, now: float) -> None:
        for p in list(m.packs):
            self.refresh(p, now)

    # --- member state -----------------------------------------------------------------

    def rate(self, m: Member, now: float) -> bool:
        """Re-rate ``m`` by the policy; True when whether its shards count has changed."""
        if m.gone:
            counts = False  # a tombstoned member is out of the roster
        else:
            last_seen = now if m.online else m.offline_since
            state = self.policy.member_state(last_seen, m.failed, now)
            counts = RepairPolicy.shard_counts(state)
        if counts == m.counts:
            return False
        m.counts = counts
        for p in m.packs:
            self.cnt[p] += 1 if counts else -1
        return True

    def disconnect(self, m: Member, now: float) -> None:
        if m.offline_since is None:
            m.offline_since = now
            m.epoch += 1
            self.push(now + self.policy.lost_after + _TICK, LOSTCHECK, m.slot, m.epoch)

    def reconnect(self, m: Member, now: float) -> None:
        """``m`` answers again: it counts again, and shards already replaced are released."""
        m.offline_since = None
        self.version += 1
        if self.rate(m, now):
            for p in list(m.packs):
                if self.cnt[p] > self.n:
                    self.drop_holder(p, m.slot)
                    self.released_bytes += self.shard
                self.refresh(p, now)
        if m.missing and not m.failed and not m.detect_scheduled:
            self.schedule_detect(m, now)

    def destroy(self, m: Member, now: float, announced: bool) -> None:
        """``m``'s disk is gone (or its friend left): every shard on it is lost."""
        if not m.alive or m.gone:
            return
        m.alive = False
        m.missing = 0
        for p in m.packs:
            self.ok[p][self.holders[p].index(m.slot)] = False
        if announced:
            m.gone = True
            self.rate(m, now)
        else:
            self.disconnect(m, now)
        self.refresh_all(m, now)
        days = m.spec.replace_days
        wait = self.rng.expovariate(1 / days) * DAY if days > 0 else 0.0
        self.push(now + wait, REFILL, m.slot, m.gen)

    def on_outage_start(self, now: float, slot: int, info: tuple[int, int]) -> None:
        m = self.members[slot]
        kind, year = info
        outage = m.spec.outages[kind]
        m.away += 1
        if m.away == 1 and m.alive and not m.gone:
            self.disconnect(m, now)
        self.push(now + self.rng.uniform(*outage.days) * DAY, OUTAGE_END, slot)
        if outage.window is None:
            self.push(now + self.after(outage.per_year), OUTAGE_START, slot, (kind, 0))
        else:
            nxt = self.window_start(outage.window, year + 1)
            self.push(max(nxt, now), OUTAGE_START, slot, (kind, year + 1))

    def on_outage_end(self, now: float, slot: int, _: object) -> None:
        m = self.members[slot]
        m.away -= 1
        if m.online:
            self.reconnect(m, now)

    def on_disk(self, now: float, slot: int, gen: int) -> None:
        m = self.members[slot]
        if m.gen == gen:
            self.destroy(m, now, announced=False)

    def on_leave(self, now: float, slot: int, gen: int) -> None:
        m = self.members[slot]
        if m.gen == gen:
            self.destroy(m, now, announced=self.rng.random() < m.spec.leave_announced)

    def on_disaster(self, now: float, d: int, _: object) -> None:
        for m in self.members:
            if m.spec.domain == self.domains[d]:
                self.destroy(m, now, announced=False)
        self.push(now + self.after(self.sc.disaster_per_year), DISASTER, d)

    def on_refill(self, now: float, slot: int, gen: int) -> None:
        """A working member takes the slot: the old one's entries go, nothing of ours is on it."""
        m = self.members[slot]
        if m.gen != gen:
            return
        old = list(m.packs)
        for p in old:
            self.drop_holder(p, slot)
        del self.by_node[m.node]
        m.node = self.rng.randbytes(32)
        self.by_node[m.node] = slot
        m.gen += 1
        m.alive, m.gone, m.failed, m.detect_scheduled = True, False, False, False
        m.offline_since = None
        if m.away:
            self.disconnect(m, now)
        self.rate(m, now)
        self.version += 1
        for p in old:
            self.refresh(p, now)
        self.schedule_life(m, now)

    def on_lostcheck(self, now: float, slot: int, epoch: int) -> None:
        m = self.members[slot]
        if m.epoch == epoch and not m.online and self.rate(m, now):
            self.refresh_all(m, now)

    # --- silent loss and challenges -----------------------------------------------------

    def on_silent(self, now: float, slot: int, gen: int) -> None:
        """``m`` silently drops each of our shards with probability ``silent_loss_fraction``."""
        m = self.members[slot]
        if m.gen != gen or not m.alive or m.gone:
            return
        x = m.spec.silent_loss_fraction
        for p in list(m.packs):
            i = self.holders[p].index(slot)
            if self.ok[p][i] and self.rng.random() < x:
                self.ok[p][i] = False
                m.missing += 1
                self.refresh(p, now)
        self.push(now + self.after(m.spec.silent_loss_per_year), SILENT, slot, gen)
        if m.online and not m.detect_scheduled:
            self.schedule_detect(m, now)

    def schedule_detect(self, m: Member, now: float) -> None:
        """When the first challenge hits a missing shard.

        Challenges go out every 1/c days (random phase), each to a uniformly chosen shard
        of the holder; with a fraction x missing, the number needed is geometric with
        success x (``health.detection_probability``), so the delay is about 1/(c·x) days.
        """
        if not m.missing:
            return
        x = m.missing / len(m.packs)
        tries = 1 if x >= 1 else 1 + int(math.log(1 - self.rng.random()) / math.log(1 - x))
        delay = (tries - self.rng.random()) / self.sc.challenges_per_day * DAY
        m.detect_scheduled = True
        self.push(now + delay, DETECT, m.slot, m.gen)

    def on_detect(self, now: float, slot: int, gen: int) -> None:
        m = self.members[slot]
        if m.gen != gen:
            return
        m.detect_scheduled = False
        if not m.online:
            return  # re-armed when it answers again
        if self.sc.on_challenge_failure == "shard":
            for p in [p for p in m.packs if not self.ok[p][self.holders[p].index(slot)]]:
                self.drop_holder(p, slot)
                self.refresh(p, now)
            return
        m.failed = True
        if self.rate(m, now):
            self.refresh_all(m, now)

    def on_repaired(self, now: float, p: int, dests: list[tuple[int, int]]) -> None:
        self.repair.done(now, p, dests)


def simulate(sc: Scenario, seed: int | str) -> RunResult:
    """One run of ``sc`` from ``seed``; the same seed always gives the same result."""
    return Simulation(sc, random.Random(seed)).run()  # noqa: S311 (a model, not a secret)
