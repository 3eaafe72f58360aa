"""Leave-configurations-out predictions, calibration of the predictive std, and decision regret.

Model selection matches the use: each candidate accuracy model predicts every configuration
with that configuration's rows held out; those predictions drive the same rule `recommend`
applies (fastest configuration whose one-sided lower bound meets the floor) at budgets of 1, 2,
3 and 5%, and the model whose picks lose least throughput against the best measured configuration
wins (ties within half a point go to the lower RMSE).

The std a model reports is rescaled by one factor per table so that its held-out standardised
residuals have unit variance: z_i = r_i / sqrt(k^2 sd_i^2 + m_i^2), with m_i^2 the measurement's
own noise (binomial where known, else the model's fitted noise), solved for mean(z^2) = 1, or
larger if at most 10% of the held-out measurements may fall under the one-sided 90% bound. The
factor only widens (k >= 1): where the measurement noise alone explains the held-out residuals,
they say nothing about the model's own error, and shrinking it there (k = 0.5 was allowed at
first) let 10% of the picks on the generated suite fall under the floor.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd
from sklearn.base import clone

from autoprumux.meta.budget import DEFAULT_CONFIDENCE

SCALE_BOUNDS = (1.0, 5.0)
TAIL_Z = NormalDist().inv_cdf(0.9)
SELECTION_BUDGETS = (0.01, 0.02, 0.03, 0.05)


def out_of_fold(estimator, X, y, groups, fit_params: dict | None = None, warm: dict | None = None):
    """Held-out mean and std of clones of `estimator` for every row, one fold per group;
    `fit_params` are per-row arrays passed to `fit` (sliced per fold), `warm` set on each clone."""
    fit_params = {k: v for k, v in (fit_params or {}).items() if v is not None}
    mean, std = np.empty(len(y)), np.empty(len(y))
    for group in np.unique(groups):
        held = groups == group
        params = {k: np.asarray(v)[~held] for k, v in fit_params.items()}
        model = clone(estimator).set_params(**(warm or {})).fit(X[~held], y[~held], **params)
        mean[held], std[held] = model.predict(X[held], return_std=True)
    return mean, std


def std_scale(residual: np.ndarray, std: np.ndarray, noise_variance: np.ndarray) -> float:
    """The factor k on the model std that gives held-out residuals unit standardised variance."""
    noise_variance = np.nan_to_num(noise_variance)

    def excess(k):
        z2 = residual**2 / np.maximum((k * std) ** 2 + noise_variance, 1e-18)
        return float(np.mean(np.minimum(z2, 16.0))) - 1.0

    def uncovered(k):  # share of residuals under the one-sided 90% bound, less its nominal 10%
        return float(np.mean(residual < -TAIL_Z * np.sqrt((k * std) ** 2 + noise_variance))) - 0.1

    return max(_root(excess), _root(uncovered))


def _root(f) -> float:
    """The k in SCALE_BOUNDS where the decreasing f crosses 0 (a bound when it does not)."""
    low, high = SCALE_BOUNDS
    if f(low) <= 0:
        return low
    if f(high) >= 0:
        return high
    grid = np.linspace(low, high, 41)  # f may be a step function: take the first k where f <= 0
    return float(grid[np.argmax([f(k) <= 0 for k in grid])])


def decision_regret(configs: pd.DataFrame, mean, std, baseline: float, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """Mean regret of picking, per budget in `SELECTION_BUDGETS`, the fastest measured
    configuration (not collapsed) whose held-out lower bound meets the floor, against the fastest
    whose measured accuracy meets it; a pick measured under the floor counts as regret 1.
    `configs` has accuracy, throughput and collapsed per configuration; `mean`/`std` align."""
    z = NormalDist().inv_cdf(confidence)
    acc, thr = configs["accuracy"].to_numpy(float), configs["throughput"].to_numpy(float)
    usable = ~configs["collapsed"].to_numpy(bool)
    base = np.flatnonzero((configs["mux"].to_numpy() == 1) & (configs["sparsity"].to_numpy() == 0))
    baseline_index = int(base[0]) if len(base) else int(np.argmin(thr))
    regrets = []
    for budget in SELECTION_BUDGETS:
        floor = baseline - budget
        within = usable & (acc >= floor)
        if not within.any():
            continue
        ok = usable & (mean - z * std >= floor)
        pick = int(np.argmax(np.where(ok, thr, -np.inf))) if ok.any() else baseline_index
        regrets.append(1.0 if acc[pick] < floor else 1.0 - thr[pick] / thr[within].max())
    return float(np.mean(regrets)) if regrets else 0.0


def by_configuration(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mean of per-row `values` over each configuration (groups numbered 0..G-1)."""
    return np.bincount(groups, weights=values) / np.bincount(groups)
