"""Numpy-only terms of the structured models, shared by the estimators (`structured.py`) and
their array form (`compiled.py`), which must predict without importing scikit-learn or scipy."""

from __future__ import annotations

import numpy as np


def monotone_design(F: np.ndarray, p: float, q: float, knee: float = 0.0) -> np.ndarray:
    """Columns [(N^p - 1)/p, (z - knee)+^q, their product] of features F = [log N, z]; each rises
    with N and s, so non-negative weights on their negatives give a trend that cannot rise. The
    knee (in z = -log(1 - s)) lets accuracy hold until pruning starts to hurt."""
    mux_term = F[:, 0] if abs(p) < 1e-9 else np.expm1(p * F[:, 0]) / p
    sparsity_term = np.maximum(F[:, 1] - knee, 0.0) ** q
    return np.column_stack([mux_term, sparsity_term, mux_term * sparsity_term])


def trend_design(F: np.ndarray, *shape: float) -> np.ndarray:
    """[1, monotone_design]: the design of the monotone trend, intercept first."""
    return np.column_stack([np.ones(len(F)), monotone_design(F, *shape)])


def monotone_trend(F: np.ndarray, coef: np.ndarray, *shape: float) -> np.ndarray:
    """The trend `fit_monotone_trend` found, at features F (shape: p, q and the knee)."""
    return trend_design(F, *shape) @ coef


def trend_jacobian(F: np.ndarray, coef: np.ndarray, *shape: float) -> np.ndarray:
    """d trend / d (intercept, slopes..., shape...) at features F: the linear coefficients'
    design, then one column per shape parameter by central differences."""
    columns = [trend_design(F, *shape)]
    for i in range(len(shape)):
        step = 1e-4 * max(abs(shape[i]), 1.0)
        up, down = np.array(shape, float), np.array(shape, float)
        up[i] += step
        down[i] -= step
        columns.append(((monotone_trend(F, coef, *up) - monotone_trend(F, coef, *down)) / (2 * step))[:, None])
    return np.column_stack(columns)


def trend_variance(
    F: np.ndarray, cov: np.ndarray, coef: np.ndarray, *shape: float, train_jacobian=None, weights=None
) -> np.ndarray:
    """Variance of the fitted trend at features F by the delta method, from the covariance of
    (intercept, slopes..., shape...). With a residual GP, `train_jacobian` (the trend's Jacobian
    at the training rows) and `weights` (K^-1 k*: the GP's weights of the training rows at each
    point of F, one column per point) remove what the GP already learns from nearby rows: the
    explicit-basis GP of Rasmussen and Williams (2006, section 2.7), R = J* - k*' K^-1 J."""
    J = trend_jacobian(F, coef, *shape)
    if train_jacobian is not None:
        J = J - weights.T @ train_jacobian
    return np.maximum(np.einsum("ni,ij,nj->n", J, cov, J), 0.0)


def additive_terms(F: np.ndarray) -> np.ndarray:
    """The shared terms of the additive throughput model: z, z^2, log N * z."""
    return np.column_stack([F[:, 1], F[:, 1] ** 2, F[:, 0] * F[:, 1]])


def additive_mean(F, knots, levels, coef, flops_table=None) -> np.ndarray:
    """Level(N) + shared terms, minus log FLOPs when a FLOPs model is given."""
    mean = interpolate_levels(F[:, 0], knots, levels) + additive_terms(F) @ coef
    if flops_table is not None and len(flops_table):
        mean = mean - np.log(predict_flops(flops_table, F))
    return mean


def interpolate_levels(x: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation of `values` at `knots`, extrapolated along the end slopes."""
    if len(knots) == 1:
        return np.full(len(x), values[0])
    out = np.interp(x, knots, values)
    low, high = x < knots[0], x > knots[-1]
    out[low] = values[0] + (x[low] - knots[0]) * (values[1] - values[0]) / (knots[1] - knots[0])
    out[high] = values[-1] + (x[high] - knots[-1]) * (values[-1] - values[-2]) / (knots[-1] - knots[-2])
    return out


def predict_flops(table: np.ndarray, F: np.ndarray) -> np.ndarray:
    """FLOPs per example at features F = [log N, z] from `fit_flops` rows (A and B interpolated
    in log N on a log scale for N never measured)."""
    keep = np.exp(-F[:, 1])
    a = np.exp(interpolate_levels(F[:, 0], table[:, 0], np.log(np.maximum(table[:, 1], 1e-30))))
    b = np.exp(interpolate_levels(F[:, 0], table[:, 0], np.log(np.maximum(table[:, 2], 1e-30))))
    return np.maximum(a * keep + b, 1e-30)
