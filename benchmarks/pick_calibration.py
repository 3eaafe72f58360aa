"""Is the probability `recommend` reports at its pick right? Predicted against observed violations.

    OMP_NUM_THREADS=1 python benchmarks/pick_calibration.py [--seeds 12] [--first-seed 0]
        [--training-noise 0.01] [--noise-scale 1] [--confidence 0.95] [--out FOLDER]

On the cases of `benchmarks/recommender.py` (same families, seeds, noise options), for every
decision (case x budget 1, 2, 3, 5%) where `recommend` picks something other than the baseline:
its P(within budget) at the pick, whether the pick's true accuracy is under the floor, and
z = (true accuracy - predicted mean) / predicted std there. If P were right at the picks, the
violations would number sum(1 - P) and z would average 0. The same for the family oracle
(`benchmarks/family_oracle.py`, told the generating formula), and, for contrast, z over every
unmeasured grid point (what the coverage check sees): a bias at the picks and none at random
points is the cost of choosing the fastest of many bounds that each clear the floor, not a
misfit of the model. The interval is a 90% bootstrap over cases of (observed - predicted) / decisions.
"""

from __future__ import annotations

import argparse
import time
import warnings
from statistics import NormalDist

import numpy as np
import pandas as pd

# benchmarks/ is on the path when run as a script
from family_oracle import family_estimates, family_oracle_pick
from recommender import autoprumux_recommendation, models_of

from autoprumux.meta.budget import DEFAULT_CONFIDENCE, accuracy_floor
from autoprumux.meta.replay import (
    BUDGETS,
    baseline_index,
    environment,
    grid_index,
    measured_mask,
    regret_of,
    write_csv,
)
from autoprumux.meta.results import results_from_frame
from autoprumux.meta.surfaces import FAMILIES, suite

RECOMMEND, ORACLE = "autoprumux recommend", "family oracle"


def decisions(cases, confidence: float) -> pd.DataFrame:
    """One row per (case, budget, method) whose pick is not the baseline: P at the pick, the
    violation and z."""
    z_level, cache, rows = NormalDist().inv_cdf(confidence), {}, []
    for case in cases:
        results = results_from_frame(case.table, source=case.name)
        grid, measured = case.grid, measured_mask(case)
        oracle_mean, oracle_std = family_estimates(case, cache)
        for budget in BUDGETS:
            floor = accuracy_floor(results.baseline_accuracy, budget)
            rec = autoprumux_recommendation(results, grid, floor, confidence).recommendation
            ours = grid_index(grid, rec.mux, rec.sparsity)
            theirs = family_oracle_pick(case, results, grid, floor, confidence, cache)
            estimates = {
                RECOMMEND: (ours, rec.accuracy, (rec.accuracy - rec.accuracy_low) / z_level),
                ORACLE: (theirs, oracle_mean[theirs], oracle_std[theirs]),
            }
            for method, (pick, mean, std) in estimates.items():
                if pick == baseline_index(grid):
                    continue
                truth = float(grid.loc[pick, "accuracy"])
                rows.append({"case": case.name, "budget": budget, "method": method, "measured": bool(measured[pick]),
                             "p_within_budget": NormalDist().cdf((mean - floor) / max(std, 1e-12)),
                             "violation": regret_of(case, floor, pick)[1], "z": (truth - mean) / max(std, 1e-12)})  # fmt: skip
    return pd.DataFrame(rows)


def unmeasured_z(cases) -> np.ndarray:
    """z of `recommend`'s model at every unmeasured grid point that did not collapse."""
    out = []
    for case in cases:
        results = results_from_frame(case.table, source=case.name)
        pred = models_of(results).predict(case.grid[["mux", "sparsity"]].to_numpy(float))
        truth = case.grid["accuracy"].to_numpy(float)
        held = ~measured_mask(case) & (truth > case.surface.chance + 1e-9)
        out.append((truth - pred["accuracy"])[held] / np.maximum(pred["accuracy_std"][held], 1e-12))
    return np.concatenate(out)


def bootstrap_excess(frame: pd.DataFrame, draws: int = 2000, seed: int = 0) -> np.ndarray:
    """5th, 50th and 95th percentiles of (observed - predicted violations) / decisions, resampling cases."""
    per_case = frame.assign(excess=frame["violation"] - (1.0 - frame["p_within_budget"]))
    per_case = per_case.groupby("case")["excess"].agg(["sum", "size"]).to_numpy(float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_case), size=(draws, len(per_case)))
    sums = per_case[picks].sum(axis=1)
    return np.percentile(sums[:, 0] / sums[:, 1], [5, 50, 95])


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    rows = {}
    for method, part in frame.groupby("method", sort=False):
        low, mid, high = bootstrap_excess(part)
        rows[method] = {
            "picks": len(part),
            "observed": int(part["violation"].sum()),
            "predicted": float((1.0 - part["p_within_budget"]).sum()),
            "mean_p": float(part["p_within_budget"].mean()),
            "excess_rate_5/50/95%": f"{low:+.3f} / {mid:+.3f} / {high:+.3f}",
            "z_mean": float(part["z"].mean()),
            "z_sd": float(part["z"].std()),
            "z_measured": float(part.loc[part["measured"], "z"].mean()),
            "z_unmeasured": float(part.loc[~part["measured"], "z"].mean()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12, help="cases per family (default 12)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    parser.add_argument("--noise-scale", type=float, default=1.0)
    parser.add_argument("--training-noise", type=float, default=0.0)
    parser.add_argument("--out", help="folder for decisions.csv")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    cases = suite(FAMILIES, seeds, training_noise=args.training_noise, noise_scale=args.noise_scale)
    start = time.perf_counter()
    frame = decisions(cases, args.confidence)
    held = unmeasured_z(cases)
    elapsed = time.perf_counter() - start
    print(
        f"{len(cases)} cases (seeds {seeds.start}-{seeds.stop - 1}), confidence {args.confidence:g}, noise scale "
        f"{args.noise_scale:g}, training noise {args.training_noise:g}; {elapsed:.0f} s"
    )
    print(environment())
    pd.set_option("display.width", 160)
    print(
        "at the picks (baseline picks left out): violations observed and predicted (sum of 1 - P), "
        "mean P, the excess rate's bootstrap interval, z = (truth - mean) / std"
    )
    print(summary(frame).to_string(float_format=lambda v: f"{v:.3f}"))
    print(
        f"z of recommend's model at the {len(held)} unmeasured, uncollapsed grid points: mean {held.mean():.3f}, "
        f"sd {held.std():.3f}"
    )
    write_csv(frame, args.out, "decisions.csv")


if __name__ == "__main__":
    main()
