"""The sweep as a picture: loss probability and repair traffic against the code.

matplotlib is an optional dependency (``pip install 'peerbak[sim]'``), imported only
here and only when a plot is asked for, so the simulator itself needs numpy alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from peerbak.core.errors import InputError
from simulations.runner import SweepPoint


class PlotUnavailable(InputError):
    """A plot was asked for but matplotlib is not installed."""

    code = "plot-unavailable"


def _pyplot() -> ModuleType:
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")  # files only: no display needed
        return importlib.import_module("matplotlib.pyplot")
    except ImportError as e:
        raise PlotUnavailable(
            "plotting needs matplotlib: pip install 'peerbak[sim]' (or matplotlib>=3.8)"
        ) from e


def plot_sweep(points: Sequence[SweepPoint], path: str | Path, title: str = "") -> Path:
    """Write a two-panel PNG: P(loss within the horizon) and repair traffic per code.

    One line per (margin, lost_after); a point with no loss in any run is drawn as a
    downward triangle at the interval's upper bound, since "0 of N" only bounds it.
    """
    if not points:
        raise InputError("nothing to plot: the sweep is empty")
    plt = _pyplot()
    codes = sorted({(p.k, p.n) for p in points}, key=lambda c: (c[1], c[0]))
    x_of = {c: i for i, c in enumerate(codes)}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7.0, 0.45 * len(codes) + 3), 8))
    series = sorted({(p.margin, p.lost_after_days) for p in points})
    graces = {g for _, g in series}
    for margin, grace in series:
        mine = sorted(
            (p for p in points if (p.margin, p.lost_after_days) == (margin, grace)),
            key=lambda p: x_of[(p.k, p.n)],
        )
        label = f"margin {margin}" + (f", lost after {grace:g} d" if len(graces) > 1 else "")
        xs = [x_of[(p.k, p.n)] for p in mine]
        est = [p.results.loss_horizon for p in mine]
        floor = 1e-4
        ys = [max(e.value, floor) if e.value > 0 else max(e.high, floor) for e in est]
        lows = [y - max(e.low, floor) if e.value > 0 else 0.0 for y, e in zip(ys, est, strict=True)]
        highs = [max(e.high, floor) - y for y, e in zip(ys, est, strict=True)]
        line = top.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3, label=label)
        zero = [(x, y) for x, y, e in zip(xs, ys, est, strict=True) if e.value == 0]
        if zero:
            top.plot(*zip(*zero, strict=True), "v", color=line[0].get_color(), markersize=9)
        traffic = [p.results.repair_per_month.value / 1e9 for p in mine]
        bottom.plot(xs, traffic, marker="o", label=label)
    years = points[0].results.years
    top.set_yscale("log")
    top.set_ylabel(f"P(lose a pack within {years:g} years)")
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize="small")
    bottom.set_ylabel("repair traffic per member per month (GB)")
    bottom.grid(True, alpha=0.3)
    for ax in (top, bottom):
        ax.set_xticks(range(len(codes)))
        ax.set_xticklabels([f"{k}-of-{n}" for k, n in codes], rotation=45)
    runs = points[0].results.runs
    fig.suptitle(f"{title}\n{runs} runs per point, 95 % intervals; ▼ = no loss seen (upper bound)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
