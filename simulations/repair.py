"""The owner's repair queue: which pack to rebuild next, onto whom, and how long it takes.

One repair at a time: the owner's uplink is the bottleneck, so packs are rebuilt one
after another in :func:`peerbak.core.health.repair_order` (fewest spare shards first), each
onto members :func:`peerbak.core.placement.place` picks among those not holding the pack. A
pack waits (stays queued) while fewer than k of its shards are reachable or no member
can take a new shard; the queue is rescanned only when a member may have become usable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from peerbak.core.health import repair_order
from peerbak.core.placement import Candidate, place

if TYPE_CHECKING:
    from simulations.engine import Simulation

#: The event kind of a finished repair (after the engine's member events).
REPAIRED: Final = 9


class RepairQueue:
    """Packs that need repair, the one being repaired, and what repair has cost."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.queue: set[int] = set()
        self.order: list[int] = []  # the queue in repair order, as of the last change
        self.dirty = False
        self.busy: int | None = None
        self.blocked_at = -1  # ``sim.version`` when no queued pack could start
        self.bytes = 0.0  # downloaded k shards + uploaded rebuilt shards, all repairs
        self.count = 0

    def want(self, p: int) -> None:
        """Queue pack ``p`` (the policy says it needs repair)."""
        if p not in self.queue and p != self.busy:
            self.queue.add(p)
            self.dirty = True

    def kick(self, now: float) -> None:
        """Start the most urgent feasible repair if the owner's link is idle."""
        sim = self.sim
        if self.busy is not None or not self.queue:
            return
        if not self.dirty and self.blocked_at == sim.version:
            return
        if self.dirty:
            ranked = repair_order((sim.pack_ids[p], sim.cnt[p], sim.k) for p in self.queue)
            self.order = [sim.pack_index[pid] for pid in ranked]
            self.dirty = False
        usable = {m.slot for m in sim.members if m.online and m.counts}
        for p in self.order:
            if p not in self.queue:
                continue
            if not sim.policy.needs_repair(sim.cnt[p], sim.k, sim.n):
                self.queue.discard(p)
                continue
            if usable.issubset(sim.holders[p]):
                continue  # nowhere to put a new shard: wait for a member to come (back)
            if self.begin(p, now):
                self.queue.discard(p)
                return
        self.blocked_at = sim.version

    def begin(self, p: int, now: float) -> bool:
        """Start rebuilding pack ``p``'s missing shards onto members chosen by ``place``."""
        sim = self.sim
        members, holders = sim.members, sim.holders[p]
        ok = sim.ok[p]
        sources = [members[h] for i, h in enumerate(holders) if ok[i] and members[h].online]
        if len(sources) < sim.k:
            return False
        taken = set(holders)
        cands = [
            Candidate(m.node, m.spec.domain, healthy=m.online and m.counts)
            for m in members
            if m.slot not in taken
        ]
        need = sim.n - sim.cnt[p]
        chosen = place(sim.pack_ids[p], need, cands, sim.owner, int(sim.shard))
        if not chosen:
            return False
        dests = [members[sim.by_node[node]] for node in chosen]
        s, k = sim.shard, sim.k
        if sim.sc.repair_model == "exponential":
            took = sim.rng.expovariate(1 / sim.sc.repair_mean)
        else:
            # k holders send in parallel (each at its uplink, capped by our downlink) while
            # our one uplink sends the rebuilt shards: the slower side sets the pace.
            down = k * s / min(k * sim.sc.uplink, sim.sc.downlink)
            took = max(down, len(dests) * s / sim.sc.uplink)
            sources.sort(key=lambda m: m.spec.nightly_off_hours)  # the owner picks the awake
            night = max(m.spec.nightly_off_hours for m in [*sources[:k], *dests])
            took *= 24 / (24 - night)
        self.bytes += (k + len(dests)) * s
        self.count += 1
        self.busy = p
        sim.push(now + took, REPAIRED, p, [(m.slot, m.gen) for m in dests])
        return True

    def done(self, now: float, p: int, dests: list[tuple[int, int]]) -> None:
        sim = self.sim
        self.busy = None
        if sim.lost[p]:
            return
        room = sim.n - sim.cnt[p]
        for slot, gen in dests:
            m = sim.members[slot]
            if room > 0 and m.gen == gen and m.alive and not m.gone and p not in m.packs:
                sim.add_holder(p, slot)
                room -= 1
        emptied = []
        if sim.cnt[p] >= sim.n:  # shards of a failed holder are no longer needed
            for h in [h for h in sim.holders[p] if sim.members[h].failed]:
                sim.drop_holder(p, h)
                if not sim.members[h].packs:
                    emptied.append(sim.members[h])
        sim.refresh(p, now)
        for m in emptied:  # holds nothing of ours any more: verified afresh, usable again
            m.failed = False
            sim.rate(m, now)
            sim.version += 1
