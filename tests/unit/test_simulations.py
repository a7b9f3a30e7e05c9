"""The durability simulator: agrees with the Markov chain, deterministic, policy-faithful."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from peerbak.core.health import DAY, RepairPolicy, detection_probability
from simulations import markov
from simulations.__main__ import main
from simulations.engine import Simulation, simulate
from simulations.runner import codes_for, run_scenario, sweep
from simulations.scenario import (
    SCENARIO_DIR,
    YEAR,
    MemberSpec,
    Outage,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from simulations.stats import mean_interval, wilson


def simple(k: int, n: int, members: int, margin: int, lam: float, mu: float, **kw: Any) -> Scenario:
    """The Markov chain's world: announced failures, instant replacement, exponential repair."""
    spec = [
        MemberSpec(
            f"m{i}",
            f"m{i}",
            disk_failure_per_year=0.0,
            leave_per_year=lam,
            leave_announced=1.0,
            replace_days=0.0,
        )
        for i in range(members)
    ]
    return Scenario(
        title="markov",
        members=tuple(spec),
        k=k,
        n=n,
        policy=RepairPolicy(margin=margin),
        years=1.0,
        packs=1,
        repair_model="exponential",
        repair_mean=YEAR / mu,
        **kw,
    )


@pytest.mark.parametrize(
    ("k", "n", "members", "margin"),
    [(3, 5, 5, 1), (2, 4, 6, 0)],  # repair at the first loss / only at the last spare shard
)
def test_simulator_agrees_with_markov(k: int, n: int, members: int, margin: int) -> None:
    lam, mu = 1.0, 12.0  # a member a year, repairs in a month: loss ~17–19 % in a year
    expected = markov.loss_probability(k, n, margin, lam, mu, horizon=1.0)
    assert 0.05 < expected < 0.3
    got = run_scenario(simple(k, n, members, margin, lam, mu), runs=4000, seed=7, confidence=0.99)
    assert got.loss_horizon.contains(expected), (expected, got.loss_horizon)


def test_expm_matches_closed_forms() -> None:
    q = np.array([[-2.0, 2.0], [0.0, 0.0]])
    assert markov.expm(q * 3)[0, 1] == pytest.approx(1 - np.exp(-6), rel=1e-12)
    chain = markov.build_chain(6, 10, 1, 0.2, 300)
    p = markov.expm(chain.q * 10)
    assert np.allclose(p.sum(axis=1), 1)


def test_markov_is_monotone_and_consistent() -> None:
    one = markov.loss_probability(2, 4, 1, 0.2, 50, 1)
    ten = markov.loss_probability(2, 4, 1, 0.2, 50, 10)
    faster = markov.loss_probability(2, 4, 1, 0.2, 100, 10)
    assert 0 < one < ten < 1
    assert faster < ten
    mttdl = markov.mean_time_to_loss(2, 4, 1, 0.2, 50)
    assert markov.yearly_loss(mttdl) == pytest.approx(ten / 10, rel=0.05)


def test_seeded_runs_are_reproducible() -> None:
    sc = dataclasses.replace(load_scenario("pis-at-home-5"), years=2.0, packs=16)
    assert simulate(sc, "a:1") == simulate(sc, "a:1")
    assert run_scenario(sc, runs=6, seed=3) == run_scenario(sc, runs=6, seed=3, workers=2)


class Checked(Simulation):
    """Asserts after every placement that no member holds two shards of one pack."""

    added = 0

    def add_holder(self, p: int, slot: int) -> None:
        assert slot not in self.holders[p], f"member {slot} would hold two shards of pack {p}"
        super().add_holder(p, slot)
        assert len(self.holders[p]) == len(set(self.holders[p]))
        Checked.added += 1


def test_repair_never_uses_a_member_twice_for_one_pack() -> None:
    sc = dataclasses.replace(load_scenario("vacation"), k=2, n=4, years=5.0, packs=32)
    before = Checked.added
    for i in range(10):
        result = Checked(sc, random.Random(i)).run()
        assert result.repairs > 0
    assert Checked.added - before > 10 * 32 * 4  # repairs placed shards beyond the first


def test_correlated_domain_loss_is_worse_than_independent() -> None:
    spread = dataclasses.replace(
        simple(3, 5, 5, 1, lam=0.05, mu=50),
        years=2.0,
        packs=8,
        disaster_per_year=0.2,  # per domain: for a member alone in its house, its own rate
    )
    houses = ["a", "a", "a", "b", "b"]
    together = dataclasses.replace(
        spread,
        members=tuple(
            dataclasses.replace(m, domain=d) for m, d in zip(spread.members, houses, strict=True)
        ),
    )
    independent = run_scenario(spread, runs=300, seed=11)
    correlated = run_scenario(together, runs=300, seed=11)
    assert correlated.loss_horizon.low > 3 * independent.loss_horizon.high


def test_lost_after_longer_than_the_holiday_avoids_needless_repair() -> None:
    away = Outage("holiday", days=(20.0, 20.0), window=(100.0, 100.0))
    sc = dataclasses.replace(
        simple(2, 4, 6, 1, lam=0.0, mu=1.0),
        repair_model="bandwidth",
        packs=16,
        volume=1e10,
    )
    travellers = tuple(
        dataclasses.replace(m, outages=(away,)) if i < 2 else m for i, m in enumerate(sc.members)
    )
    sc = dataclasses.replace(sc, members=travellers)
    strict = dataclasses.replace(sc, policy=RepairPolicy(lost_after=14 * DAY))
    patient = dataclasses.replace(sc, policy=RepairPolicy(lost_after=21 * DAY))
    hasty = simulate(strict, 1)
    assert hasty.repairs > 0
    assert hasty.released_bytes > 0
    assert hasty.first_loss is None
    calm = simulate(patient, 1)
    assert calm.repairs == 0
    assert calm.released_bytes == 0


