"""How good are the recommendations on a table? Leave-k-out replay against the oracle.

For each random split, k measured configurations (never the baseline) are hidden, the models are
refitted on the rest, and the optimizer picks among the measured grid, seeing measured values
only for the configurations it was not hidden from. The oracle is the fastest configuration whose
measured accuracy meets the floor. regret = 1 - measured throughput of the pick / the oracle's;
a violation is a pick whose measured accuracy is under the floor.

Coverage: for every hidden configuration, whether its measured accuracy is at least the one-sided
lower bound at 90, 80 and 50% (the bound on a new measurement: the model's uncertainty about the
true accuracy combined with the measurement's own noise: binomial where `eval_examples` is known,
plus the model's fitted noise beyond it, such as training-seed noise).
A calibrated model covers close to those shares. Collapsed configurations are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from autoprumux.errors import TableError
from autoprumux.meta.budget import DEFAULT_CONFIDENCE, accuracy_floor, parse_budget
from autoprumux.meta.optimizer import (
    MEASURED_COLUMNS,
    check_confidence,
    choose,
    few_dof_widening,
    score_candidates,
)
from autoprumux.meta.results import Results, subset_results
from autoprumux.meta.selection import fit_performance_models

DEFAULT_BUDGETS = (0.01, 0.02, 0.03, 0.05)
COVERAGE_LEVELS = (0.9, 0.8, 0.5)


@dataclass(frozen=True)
class Evaluation:
    """`splits`: one row per (split, budget) with the pick, the oracle, `regret` (fraction) and
    `violation`; `summary`: per budget, mean regret, violation rate and how often the pick was
    the oracle; `regret` and `violation_rate` are the means over everything; `coverage`: per
    level (0.9, 0.8, 0.5), the share of hidden configurations at or above their lower bound."""

    splits: pd.DataFrame
    summary: pd.DataFrame
    regret: float
    violation_rate: float
    holdout: int
    n_splits: int
    confidence: float
    relative: bool
    source: str
    coverage: dict

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "holdout": self.holdout,
            "n_splits": self.n_splits,
            "confidence": self.confidence,
            "relative": self.relative,
            "regret": self.regret,
            "violation_rate": self.violation_rate,
            "per_budget": self.summary.to_dict(orient="records"),
            "coverage": {f"{level:.0%}": value for level, value in self.coverage.items()},
        }


def evaluate(
    results: Results,
    *,
    budgets: Sequence[str | float] = DEFAULT_BUDGETS,
    holdout: int | None = None,
    n_splits: int = 10,
    confidence: float = DEFAULT_CONFIDENCE,
    relative: bool = False,
    seed: int = 0,
) -> Evaluation:
    """Replay the recommender on `n_splits` random leave-`holdout`-out splits of the measured
    configurations (default `holdout`: a fifth of them, at least 1), for each budget (fractions
    or strings like "3%"). Raises `TableError` when the table is too small to hold any out."""
    budgets = [parse_budget(b) for b in budgets]
    confidence = check_confidence(confidence)
    configs = results.configurations
    is_base = (configs["mux"] == 1) & (configs["sparsity"] == 0)
    eligible = np.flatnonzero(~is_base.to_numpy())
    holdout = max(1, round(len(configs) / 5)) if holdout is None else int(holdout)
    if len(configs) - holdout < 2 or holdout > len(eligible) or holdout < 1:
        raise TableError(
            f"{results.source}: cannot hold out {holdout} of {len(configs)} configurations "
            "(the baseline stays in and at least 2 must remain); use a smaller holdout or a larger table"
        )
    rng = np.random.default_rng(seed)
    grid = configs.assign(feature_sparsity=configs["feature_sparsity"], measured=True)
    grid = grid.rename(columns=MEASURED_COLUMNS)
    records, covered = [], []
    for split in range(n_splits):
        hidden = configs.index[rng.choice(eligible, size=holdout, replace=False)]
        keys = set(zip(configs.loc[hidden, "mux"], configs.loc[hidden, "sparsity"], strict=True))
        row_keys = zip(results.rows["mux"].astype(int), results.rows["config_sparsity"], strict=True)
        train = subset_results(results, [k not in keys for k in row_keys])
        models = fit_performance_models(train)
        visible = grid.assign(measured=~grid.index.isin(hidden))
        covered.append(_covered(models, configs.loc[hidden]))
        for budget in budgets:
            floor = accuracy_floor(results.baseline_accuracy, budget, relative)
            scored = score_candidates(models, visible, floor, confidence, train)
            records.append(_replay_record(split, budget, floor, scored, configs, hidden))
    frame = pd.DataFrame(records)
    summary = (
        frame.groupby("budget")
        .agg(
            regret=("regret", "mean"),
            violation_rate=("violation", "mean"),
            oracle_match=("oracle_match", "mean"),
        )
        .reset_index()
    )
    return Evaluation(
        splits=frame,
        summary=summary,
        regret=float(frame["regret"].mean()),
        violation_rate=float(frame["violation"].mean()),
        holdout=holdout,
        n_splits=n_splits,
        confidence=confidence,
        relative=relative,
        source=results.source,
        coverage=_coverage_shares(np.vstack(covered)),
    )


def _coverage_shares(covered: np.ndarray) -> dict[float, float]:
    """Share covered per level (NaN when no hidden configuration could be checked)."""
    shares = covered.mean(axis=0) if len(covered) else np.full(len(COVERAGE_LEVELS), np.nan)
    return dict(zip(COVERAGE_LEVELS, shares.tolist(), strict=True))


def _covered(models, hidden: pd.DataFrame) -> np.ndarray:
    """Per hidden (not collapsed) configuration and level in COVERAGE_LEVELS, whether its measured
    accuracy is at least the lower bound on a new measurement; shape (configurations, levels)."""
    hidden = hidden[~hidden["collapsed"]]
    if hidden.empty:
        return np.empty((0, len(COVERAGE_LEVELS)))
    pred = models.predict(hidden[["mux", "feature_sparsity"]].to_numpy(float))
    noise = np.zeros(len(hidden))
    if models.accuracy.std_source == "native":  # known (binomial) variance + the fitted excess
        known = np.nan_to_num(hidden["accuracy_se"].to_numpy(float) ** 2)
        noise = known + getattr(models.accuracy.estimator, "noise_", 0.0)
    spread = np.sqrt(pred["accuracy_std"] ** 2 + noise)
    z = np.array([NormalDist().inv_cdf(level) * few_dof_widening(models.accuracy, level) for level in COVERAGE_LEVELS])
    low = pred["accuracy"][:, None] - z[None, :] * spread[:, None]
    return hidden["accuracy"].to_numpy(float)[:, None] >= low

def _replay_record(split, budget, floor, scored, configs, hidden) -> dict:
    within = configs[configs["accuracy"] >= floor - 1e-12]
    oracle = within["throughput"].idxmax() if not within.empty else None
    pick = choose(scored)
    if pick is None:  # nothing feasible: the recommender keeps the baseline
        base = configs[(configs["mux"] == 1) & (configs["sparsity"] == 0)]
        pick = base.index[0] if not base.empty else None

    def describe(i):
        return (None, None) if i is None else (int(configs.loc[i, "mux"]), float(configs.loc[i, "sparsity"]))

    pick_thr = np.nan if pick is None else configs.loc[pick, "throughput"]
    oracle_thr = np.nan if oracle is None else configs.loc[oracle, "throughput"]
    return {
        "split": split,
        "budget": budget,
        "pick_mux": describe(pick)[0],
        "pick_sparsity": describe(pick)[1],
        "pick_hidden": pick in set(hidden),
        "oracle_mux": describe(oracle)[0],
        "oracle_sparsity": describe(oracle)[1],
        "regret": float(1.0 - pick_thr / oracle_thr) if oracle is not None and pick is not None else np.nan,
        "violation": bool(pick is not None and configs.loc[pick, "accuracy"] < floor - 1e-12),
        "oracle_match": bool(pick == oracle),
    }
