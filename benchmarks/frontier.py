"""Regret against violations as the confidence moves: `recommend` and the family oracle.

    OMP_NUM_THREADS=1 python benchmarks/frontier.py [--seeds 12] [--noise-scale 1]
        [--confidences 0.5,0.6,0.7,0.8,0.85,0.9,0.95,0.99]

The cases and decisions of `benchmarks/recommender.py`, replayed once with `recommend` and with
the family oracle (told the generating formula and the true throughput) at every confidence in
`--confidences`: the same fitted models and the same cases for every level, in one run. Lowering
the confidence trades violations for regret; the rows say whether any level reaches issue 14's
targets (mean regret <= 5% with violations <= 5%) at the chosen noise, for `recommend` and for the
oracle, whose regret is what the accuracy noise alone leaves to a method that knows the formula.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from family_oracle import family_oracle_method  # benchmarks/ is on the path when run as a script
from recommender import autoprumux_pick

from autoprumux.meta.replay import environment, replay, write_csv
from autoprumux.meta.surfaces import FAMILIES, suite

RECOMMEND, ORACLE = "recommend", "family oracle"
TARGET = 0.05


def at_confidence(pick, level: float):
    """`pick` at `level`, whatever confidence the replay passes."""
    return lambda results, grid, floor, confidence: pick(results, grid, floor, level)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12, help="cases per family (default 12)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise-scale", type=float, default=1.0)
    parser.add_argument("--training-noise", type=float, default=0.0)
    parser.add_argument("--measured-fraction", type=float, help="share of each grid measured (default: 40-60%%)")
    parser.add_argument("--confidences", default="0.5,0.6,0.7,0.8,0.85,0.9,0.95,0.99")
    parser.add_argument("--out", help="CSV of every decision")
    args = parser.parse_args(argv)
    levels = [float(v) for v in args.confidences.split(",")]
    start = time.perf_counter()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    cases = suite(FAMILIES, seeds, training_noise=args.training_noise, noise_scale=args.noise_scale,
                  measured_fraction=args.measured_fraction)
    pickers = {RECOMMEND: autoprumux_pick, ORACLE: family_oracle_method(cases)}
    labels = {f"{name} {level:g}": (name, level) for level in levels for name in pickers}
    frame = replay(cases, {label: at_confidence(pickers[name], level) for label, (name, level) in labels.items()})
    frame["confidence"] = frame["method"].map(lambda label: labels[label][1])
    frame["method"] = frame["method"].map(lambda label: labels[label][0])
    table = (
        frame.groupby(["confidence", "method"])
        .agg(regret=("regret", "mean"), violations=("violation", "mean"))
        .unstack("method")
    )
    table.columns = [f"{method} {what}" for what, method in table.columns]
    table = table[[f"{m} {w}" for m in (RECOMMEND, ORACLE) for w in ("regret", "violations")]]
    print(f"{len(cases)} cases, {len(frame) // len(labels)} decisions per method and level, noise x "
          f"{args.noise_scale:g}, training noise {args.training_noise:g}, measured share "
          f"{args.measured_fraction or '0.4-0.6'}, {time.perf_counter() - start:.0f} s")  # fmt: skip
    print(environment())
    pd.set_option("display.width", 160)
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    for method in (RECOMMEND, ORACLE):
        meets = table[(table[f"{method} regret"] <= TARGET) & (table[f"{method} violations"] <= TARGET)]
        best = table[table[f"{method} violations"] <= TARGET][f"{method} regret"]
        lowest = f"lowest regret with violations <= {TARGET:.0%}: " + (
            f"{best.min():.3f} at {best.idxmin():g}" if len(best) else "none"
        )
        levels_met = ", ".join(f"{v:g}" for v in meets.index) or "none"
        print(f"{method}: levels meeting regret and violations <= {TARGET:.0%}: {levels_met}; {lowest}")
    if args.out:
        write_csv(frame, Path(args.out).parent, Path(args.out).name)


if __name__ == "__main__":
    main()
