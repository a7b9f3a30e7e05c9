"""A closed-form check on the simulator: one pack as a continuous-time Markov chain.

The simple case: n holders fail independently and for good at rate λ each; a failure is
noticed at once; the policy (:meth:`peerbak.core.health.RepairPolicy.needs_repair`) starts a
repair when a pack's healthy shards fall to k + margin; a repair rebuilds every shard
missing *when it starts* onto fresh members and takes an exponential time with rate μ
(per pack state, not per missing shard: the owner's uplink sends them one after
another, so a repair of two shards is one job). A member receiving a shard can fail
before the shard lands, at rate λ too, and then that shard is not stored. The pack is
lost when fewer than k shards survive.

The state is ``(j, r)``: j surviving shards and r shards on their way (``r = None`` when
no repair runs). This is exactly what :mod:`simulations.engine` does for one pack with
announced failures, instant replacement and exponential repair, so the two must agree
(``tests/unit/test_simulations.py``). P(loss by T) is the absorbing state's entry of
``expm(Q·T)``; the mean time to loss solves ``Q_TT · τ = −1`` over the transient states.
numpy only: the chains have at most a few dozen states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from peerbak.core.errors import InputError
from peerbak.core.health import DAY, RepairPolicy
from simulations.scenario import Scenario

Matrix = npt.NDArray[np.float64]
State = tuple[int, int | None]  # (surviving shards, shards being rebuilt or None)
LOST: State = (-1, None)


@dataclass(frozen=True, slots=True)
class Chain:
    """The generator ``q`` (rows sum to 0) over ``states``; ``states[0]`` is the start."""

    states: tuple[State, ...]
    q: Matrix

    @property
    def lost(self) -> int:
        return self.states.index(LOST)


def build_chain(k: int, n: int, margin: int, fail_rate: float, repair_rate: float) -> Chain:
    """The pack's chain; rates per unit time (per year, say), λ per member, μ per repair."""
    if not 1 <= k < n or fail_rate < 0 or repair_rate <= 0:
        raise InputError(f"need 1 ≤ k < n, λ ≥ 0, μ > 0: k={k} n={n} λ={fail_rate} μ={repair_rate}")
    policy = RepairPolicy(margin=margin)

    def enter(j: int) -> State:
        if j < k:
            return LOST
        return (j, n - j) if policy.needs_repair(j, k, n) else (j, None)

    states: list[State] = [(n, None)]
    edges: list[tuple[State, State, float]] = []
    todo: list[State] = [(n, None)]
    seen = {states[0]}
    while todo:
        state = todo.pop()
        j, r = state
        out: list[tuple[State, float]] = []
        if r is None:
            out.append((enter(j - 1), j * fail_rate))
        else:
            out.append((LOST if j - 1 < k else (j - 1, r), j * fail_rate))
            if r > 0:
                out.append(((j, r - 1), r * fail_rate))
            out.append((enter(j + r), repair_rate))
        for target, rate in out:
            if rate > 0:
                edges.append((state, target, rate))
            if target not in seen:
                seen.add(target)
                states.append(target)
                if target != LOST:
                    todo.append(target)
    if LOST not in seen:
        states.append(LOST)
    index = {s: i for i, s in enumerate(states)}
    q = np.zeros((len(states), len(states)))
    for src, dst, rate in edges:
        q[index[src], index[dst]] += rate
        q[index[src], index[src]] -= rate
    return Chain(tuple(states), q)


def expm(a: Matrix) -> Matrix:
    """Matrix exponential by scaling and squaring a Taylor series (numpy only).

    The matrix is halved until its norm is at most 1/2, where 30 Taylor terms are exact
    to double precision, then squared back; for a generator times t every intermediate
    is a stochastic matrix, so squaring does not amplify error.
    """
    norm = float(np.abs(a).sum(axis=1).max()) if a.size else 0.0
    squarings = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0 else 0
    b = a / 2.0**squarings
    result = np.eye(a.shape[0])
    term = np.eye(a.shape[0])
    for i in range(1, 30):
        term = term @ b / i
        result = result + term
        if float(np.abs(term).max()) < 1e-18:
            break
    for _ in range(squarings):
        result = result @ result
    return result


def loss_probability(
    k: int, n: int, margin: int, fail_rate: float, repair_rate: float, horizon: float
) -> float:
    """P(the pack is lost by ``horizon``), starting with all n shards (same time unit)."""
    chain = build_chain(k, n, margin, fail_rate, repair_rate)
    return float(min(1.0, max(0.0, expm(chain.q * horizon)[0, chain.lost])))


