"""How much noise the accuracy model gives a row, against what the rows are off their truth,
in tables that repeat some configurations (simulated `suggest` sweeps, which propose repeats).

    OMP_NUM_THREADS=1 python benchmarks/seed_variance.py [--seeds 6] [--training-noise 0.01] [--out FOLDER]

The sweeps are those of `benchmarks/adaptive.py` (same cases, start points and measurements; the
order `suggest`, with repeats, which was `suggest --repeats` before repeats became the default;
24 trainings). At every step whose table has a configuration measured twice (and, for reference,
at every step before), the accuracy model (a monotone GP, the sweeps' model) is fitted twice on
the same table: told the pooled spread of the repeats as a training seed's variance
(`Results.seed_variance`, what the models were told before `selection.training_seed_variance`),
and told that spread capped by the noise fitted beyond the binomial variance
(`training_seed_variance`, what they are told now). For each, the noise it gives a
configuration's mean (its known variance plus the fitted noise beyond it) is set against the
squared error of that mean from the surface's truth, summed over the configurations measured once
and, apart, over those measured more often: a ratio of 1 is right, above 1 the model's bounds are
wider than the noise asks. By the degrees of freedom of the pooled spread (repeats); the tables
of a sweep before its first repeat (0) show what the model gives a configuration measured once
when the table tells it nothing of the seeds.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
import pandas as pd
from adaptive import ORDERS, Sweep, suggest_order  # benchmarks/ is on the path when run as a script

from autoprumux.meta.budget import parse_budget
from autoprumux.meta.replay import environment, write_csv
from autoprumux.meta.selection import noise_beyond_known, training_seed_variance
from autoprumux.meta.surfaces import FAMILIES, make_case

CAP = 24


def noise_given(results, seed_variance: float) -> tuple[np.ndarray, float]:
    """Per configuration (not collapsed), the noise variance a monotone GP gives its mean when told
    `seed_variance`, and the noise it fitted beyond the known part."""
    known, beyond = noise_beyond_known(results, seed_variance)
    return np.nan_to_num(known) + beyond, beyond


def sweep_rows(case, seed: int, budget: float) -> list[dict]:
    sweep = Sweep(case, seed)
    step = suggest_order(sweep, budget, np.random.default_rng([seed, ORDERS.index("suggest")]), repeats=True)
    measured, rows = list(sweep.start), []
    while len(measured) < CAP:
        measured += step(measured, 2)[: CAP - len(measured)]
        results = sweep.results(measured)
        pooled = results.seed_variance  # NaN before the first repeat: both fits are told nothing
        configs = results.configurations[~results.configurations["collapsed"]].reset_index(drop=True)
        truth = case.surface.accuracy(configs["mux"].to_numpy(int), configs["sparsity"].to_numpy(float))
        error = (configs["accuracy"].to_numpy(float) - truth) ** 2
        once = configs["repeats"].to_numpy() == 1
        row = {"case": case.name, "trainings": len(measured), "dof": results.seed_variance_dof, "pooled": pooled}
        for name, told in (("pooled", pooled), ("capped", training_seed_variance(results))):
            given, beyond = noise_given(results, told)
            row[f"{name}_told"], row[f"{name}_beyond"] = told, beyond
            row[f"{name}_once_given"], row[f"{name}_repeated_given"] = given[once].sum(), given[~once].sum()
        row["once_error"], row["repeated_error"] = error[once].sum(), error[~once].sum()
        rows.append(row)
    return rows


def _ratio(given: pd.Series, error: pd.Series) -> float:
    return float(given.sum() / error.sum()) if error.sum() > 0 else float("nan")


def summary(frame: pd.DataFrame, training_noise: float) -> pd.DataFrame:
    bins = pd.cut(frame["dof"], [-1, 0, 1, 3, 6, 1000], labels=["0 (no repeat yet)", "1", "2-3", "4-6", "7+"])
    out = {}
    for label, part in frame.groupby(bins, observed=True):
        out[label] = {
            "tables": len(part),
            "pooled / truth": part["pooled"].mean() / training_noise**2,
            "capped / truth": part["capped_told"].mean() / training_noise**2,
            "once: pooled": part["pooled_once_given"].sum() / part["once_error"].sum(),
            "once: capped": part["capped_once_given"].sum() / part["once_error"].sum(),
            "repeated: pooled": _ratio(part["pooled_repeated_given"], part["repeated_error"]),
            "repeated: capped": _ratio(part["capped_repeated_given"], part["repeated_error"]),
        }
    return pd.DataFrame.from_dict(out, orient="index")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6, help="cases per family (default 6)")
    parser.add_argument("--training-noise", type=float, default=0.01)
    parser.add_argument("--budget", default="3%")
    parser.add_argument("--out", help="folder for tables.csv (one row per table of a sweep)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    budget = parse_budget(args.budget)
    cases = [make_case(family, 1000 * i + seed, training_noise=args.training_noise)
             for i, family in enumerate(FAMILIES) for seed in range(args.seeds)]  # fmt: skip
    rows = []
    for k, case in enumerate(cases):
        rows += sweep_rows(case, 7 + k, budget)  # the seeds adaptive.py gives its sweeps
        print(f"{case.name}: done ({k + 1}/{len(cases)})", file=sys.stderr, flush=True)
    frame = pd.DataFrame(rows)
    print(f"{len(cases)} cases, training noise {args.training_noise:g}: {len(frame)} tables of {frame['case'].nunique()} "
          f"sweeps, {int((frame['dof'] > 0).sum())} with repeats")  # fmt: skip
    print(environment())
    print("noise given to a configuration's mean / its squared error from the truth (summed), and the seed "
          "variance told / the training noise's variance (mean), by degrees of freedom of the repeats' spread:")  # fmt: skip
    print(summary(frame, args.training_noise).to_string(float_format=lambda v: f"{v:.2f}"))
    write_csv(frame, args.out, "tables.csv")


if __name__ == "__main__":
    main()