def test_detection_delay_is_the_policys_geometric_law() -> None:
    sc = dataclasses.replace(load_scenario("silent-loss"), packs=100)
    sim = Simulation(sc, random.Random(5))
    sim.start()
    member = sim.members[0]
    member.missing = len(member.packs) // 10  # 10 % of its shards gone
    x = member.missing / len(member.packs)
    within_day = 0
    trials = 4000
    for _ in range(trials):
        sim.events.clear()
        member.detect_scheduled = False
        sim.schedule_detect(member, 0.0)
        within_day += sim.events[0][0] <= DAY
    expected = detection_probability(x, int(sc.challenges_per_day))
    assert wilson(within_day, trials, 0.999).contains(expected)


def test_shipped_scenarios_load() -> None:
    names = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
    assert names == [
        "pis-at-home-5",
        "silent-loss",
        "ten-friends-two-in-one-house",
        "three-friends",
        "vacation",
    ]
    for name in names:
        sc = load_scenario(name)
        assert sc.n <= len(sc.members)
        assert sc.title
    ten = load_scenario("ten-friends-two-in-one-house")
    assert (ten.k, ten.n) == (6, 10)
    assert sum(m.domain == "shared-house" for m in ten.members) == 2


def test_code_defaults_to_peerbaks_and_policy_to_repair_policy() -> None:
    sc = parse_scenario({"members": [{"count": 7}]})
    assert (sc.k, sc.n) == (3, 6)
    assert sc.policy == RepairPolicy()
    assert len({m.domain for m in sc.members}) == 7


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"members": [{"count": 5}], "colour": 1}, "unknown key"),
        ({"members": [{"count": 5, "leave_per_year": "often"}]}, "must be a number"),
        ({"members": [{"count": 3}], "code": {"k": 2, "n": 5}}, "need at least 5 members"),
        ({"members": [{"count": 3}], "code": {"k": 3, "n": 3}}, "1 ≤ k < n"),
        ({"members": []}, "at least one member"),
        ({"members": [{"count": 1}]}, "at least 2"),
        ({"members": [{"count": 3, "outages": [{"days": 3}]}]}, "exactly one of"),
        ({"members": [{"count": 3}], "policy": {"margin": -1}}, "integer ≥ 0"),
        ({"members": [{"count": 3}], "repair": {"model": "magic"}}, "model must be"),
    ],
)
def test_bad_scenarios_say_what_is_wrong(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(doc)


def test_bad_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("title = 'x'\n[[members]]\ncount = 4\nspeed = 3\n")
    with pytest.raises(ScenarioError, match=r"bad\.toml: unknown key\(s\) speed"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="no scenario"):
        load_scenario("no-such-scenario")


def test_intervals() -> None:
    none = wilson(0, 10)
    assert none.value == 0
    assert none.low == 0
    assert none.high == pytest.approx(0.2775, abs=1e-4)
    half = wilson(50, 100)
    assert half.low == pytest.approx(0.4038, abs=1e-4)
    assert half.high == pytest.approx(0.5962, abs=1e-4)
    m = mean_interval([1.0, 2.0, 3.0])
    assert m.value == 2
    assert m.high - m.value == pytest.approx(1.96 / np.sqrt(3), rel=1e-3)


def test_sweep_covers_codes_and_margins() -> None:
    assert codes_for(3) == [(1, 2), (1, 3), (2, 3)]
    sc = dataclasses.replace(load_scenario("pis-at-home-5"), years=1.0, packs=8)
    points = sweep(sc, codes=[(1, 2), (2, 4)], margins=[0, 1, 5], runs=3)
    # margins of n − k or more all mean "repair at the first loss": run once, as n − k − 1
    assert [(p.k, p.n, p.margin) for p in points] == [(1, 2, 0), (2, 4, 0), (2, 4, 1)]
    assert all(p.results.runs == 3 for p in points)


def test_cli_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["three-friends", "--runs", "3", "--workers", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"] == 3
    assert doc["k"] == 2
    assert 0 <= doc["loss_horizon"]["value"] <= 1


def test_cli_reports_a_bad_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-scenario", "--runs", "1"]) == 64
    assert "no scenario" in capsys.readouterr().err


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from simulations import plot

    def missing(name: str) -> Any:
        raise ImportError(name)

    monkeypatch.setattr("simulations.plot.importlib.import_module", missing)
    sc = dataclasses.replace(load_scenario("three-friends"), years=1.0, packs=4)
    points = sweep(sc, codes=[(2, 3)], margins=[0], runs=2)
    with pytest.raises(plot.PlotUnavailable, match=r"peerbak\[sim\]"):
        plot.plot_sweep(points, "/nonexistent/x.png")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from simulations.plot import plot_sweep

    sc = dataclasses.replace(load_scenario("three-friends"), years=1.0, packs=4)
    points = sweep(sc, codes=[(1, 2), (2, 3)], margins=[0], runs=3)
    out = plot_sweep(points, tmp_path / "sweep.png", "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
