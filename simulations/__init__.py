"""Durability simulations of a peerbak friend pool, driven by peerbak's own policy.

The library API (what ``peerbak simulate`` is meant to call): :func:`run_scenario` and
:func:`sweep` over a :class:`Scenario` or a TOML file (:func:`load_scenario`), giving
:class:`Results` with confidence intervals; :mod:`simulations.markov` is the closed-form
check. ``python -m simulations SCENARIO`` is the command line. See docs/durability.md.
"""

from simulations.runner import Results, SweepPoint, run_scenario, sweep
from simulations.scenario import Scenario, ScenarioError, load_scenario

__all__ = [
    "Results",
    "Scenario",
    "ScenarioError",
    "SweepPoint",
    "load_scenario",
    "run_scenario",
    "sweep",
]