def mean_time_to_loss(k: int, n: int, margin: int, fail_rate: float, repair_rate: float) -> float:
    """Expected time until the pack is lost (MTTDL), in the rates' time unit."""
    chain = build_chain(k, n, margin, fail_rate, repair_rate)
    keep = [i for i in range(len(chain.states)) if i != chain.lost]
    sub = chain.q[np.ix_(keep, keep)]
    tau = np.linalg.solve(sub, -np.ones(len(keep)))
    return float(tau[0])


def yearly_loss(mttdl_years: float) -> float:
    """The steady yearly loss probability a mean time to loss implies (1 − e^(−1/MTTDL))."""
    return -math.expm1(-1 / mttdl_years)


# --- the same chain with rates taken from a scenario --------------------------------------


@dataclass(frozen=True, slots=True)
class Rates:
    """A scenario boiled down to the chain's two rates (per year), and why."""

    fail: float  # λ: a given shard is lost for good (its holder dies, leaves, or drops it)
    repair: float  # μ: 1 / mean time from that loss until its replacement is stored
    detect_days: float  # mean part of that time spent noticing the loss
    wait_days: float  # ... waiting for a member to put the new shard on (n = pool size)
    transfer_days: float  # ... in the owner's repair queue


def scenario_rates(sc: Scenario) -> Rates:
    """λ and μ for one pack of ``sc``, averaging over the ways a shard is lost.

    Assumes members alike (the first member's rates) and each in its own failure
    domain. A silent failure (disk, unannounced departure, disaster) is noticed when the
    slot comes back empty or after ``lost_after``, whichever is first; an announced one
    at once; a silently dropped shard after ~1/(c·x) days of challenges. When every
    member already holds a shard (n = members) a new one can only go to the replacement,
    so the wait is the replacement time. The transfer is half the time the owner needs to
    rebuild one member's share of the volume through its uplink.
    """
    m = sc.members[0]
    grace = sc.policy.lost_after / DAY
    replace = m.replace_days
    silent_detect = replace * -math.expm1(-grace / replace) if replace > 0 else 0.0
    spare = len(sc.members) > sc.n
    parts = [  # (rate per year, days to notice, days to wait for a destination)
        (m.disk_failure_per_year, silent_detect, 0.0 if spare else replace),
        (sc.disaster_per_year, silent_detect, 0.0 if spare else replace),
        (m.leave_per_year * (1 - m.leave_announced), silent_detect, 0.0 if spare else replace),
        (m.leave_per_year * m.leave_announced, 0.0, 0.0 if spare else replace),
    ]
    x = m.silent_loss_fraction
    if m.silent_loss_per_year > 0 and x > 0:
        found = 1 / (sc.challenges_per_day * x)
        wait = 0.0 if spare or sc.on_challenge_failure == "shard" else replace
        parts.append((m.silent_loss_per_year * x, found, wait))
    fail = sum(rate for rate, _, _ in parts)
    if fail == 0:
        return Rates(0.0, 1.0, 0.0, 0.0, 0.0)
    detect = sum(rate * d for rate, d, _ in parts) / fail
    wait = sum(rate * w - rate * min(w, d) for rate, d, w in parts) / fail  # overlaps detect
    share = sc.volume * min(1.0, sc.n / len(sc.members))
    down = share / min(sc.k * sc.uplink, sc.downlink)
    up = share / sc.k / sc.uplink
    transfer = max(down, up) / 2 / DAY
    return Rates(fail, 365.25 / (detect + wait + transfer), detect, wait, transfer)


def scenario_loss(sc: Scenario, years: float) -> float:
    """P(some pack of ``sc`` is lost within ``years``), from the chain.

    Losing a pack takes f = n − k + 1 of its holders down at once. With rendezvous
    placement over many packs every f members share some pack, so in the rare-event limit
    the pool has C(members, f) / C(n, f) times the single pack's chance.
    """
    r = scenario_rates(sc)
    if r.fail == 0:
        return 0.0
    one = loss_probability(
        sc.k, sc.n, sc.policy.effective_margin(sc.k, sc.n), r.fail, r.repair, years
    )
    f = sc.n - sc.k + 1
    return min(1.0, one * math.comb(len(sc.members), f) / math.comb(sc.n, f))
