"""`recommend` on tables of a few configurations: the start of a sweep (issue 14).

    OMP_NUM_THREADS=1 python benchmarks/small_tables.py [--seeds 6] [--first-seed 7000] [--sizes 2,3,4,5,6,8,10]
                                                        [--training-noise 0.01]

Cases: every family of `autoprumux.meta.surfaces` x `--seeds`; from each generated table, the
baseline plus k - 1 of its measured configurations drawn at random, for each k of `--sizes`.
Budgets 1, 2, 3, 5%; regret and violations as in `benchmarks/recommender.py`. Methods, on the same
tables in the same run: `recommend` as shipped (below `optimizer.MIN_MODELLED` configurations it
picks among the measured ones only); `recommend` with that rule off (the models' bound decides
everywhere, as before the rule); the best measured row within budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np
import pandas as pd
from recommender import autoprumux_pick, best_measured_pick  # benchmarks/ is on the path when run as a script
from sklearn.exceptions import ConvergenceWarning

from autoprumux.errors import TableError
from autoprumux.meta import optimizer
from autoprumux.meta.replay import environment, replay
from autoprumux.meta.surfaces import FAMILIES, make_case


def models_everywhere(results, grid, floor, confidence):
    """`recommend` with the small-table rule switched off."""
    rule, optimizer.MIN_MODELLED = optimizer.MIN_MODELLED, 0
    try:
        return autoprumux_pick(results, grid, floor, confidence)
    finally:
        optimizer.MIN_MODELLED = rule


METHODS = {
    "autoprumux recommend": autoprumux_pick,
    "recommend, models everywhere": models_everywhere,
    "best measured row": best_measured_pick,
}


def small_cases(seeds: range, sizes: list[int], training_noise: float = 0.0):
    """(size, case) for every family x seed x size: the case's table cut to the baseline plus
    size - 1 of its other configurations (with `training_noise`, a training seed's offset of that
    std in every measured accuracy: `surfaces.make_case`)."""
    for i, family in enumerate(FAMILIES):
        for seed in seeds:
            case = make_case(family, seed + 100 * i, training_noise=training_noise)
            table = case.table
            is_base = (table["mux"] == 1) & (table["sparsity"] == 0)
            others = table.loc[~is_base, ["mux", "sparsity"]].drop_duplicates()
            order = np.random.default_rng(seed).permutation(len(others))
            for size in sizes:
                keep = others.iloc[order[: size - 1]]
                rows = is_base | table.set_index(["mux", "sparsity"]).index.isin(keep.set_index(["mux", "sparsity"]).index)
                yield size, dataclasses.replace(case, name=f"{case.name}-k{size}", table=table[rows])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6, help="cases per family (default 6)")
    parser.add_argument("--first-seed", type=int, default=7000, help="seed of the first case (default 7000)")
    parser.add_argument("--sizes", default="2,3,4,5,6,8,10", help="configurations per table (default 2,3,4,5,6,8,10)")
    parser.add_argument("--training-noise", type=float, default=0.0,
                        help="std of a training seed's accuracy offset, e.g. 0.01 (default 0: none)")
    args = parser.parse_args(argv)
    sizes = [int(k) for k in args.sizes.split(",")]
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    start = time.perf_counter()
    parts, refused = [], []
    for size, case in small_cases(range(args.first_seed, args.first_seed + args.seeds), sizes, args.training_noise):
        try:
            parts.append(replay([case], METHODS).assign(size=size))
        except TableError as exc:  # fewer than 2 configurations above chance: no model to fit
            refused.append(f"{case.name}: {exc}")
    frame = pd.concat(parts, ignore_index=True)
    pd.set_option("display.width", 160)
    print(f"{frame['case'].nunique()} tables, {len(frame) // len(METHODS)} decisions per method, "
          f"training noise {args.training_noise:g}, {time.perf_counter() - start:.0f} s")
    print(environment())
    for line in refused:
        print(f"refused (a clear error): {line}")
    for column in ("regret", "violation"):
        table = frame.pivot_table(index="size", columns="method", values=column, aggfunc="mean")[list(METHODS)]
        print(f"mean {column} by configurations in the table:")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    below = frame[frame["size"] < optimizer.MIN_MODELLED]
    print(f"tables under {optimizer.MIN_MODELLED} configurations, all together:")
    print(below.groupby("method")[["regret", "violation"]].mean().to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
