"""Many seeded runs of a scenario, summarised with confidence intervals; sweeps over the code.

This is the library API ``peerbak simulate`` is meant to call: :func:`run_scenario` and
:func:`sweep` take a scenario object or a TOML path/name and return plain dataclasses.
Run ``i`` of seed ``s`` always uses ``random.Random(f"{s}:{i}")``, so results do not
depend on how many worker processes shared the runs.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerbak.core.health import DAY
from simulations.engine import RunResult, simulate
from simulations.scenario import YEAR, Scenario, ScenarioError, load_scenario
from simulations.stats import Estimate, mean_interval, wilson

MONTH = YEAR / 12


@dataclass(frozen=True, slots=True)
class Results:
    """A scenario's figures over ``runs`` runs; intervals at ``confidence``."""

    title: str
    runs: int
    seed: int
    confidence: float
    members: int
    k: int
    n: int
    margin: int
    lost_after_days: float
    years: float
    loss_1y: Estimate  # P(at least one pack lost within the first year)
    loss_horizon: Estimate  # ... within ``years``
    below_margin: Estimate  # share of pack-time with fewer than k + margin surviving shards
    repair_per_month: Estimate  # bytes moved for repair per month (one owner's volume)
    released_per_month: Estimate  # bytes of shards released as superfluous per month
    repairs_per_year: Estimate  # simulated pack repairs started per year

    def rows(self) -> list[tuple[str, str]]:
        """The table the CLI prints: (quantity, value with interval)."""
        pct = round(self.confidence * 100)

        def prob(e: Estimate) -> str:
            return f"{e.value:.2%}  [{e.low:.2%}, {e.high:.2%}]"

        def gb(e: Estimate) -> str:
            return f"{e.value / 1e9:,.1f} GB  [{e.low / 1e9:,.1f}, {e.high / 1e9:,.1f}]"

        years = f"{self.years:g}"
        return [
            ("scenario", self.title),
            ("pool", f"{self.members} friends, {self.k}-of-{self.n}, margin {self.margin}"),
            ("lost after", f"{self.lost_after_days:g} days"),
            ("runs", f"{self.runs} (seed {self.seed}, {pct} % intervals)"),
            ("P(loss) within 1 year", prob(self.loss_1y)),
            (f"P(loss) within {years} years", prob(self.loss_horizon)),
            ("time below k + margin", prob(self.below_margin)),
            ("repair traffic / member / month", gb(self.repair_per_month)),
            ("released as superfluous / month", gb(self.released_per_month)),
        ]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.as_dict() if isinstance(value, Estimate) else value
        return out


def _resolve(scenario: Scenario | str | Path) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def _runs(args: tuple[Scenario, int, range]) -> list[RunResult]:
    sc, seed, indexes = args
    return [simulate(sc, f"{seed}:{i}") for i in indexes]


def simulate_many(sc: Scenario, runs: int, seed: int, workers: int = 1) -> list[RunResult]:
    """``runs`` seeded runs, in ``workers`` processes (same results whatever the count)."""
    if runs < 1:
        raise ScenarioError(f"runs must be at least 1, got {runs}")
    if workers <= 1 or runs < 2 * workers:
        return _runs((sc, seed, range(runs)))
    step = -(-runs // (4 * workers))
    chunks = [(sc, seed, range(i, min(i + step, runs))) for i in range(0, runs, step)]
    # spawn, not fork: forking a process that has threads (an event loop, a test runner)
    # is unsafe, and Python 3.12+ warns about it.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return [r for part in pool.map(_runs, chunks) for r in part]


def summarise(sc: Scenario, results: Sequence[RunResult], seed: int, confidence: float) -> Results:
    """Intervals over ``results``: Wilson for probabilities, mean ± z·SE otherwise."""
    runs = len(results)
    first = [r.first_loss for r in results]
    months = sc.horizon / MONTH
    return Results(
        title=sc.title,
        runs=runs,
        seed=seed,
        confidence=confidence,
        members=len(sc.members),
        k=sc.k,
        n=sc.n,
        margin=sc.policy.effective_margin(sc.k, sc.n),
        lost_after_days=sc.policy.lost_after / DAY,
        years=sc.years,
        loss_1y=wilson(sum(t is not None and t <= YEAR for t in first), runs, confidence),
        loss_horizon=wilson(sum(t is not None for t in first), runs, confidence),
        below_margin=mean_interval(
            [r.below_fraction for r in results], confidence, nonnegative=True
        ),
        repair_per_month=mean_interval(
            [r.repair_bytes / months for r in results], confidence, nonnegative=True
        ),
        released_per_month=mean_interval(
            [r.released_bytes / months for r in results], confidence, nonnegative=True
        ),
        repairs_per_year=mean_interval(
            [r.repairs / sc.years for r in results], confidence, nonnegative=True
        ),
    )


def run_scenario(
    scenario: Scenario | str | Path,
    runs: int | None = None,
    seed: int = 0,
    *,
    confidence: float = 0.95,
    workers: int = 1,
) -> Results:
    """Run a scenario (object, TOML path, or shipped name) ``runs`` times from ``seed``."""
    sc = _resolve(scenario)
    count = sc.runs if runs is None else runs
    return summarise(sc, simulate_many(sc, count, seed, workers), seed, confidence)


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One point of a sweep: the code, margin and grace it used, and what it gave."""

    k: int
    n: int
    margin: int
    lost_after_days: float
    results: Results


def codes_for(members: int, max_overhead: float = 3.0) -> list[tuple[int, int]]:
    """Every (k, n) with n ≤ members and storage overhead n/k ≤ ``max_overhead``."""
    return [
        (k, n) for n in range(2, members + 1) for k in range(1, n) if n / k <= max_overhead + 1e-9
    ]


def sweep(
    scenario: Scenario | str | Path,
    codes: Iterable[tuple[int, int]] | None = None,
    margins: Iterable[int] = (0, 1, 2),
    lost_after_days: Iterable[float] | None = None,
    runs: int | None = None,
    seed: int = 0,
    *,
    workers: int = 1,
) -> list[SweepPoint]:
    """Loss probability and traffic over codes × repair margins × lost_after graces.

    Margins at or above n − k all mean "repair at the first missing shard", so only the
    smallest of them is run.
    """
    base = _resolve(scenario)
    graces = [base.policy.lost_after / DAY] if lost_after_days is None else list(lost_after_days)
    points = []
    for k, n in codes_for(len(base.members)) if codes is None else codes:
        for margin in sorted({min(m, n - k - 1) for m in margins if m >= 0}):
            for days in graces:
                policy = dataclasses.replace(
                    base.policy,
                    margin=margin,
                    lost_after=days * DAY,
                    offline_after=min(base.policy.offline_after, days * DAY),
                )
                sc = dataclasses.replace(base, k=k, n=n, policy=policy)
                results = run_scenario(sc, runs, seed, workers=workers)
                points.append(SweepPoint(k, n, margin, days, results))
    return points
