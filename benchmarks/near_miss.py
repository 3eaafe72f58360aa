"""How often `recommend` names a near miss on the generated suite, and whether it is worth measuring.

    OMP_NUM_THREADS=1 python benchmarks/near_miss.py [--seeds 12] [--noise-scale 1]

The cases and decisions of `benchmarks/recommender.py`, replayed with two methods: `recommend` at
its default confidence, and the same with its near miss taken whenever it names one (a candidate
predicted at least 10% faster than the pick whose risk of missing the floor is at most twice the
risk allowed). Printed: how many decisions name one, the share of those whose near miss is truly
within budget, the mean true speed-up over the pick when it is, and the mean regret of both
methods (a violation counts as 1).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from recommender import autoprumux_pick, autoprumux_recommendation  # benchmarks/ is on the path

from autoprumux.meta.replay import environment, grid_index, replay
from autoprumux.meta.surfaces import FAMILIES, suite

RECOMMEND, TAKEN = "recommend", "near miss taken"


def near_miss_taken(results, grid, floor, confidence) -> int:
    rec = autoprumux_recommendation(results, grid, floor, confidence)
    chosen = rec.near_miss or rec.recommendation
    return grid_index(grid, chosen.mux, chosen.sparsity)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12, help="cases per family (default 12)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cases = suite(FAMILIES, range(args.first_seed, args.first_seed + args.seeds), noise_scale=args.noise_scale)
    grids = {case.name: case.grid for case in cases}
    frame = replay(cases, {RECOMMEND: autoprumux_pick, TAKEN: near_miss_taken})
    frame["true_throughput"] = [grids[case].loc[grid_index(grids[case], mux, s), "throughput"]
                                for case, mux, s in zip(frame["case"], frame["pick_mux"], frame["pick_sparsity"], strict=True)]  # fmt: skip
    wide = frame.pivot_table(index=["case", "budget"], columns="method",
                             values=["true_throughput", "regret", "violation"], aggfunc="first")  # fmt: skip
    named = wide[wide["true_throughput", TAKEN] != wide["true_throughput", RECOMMEND]]
    within = named[~named["violation", TAKEN].astype(bool)]
    speedup = within["true_throughput", TAKEN] / within["true_throughput", RECOMMEND]
    print(f"{len(cases)} cases, {len(wide)} decisions, noise x {args.noise_scale:g}, {time.perf_counter() - start:.0f} s")
    print(environment())
    print(f"near miss named in {len(named)} of {len(wide)} decisions")
    if len(named):
        print(f"truly within budget: {len(within)} of {len(named)} ({len(within) / len(named):.0%}); "
              f"true speed-up over the pick when within: mean {speedup.mean():.2f}x, "
              f"median {np.median(speedup):.2f}x")  # fmt: skip
    print(f"mean regret of recommend's picks {wide['regret', RECOMMEND].mean():.3f}; "
          f"taking every near miss instead {wide['regret', TAKEN].mean():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
