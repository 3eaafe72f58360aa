"""A peer that knows how the generated surfaces were made: the attainable floor of regret.

No product method: it is told the generating family of `autoprumux.meta.surfaces.Surface` (the
accuracy formula, its fixed constants n_top and s_top, the width that collapsed, the number of
labels), the std of any training noise, and the TRUE throughput of every configuration. It fits the
accuracy formula's six free parameters (base, mux_drop, prune_drop, interaction, q, knee) by
weighted non-linear least squares to the measured rows, each weighted by its known binomial
variance (or by the residual variance under Gaussian noise), takes the parameters' covariance from
the Jacobian, and bounds the accuracy of every grid point by the delta method. Its pick is the
fastest point whose one-sided lower bound clears the floor.

With a correctly specified model, exact throughput and no model selection, what regret is left
comes from the accuracy measurements' noise alone; `benchmarks/recommender.py` reports it beside
the other methods, on the same cases, to show how much of `recommend`'s regret any calibrated
method could remove.
"""

from __future__ import annotations

import warnings
from statistics import NormalDist

import numpy as np
from scipy.optimize import least_squares

from autoprumux.meta.replay import baseline_index
from autoprumux.meta.surfaces import Surface

#: (name, lower, upper) of the free parameters
PARAMETERS = (
    ("base", 0.3, 1.0),
    ("mux_drop", 0.0, 0.5),
    ("prune_drop", 0.0, 0.5),
    ("interaction", 0.0, 0.5),
    ("q", 0.5, 4.0),
    ("knee", 0.0, 0.85),
)
STARTS = ((1.5, 0.0), (2.5, 0.5), (2.0, 0.7))  # (q, knee) starting points


def _surface(theta, template: Surface) -> Surface:
    return Surface(**{**template.__dict__, **dict(zip((p[0] for p in PARAMETERS), theta, strict=True))})


def fit_family(template: Surface, mux, sparsity, accuracy, variance=None):
    """(theta, covariance) of the family's free parameters fitted to the measurements; rows at the
    collapsed width are left out. `variance`: each row's known noise variance, or None (estimated
    from the residuals)."""
    mux, sparsity, accuracy = (np.asarray(a, float) for a in (mux, sparsity, accuracy))
    keep = mux != (template.dead_mux or -1)
    mux, sparsity, accuracy = mux[keep], sparsity[keep], accuracy[keep]
    sigma = None if variance is None else np.sqrt(np.maximum(np.asarray(variance, float)[keep], 1e-8))
    scale = np.ones_like(accuracy) if sigma is None else sigma

    def residual(theta):
        return (_surface(theta, template).accuracy(mux, sparsity) - accuracy) / scale

    low, high = (np.array([p[i] for p in PARAMETERS]) for i in (1, 2))
    base0 = float(accuracy[(mux == 1) & (sparsity == 0)].mean()) if np.any((mux == 1) & (sparsity == 0)) else accuracy.max()
    best = None
    for q, knee in STARTS:
        start = np.clip([base0, 0.03, 0.04, 0.01, q, knee], low + 1e-6, high - 1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = least_squares(residual, start, bounds=(low, high), x_scale="jac")
        if best is None or fit.cost < best.cost:
            best = fit
    J = best.jac
    dof = max(len(accuracy) - len(PARAMETERS), 1)
    s2 = 2.0 * best.cost / dof if sigma is None else 1.0
    covariance = s2 * np.linalg.pinv(J.T @ J)
    return best.x, covariance


def predict_family(template: Surface, theta, covariance, mux, sparsity):
    """(mean, std) of the fitted family's accuracy at (mux, sparsity) by the delta method."""
    mux, sparsity = np.asarray(mux, float), np.asarray(sparsity, float)
    mean = _surface(theta, template).accuracy(mux, sparsity)
    gradient = np.empty((len(mux), len(theta)))
    for i in range(len(theta)):
        step = 1e-5 * max(abs(theta[i]), 1e-2)
        shifted = np.array(theta, float)
        shifted[i] += step
        gradient[:, i] = (_surface(shifted, template).accuracy(mux, sparsity) - mean) / step
    std = np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", gradient, covariance, gradient), 0.0))
    return mean, std


def family_estimates(case, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the accuracy of every point of the case's grid, from the formula fitted to
    its table (cached by case name)."""
    if case.name not in cache:
        table, grid = case.table, case.grid
        variance = None
        if "eval_examples" in table:
            p = table["accuracy"].to_numpy(float)
            variance = np.clip(p * (1 - p), 0.01, None) / table["eval_examples"].to_numpy(float)
            variance = variance + case.training_noise**2  # it knows the training noise's std too
        theta, cov = fit_family(case.surface, table["mux"], table["sparsity"], table["accuracy"], variance)
        cache[case.name] = predict_family(case.surface, theta, cov, grid["mux"], grid["sparsity"])
    return cache[case.name]


def family_oracle_pick(case, results, grid, floor, confidence, cache: dict) -> int:
    """The fastest grid point (true throughput) whose fitted lower bound clears the floor."""
    mean, std = family_estimates(case, cache)
    dead = grid["mux"].to_numpy() == (case.surface.dead_mux or -1)
    ok = (mean - NormalDist().inv_cdf(confidence) * std >= floor) & ~dead
    throughput = grid["throughput"].to_numpy(float)
    return int(np.argmax(np.where(ok, throughput, -np.inf))) if ok.any() else baseline_index(grid)


def family_oracle_method(cases):
    """The oracle as a `replay` method over `cases` (a table's `source` names its case), with the
    fits of every case cached."""
    by_name, cache = {case.name: case for case in cases}, {}

    def pick(results, grid, floor, confidence):
        return family_oracle_pick(by_name[results.source], results, grid, floor, confidence, cache)

    return pick
