"""``python -m simulations SCENARIO``: run a scenario and print its table (or JSON).

``--sweep`` also runs the scenario under every (k, n) the pool allows and each repair
margin; ``--plot out.png`` draws that sweep (needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from peerbak.core.errors import PeerbakError
from simulations.runner import Results, SweepPoint, run_scenario, sweep
from simulations.scenario import load_scenario


def _codes(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(k), int(n)) for k, n in (c.split("/") for c in text.split(","))]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"codes look like 2/4,3/5 — not {text!r}") from e


def _numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected numbers like 14,21,28 — not {text!r}") from e


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulations", description=__doc__)
    p.add_argument("scenario", help="a scenario TOML file or a shipped name (pis-at-home-5)")
    p.add_argument("--runs", type=int, help="runs (default: the scenario's own)")
    p.add_argument("--seed", type=int, default=0, help="seed of run 0 (default 0)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--sweep", action="store_true", help="also sweep (k, n) and the margin")
    p.add_argument("--plot", metavar="PNG", help="draw the sweep into this PNG (implies --sweep)")
    p.add_argument("--codes", type=_codes, help="codes to sweep, e.g. 2/4,3/5 (default: all)")
    p.add_argument("--margins", type=_numbers, default=[0, 1, 2], help="margins to sweep")
    p.add_argument("--lost-after", type=_numbers, help="lost_after days to sweep, e.g. 14,21")
    return p


def table(rows: Sequence[Sequence[str]], head: Sequence[str] | None = None) -> str:
    """Plain fixed-width columns: readable in a terminal and pasteable into Markdown."""
    allrows = [list(head)] if head else []
    allrows += [list(r) for r in rows]
    widths = [max(len(r[i]) for r in allrows) for i in range(len(allrows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in allrows]
    if head:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def sweep_rows(points: Sequence[SweepPoint]) -> list[list[str]]:
    rows = []
    for p in points:
        r = p.results
        rows.append(
            [
                f"{p.k}-of-{p.n}",
                f"{p.n / p.k:.2f}",
                str(p.margin),
                f"{p.lost_after_days:g}",
                f"{r.loss_1y.value:.2%} [{r.loss_1y.low:.2%}, {r.loss_1y.high:.2%}]",
                f"{r.loss_horizon.value:.2%} [{r.loss_horizon.low:.2%}, {r.loss_horizon.high:.2%}]",
                f"{r.below_margin.value:.2%}",
                f"{r.repair_per_month.value / 1e9:,.1f}",
            ]
        )
    return rows


SWEEP_HEAD = (
    "code",
    "n/k",
    "margin",
    "lost after d",
    "P(loss) 1 y",
    "P(loss) horizon",
    "below k+m",
    "repair GB/month",
)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        sc = load_scenario(args.scenario)
        results: Results = run_scenario(sc, args.runs, args.seed, workers=args.workers)
        points: list[SweepPoint] = []
        if args.sweep or args.plot:
            margins = [int(m) for m in args.margins]
            points = sweep(
                sc, args.codes, margins, args.lost_after, args.runs, args.seed, workers=args.workers
            )
        if args.plot:
            from simulations.plot import plot_sweep

            plot_sweep(points, args.plot, sc.title)
    except PeerbakError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    if args.json:
        doc = results.as_dict()
        if points:
            doc["sweep"] = [
                {
                    "k": p.k,
                    "n": p.n,
                    "margin": p.margin,
                    "lost_after_days": p.lost_after_days,
                    "results": p.results.as_dict(),
                }
                for p in points
            ]
        print(json.dumps(doc, indent=2))
        return 0
    print(table(results.rows()))
    if points:
        print()
        print(table(sweep_rows(points), SWEEP_HEAD))
    if args.plot:
        print(f"\nplot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
