"""Auto-PruMUX `recommend` against simple peers on generated held-out tables (issue 14).

    OMP_NUM_THREADS=1 python benchmarks/recommender.py [--seeds 12] [--out results/recommender]

Cases: every family of `autoprumux.meta.surfaces` (smooth, mid-N throughput peak, a width that
never trained, pruning knee) x `--seeds` (each draws a grid of 35-42 points, 40-60% of it measured,
Gaussian or binomial accuracy noise, 3-4% throughput noise, with or without a FLOPs column).
`--noise-scale 0.5` halves every accuracy measurement's std (same surfaces, grids and measured
points), to show how regret falls with the noise. `--training-noise 0.01` adds a training-seed
offset of that std to every measured configuration (the truth stays the surface: what a
configuration trains to on average). Budgets 1, 2, 3, 5%; regret = 1 - true throughput of the pick
/ best true throughput within the floor (a violation counts as 1). Peers, on the same cases in the
same run: the best measured row within budget, and one scikit-learn GP per objective on (log N,
-log(1 - s)) picking by its 90% lower bound or by its mean. Beside them, not a product method, the
family oracle (`benchmarks/family_oracle.py`): told the generating formula and the true throughput,
it fits the formula's parameters and bounds by the delta method, so its regret is what the
measurement noise alone leaves to a calibrated method. Coverage: share of unmeasured grid points
whose true accuracy is at least the 90/80/50% one-sided lower bound.
"""

from __future__ import annotations

import argparse
import time
import warnings
from statistics import NormalDist

import numpy as np
import pandas as pd
from family_oracle import family_oracle_method  # benchmarks/ is on the path when run as a script
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from autoprumux.meta.budget import DEFAULT_CONFIDENCE
from autoprumux.meta.models import GaussianProcessModel
from autoprumux.meta.optimizer import recommend
from autoprumux.meta.replay import (
    COVERAGE_LEVELS,
    baseline_index,
    coverage,
    environment,
    grid_index,
    replay,
    write_csv,
)
from autoprumux.meta.results import mux_sparsity_features, results_from_frame
from autoprumux.meta.selection import default_candidates, fit_performance_models
from autoprumux.meta.surfaces import FAMILIES, suite

_CACHE: dict = {}
#: candidate models (None: `default_candidates()`); --accuracy-model restricts the accuracy ones
CANDIDATES: dict = {}


def models_of(results):
    """The fitted models of a case's table (the last table's are cached: every method and budget
    of a case reuses them)."""
    key = results.fingerprint
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = fit_performance_models(results, candidates=CANDIDATES or None)
    return _CACHE[key]


def grid_choices(grid) -> dict:
    """`recommend`'s candidate N and sparsities: those of the case's grid."""
    return {"mux_choices": sorted(set(grid["mux"])), "sparsity_choices": sorted(set(grid["sparsity"]))}


def autoprumux_recommendation(results, grid, floor, confidence):
    budget = results.baseline_accuracy - floor
    return recommend(results, budget, models=models_of(results), confidence=confidence, **grid_choices(grid))


def autoprumux_pick(results, grid, floor, confidence):
    rec = autoprumux_recommendation(results, grid, floor, confidence)
    return grid_index(grid, rec.recommendation.mux, rec.recommendation.sparsity)


def best_measured_pick(results, grid, floor, confidence):
    configs = results.configurations
    ok = configs[configs["accuracy"] >= floor]
    if ok.empty:
        return baseline_index(grid)
    best = ok.loc[ok["throughput"].idxmax()]
    return grid_index(grid, int(best["mux"]), float(best["sparsity"]))


