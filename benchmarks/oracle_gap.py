"""Where `recommend` loses to the family oracle: its accuracy estimate at the oracle's pick.

    OMP_NUM_THREADS=1 python benchmarks/oracle_gap.py [--seeds 12] [--first-seed 0] [--noise-scale 1]

For every case and budget of `benchmarks/recommender.py`, the family oracle's pick (the fastest
grid point whose delta-method bound, fitted with the generating formula, clears the floor) and
what `recommend`'s models say there at the default confidence. Over the decisions where
`recommend` cannot certify that pick, it prints medians of: its lower bound minus the floor, its
std over the oracle's (and over all decisions), its mean minus the oracle's, each mean minus the
truth, the share measured, and P(within budget). It says whether the gap is the model's width or
its mean.
"""

from __future__ import annotations

import argparse
from statistics import NormalDist

import numpy as np
import pandas as pd
from family_oracle import family_estimates, family_oracle_pick  # benchmarks/ is on the path
from recommender import grid_choices, models_of

from autoprumux.meta.budget import DEFAULT_CONFIDENCE, accuracy_floor
from autoprumux.meta.optimizer import candidate_configurations, score_candidates
from autoprumux.meta.replay import BUDGETS
from autoprumux.meta.results import results_from_frame
from autoprumux.meta.surfaces import FAMILIES, suite


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    z = NormalDist().inv_cdf(DEFAULT_CONFIDENCE)
    records = []
    for case in suite(FAMILIES, range(args.first_seed, args.first_seed + args.seeds), noise_scale=args.noise_scale):
        results = results_from_frame(case.table, source=case.name)
        models = models_of(results)
        grid, cache = case.grid, {}
        candidates = candidate_configurations(results, **grid_choices(grid))
        for budget in BUDGETS:
            floor = accuracy_floor(results.baseline_accuracy, budget)
            scored = score_candidates(models, candidates, floor, DEFAULT_CONFIDENCE, results)
            pick = family_oracle_pick(case, results, grid, floor, DEFAULT_CONFIDENCE, cache)
            oracle_mean, oracle_std = family_estimates(case, cache)
            at = (scored["mux"] == grid.loc[pick, "mux"]) & np.isclose(scored["sparsity"], grid.loc[pick, "sparsity"])
            row = scored[at].iloc[0]
            records.append({
                "certified": bool(row["feasible"]), "p": row["p_feasible"], "measured": bool(row["measured"]),
                "low_minus_floor": row["accuracy"] - z * row["accuracy_std"] - floor,
                "std_ratio": row["accuracy_std"] / oracle_std[pick], "mean_minus_oracle": row["accuracy"] - oracle_mean[pick],
                "mean_minus_truth": row["accuracy"] - grid.loc[pick, "accuracy"],
                "oracle_minus_truth": oracle_mean[pick] - grid.loc[pick, "accuracy"],
            })  # fmt: skip
    frame = pd.DataFrame(records)
    lost = frame[~frame["certified"]]
    print(f"noise x {args.noise_scale:g}: recommend cannot certify the family oracle's pick in {len(lost)} of {len(frame)} decisions")
    if lost.empty:
        return
    median = lost.median(numeric_only=True)
    print(f"there, medians: lower bound - floor {100 * median['low_minus_floor']:+.3f} points; "
          f"std / oracle's {median['std_ratio']:.2f} (all decisions {frame['std_ratio'].median():.2f}); "
          f"mean - oracle's {100 * median['mean_minus_oracle']:+.3f} points; mean - truth "
          f"{100 * median['mean_minus_truth']:+.3f} (oracle {100 * median['oracle_minus_truth']:+.3f}); "
          f"measured {lost['measured'].mean():.0%}; P(within budget) {median['p']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
