"""How often `recommend` names a near miss on the generated suite, and whether it is worth measuring.

    OMP_NUM_THREADS=1 python benchmarks/near_miss.py [--seeds 12] [--noise-scale 1]

For every case and budget of `benchmarks/recommender.py` (same cases, same grids), `recommend` at
its default confidence; when it names a near miss (a candidate predicted at least 10% faster than
the pick whose risk of missing the floor is at most twice the risk allowed), the near miss's true
accuracy and throughput are read off the surface. Printed: how many decisions name one, the share
of those whose near miss is truly within budget, the mean true speed-up over the pick when it is,
and the regret `recommend` would have had if it had taken every near miss (a violation counts as
1), beside its own.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from autoprumux.meta.budget import accuracy_floor
from autoprumux.meta.optimizer import recommend
from autoprumux.meta.replay import BUDGETS, environment, grid_index, regret_of
from autoprumux.meta.results import results_from_frame
from autoprumux.meta.selection import fit_performance_models
from autoprumux.meta.surfaces import FAMILIES, suite


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12, help="cases per family (default 12)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    records = []
    for case in suite(FAMILIES, range(args.first_seed, args.first_seed + args.seeds), noise_scale=args.noise_scale):
        results = results_from_frame(case.table, source=case.name)
        models = fit_performance_models(results)
        grid = case.grid
        choices = dict(mux_choices=sorted(set(grid["mux"])), sparsity_choices=sorted(set(grid["sparsity"])))
        for budget in BUDGETS:
            floor = accuracy_floor(results.baseline_accuracy, budget)
            rec = recommend(results, budget, models=models, **choices)
            pick = grid_index(grid, rec.recommendation.mux, rec.recommendation.sparsity)
            regret, _ = regret_of(case, floor, pick)
            row = {"case": case.name, "budget": budget, "regret": regret, "named": rec.near_miss is not None,
                   "with_near_miss": regret}  # fmt: skip
            if rec.near_miss is not None:
                miss = grid_index(grid, rec.near_miss.mux, rec.near_miss.sparsity)
                row["within"] = bool(grid.loc[miss, "accuracy"] >= floor - 1e-12)
                row["speedup"] = float(grid.loc[miss, "throughput"] / grid.loc[pick, "throughput"])
                row["with_near_miss"] = regret_of(case, floor, miss)[0]
            records.append(row)
    frame = pd.DataFrame(records)
    named = frame[frame["named"]]
    print(f"{frame['case'].nunique()} cases, {len(frame)} decisions, noise x {args.noise_scale:g}, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    print(environment())
    print(f"near miss named in {len(named)} of {len(frame)} decisions")
    if len(named):
        within = named[named["within"]]
        print(f"truly within budget: {len(within)} of {len(named)} ({len(within) / len(named):.0%}); "
              f"true speed-up over the pick when within: mean {within['speedup'].mean():.2f}x, "
              f"median {np.median(within['speedup']):.2f}x")  # fmt: skip
    print(f"mean regret of recommend's picks {frame['regret'].mean():.3f}; "
          f"taking every near miss instead {frame['with_near_miss'].mean():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