def _plain_gp(X, y):
    kernel = ConstantKernel(1.0) * Matern(np.ones(2), nu=2.5) + WhiteKernel(1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianProcessRegressor(kernel, normalize_y=True, random_state=0).fit(X, y)


def plain_gp_predictions(results, grid):
    key = ("gp", results.fingerprint)
    if key not in _CACHE:
        X = mux_sparsity_features(results.features)
        G = mux_sparsity_features(grid[["mux", "sparsity"]].to_numpy(float))
        acc = _plain_gp(X, results.rows["accuracy"].to_numpy(float)).predict(G, return_std=True)
        thr = _plain_gp(X, np.log(results.rows["throughput"].to_numpy(float))).predict(G)
        _CACHE[key] = (*acc, thr)
    return _CACHE[key]


def plain_gp_pick(lower_bound: bool):
    def pick(results, grid, floor, confidence):
        acc, std, thr = plain_gp_predictions(results, grid)
        z = NormalDist().inv_cdf(0.9) if lower_bound else 0.0
        ok = acc - z * std >= floor
        return int(np.argmax(np.where(ok, thr, -np.inf))) if ok.any() else baseline_index(grid)

    return pick


METHODS = {
    "autoprumux recommend": autoprumux_pick,
    "best measured row": best_measured_pick,
    "plain GP, 90% lower bound": plain_gp_pick(True),
    "plain GP, mean": plain_gp_pick(False),
}


#: not a product method: knows the generating formula and the true throughput
FAMILY_ORACLE = "family oracle (knows the formula)"


def coverage_table(cases) -> pd.DataFrame:
    rows = []
    for case in cases:
        results = results_from_frame(case.table, source=case.name)
        X = case.grid[["mux", "sparsity"]].to_numpy(float)
        models = models_of(results)
        pred = models.predict(X)
        ours = coverage(case, pred["accuracy"], pred["accuracy_std"], target=models.accuracy)
        acc, std, _ = plain_gp_predictions(results, case.grid)
        theirs = coverage(case, acc, std)
        for level in COVERAGE_LEVELS:
            rows.append({"case": case.name, "level": level, "autoprumux recommend": ours[level],
                         "plain GP": theirs[level]})  # fmt: skip
    return pd.DataFrame(rows)


def against_family_oracle(frame: pd.DataFrame) -> pd.Series:
    """Per method, the mean of 1 - true throughput of its pick / that of the family oracle's pick
    (0 when faster; 1 for a violation), over the decisions where the family oracle's pick is within
    the floor."""
    by_decision = frame.pivot_table(index=["case", "budget"], columns="method", values="regret")
    oracle = by_decision.pop(FAMILY_ORACLE)
    keep = oracle < 1.0
    relative = 1.0 - (1.0 - by_decision[keep]).div(1.0 - oracle[keep], axis=0)
    return relative.clip(lower=0.0).where(by_decision[keep] < 1.0, 1.0).mean()


def summarise(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return (
        frame.groupby([*by, "method"])
        .agg(regret=("regret", "mean"), violations=("violation", "mean"),
             regret_clear=("regret_clear", "mean"), decisions=("regret", "size"))  # fmt: skip
        .reset_index()
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12, help="cases per family (default 12)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first case per family (default 0)")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--out", help="folder for the per-decision CSV and the summary")
    parser.add_argument("--accuracy-model", help="use only this accuracy candidate (e.g. monotone-gp)")
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    parser.add_argument("--noise-scale", type=float, default=1.0,
                        help="multiply every accuracy measurement's std (binomial: evaluate on 1/scale^2 the examples)")
    parser.add_argument("--training-noise", type=float, default=0.0,
                        help="std (accuracy fraction) of a training-seed offset per measured configuration (default 0)")
    args = parser.parse_args(argv)
    if args.accuracy_model:
        CANDIDATES.update(default_candidates())
        known = {**CANDIDATES["accuracy"], "gp": GaussianProcessModel()}  # gp: the model before issue 14
        CANDIDATES["accuracy"] = {args.accuracy_model: known[args.accuracy_model]}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    cases = suite(args.families.split(","), seeds, training_noise=args.training_noise, noise_scale=args.noise_scale)
    methods = {**METHODS, FAMILY_ORACLE: family_oracle_method(cases)}
    start = time.perf_counter()
    frame = replay(cases, methods, confidence=args.confidence)
    cov = coverage_table(cases)
    elapsed = time.perf_counter() - start
    frame["set"] = np.where(frame["family"] == "smooth", "A smooth", "B structured")
    pd.set_option("display.width", 160)
    print(f"{len(cases)} cases, {len(frame) // len(methods)} decisions per method, {elapsed:.0f} s")
    print(environment())
    print(summarise(frame, ["set"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(summarise(frame, ["family"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(summarise(frame, ["budget"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(summarise(frame.assign(all="all"), ["all"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("mean regret against the family oracle's pick (what the noise allows; a violation counts as 1):")
    print(against_family_oracle(frame).to_string(float_format=lambda v: f"{v:.3f}"))
    print("coverage of the one-sided accuracy bound on unmeasured configurations:")
    print(cov.groupby("level")[["autoprumux recommend", "plain GP"]].mean().to_string(float_format=lambda v: f"{v:.3f}"))
    write_csv(frame, args.out, "decisions.csv")
    write_csv(cov, args.out, "coverage.csv")


if __name__ == "__main__":
    main()
