"""Performance models: scikit-learn regressors of a target (accuracy, or log throughput) on (N, s).

Every model takes `X` with two raw columns `[mux, sparsity]` (N >= 1, sparsity a fraction in
[0, 1)) and works internally on the features `log N` and `-log(1 - s)`, on which both surfaces are
simple: throughput ~ N^u / (1 - s)^v is linear in them on a log scale, and accuracy falls smoothly.
They follow the scikit-learn contract (`__init__` stores, `fit` validates and sets `attr_`,
`predict(X, return_std=False)`), so `clone`, `cross_val_score` and pipelines work.

>>> import numpy as np
>>> X = np.array([[1, 0.0], [2, 0.0], [1, 0.5], [2, 0.5], [4, 0.7]])
>>> y = 0.9 - 0.01 * np.log(X[:, 0]) - 0.02 * -np.log(1 - X[:, 1])
>>> model = PolynomialRidgeModel(degree=1, alpha=1e-9).fit(X, y)
>>> bool(abs(model.predict([[4, 0.0]])[0] - (0.9 - 0.01 * np.log(4))) < 1e-4)
True
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from autoprumux.meta.results import mux_sparsity_features


class _PerformanceModel(RegressorMixin, BaseEstimator):
    """Shared input checks; subclasses implement `_fit(F, y)` and `_predict(F)` on features F."""

    #: Whether `predict(..., return_std=True)` is a real predictive uncertainty (else a constant
    #: in-sample residual spread, which `fit_performance_models` replaces by the CV one).
    has_native_std = False

    def _check_X(self, X, y=None, reset=False):
        if reset:
            X, y = validate_data(self, X, y, reset=True, y_numeric=True, dtype=float)
        else:
            X = validate_data(self, X, reset=False, dtype=float)
        name = type(self).__name__
        if X.shape[1] != 2:
            raise ValueError(
                f"X of {name} must have 2 columns [mux, sparsity]; got {X.shape[1]} columns instead."
            )
        bad = (X[:, 0] < 1) | (X[:, 1] < 0) | (X[:, 1] >= 1)
        if bad.any():
            raise ValueError(
                f"X of {name} must hold mux >= 1 and sparsity in [0, 1); got {X[bad][0].tolist()} instead."
            )
        return (X, y) if reset else X

    def warm_start_params(self) -> dict:
        """Parameters that let a clone fitted on similar data start where this fit ended."""
        return {}

    def conditioning_params(self) -> dict:
        """Parameters that let a clone condition on a few more rows with this fit's
        hyperparameters (kernel, powers) instead of estimating them again."""
        return self.warm_start_params()

    def fit(self, X, y):
        """Fit on `X` = [[mux, sparsity], ...] and targets `y`; returns self."""
        X, y = self._check_X(X, y, reset=True)
        self._fit(mux_sparsity_features(X), np.asarray(y, dtype=float))
        return self

    def predict(self, X, return_std: bool = False):
        """Predicted target at `X` = [[mux, sparsity], ...]; with `return_std`, also its std."""
        check_is_fitted(self)
        features = mux_sparsity_features(self._check_X(X))
        mean, std = self._predict(features)
        return (mean, std) if return_std else mean


class SeparableModel(_PerformanceModel):
    """Parametric model with separable effects of N and s, in the spirit of PruMUX's Auto-PruMUX.

    target = a + b * (N^p - 1) / p + c * z^q  (+ d * (N^p - 1) / p * z^q with `interaction`),
    with z = -log(1 - s); (N^p - 1)/p is log N at p = 0. The powers are found by variable
    projection (the linear coefficients are solved exactly for each p, q). Throughput's
    N^u / (1 - s)^v on a log scale is the case p = 0, q = 1.

    Parameters
    ----------
    interaction : bool, default=False
        Add the product term, for accuracy that falls faster when N and s are both large.
    mux_power_bounds, sparsity_power_bounds : (float, float)
        Search ranges of p and q.
    alpha : float, default=1e-8
        Ridge penalty on b, c, d (keeps the solve stable when N or s does not vary).

    Attributes
    ----------
    coef_ : ndarray of (a, b, c[, d]); mux_power_, sparsity_power_ : float;
    residual_std_ : float, in-sample residual standard error.
    """

    def __init__(
        self, interaction=False, mux_power_bounds=(-2.0, 3.0), sparsity_power_bounds=(0.25, 4.0), alpha=1e-8
    ):
        self.interaction = interaction
        self.mux_power_bounds = mux_power_bounds
        self.sparsity_power_bounds = sparsity_power_bounds
        self.alpha = alpha

    def _design(self, F, p, q):
        mux_term = F[:, 0] if abs(p) < 1e-9 else np.expm1(p * F[:, 0]) / p
        sparsity_term = F[:, 1] ** q
        columns = [np.ones(len(F)), mux_term, sparsity_term]
        if self.interaction:
            columns.append(mux_term * sparsity_term)
        return np.column_stack(columns)

    def _solve(self, F, y, powers):
        """Least-squares coefficients and residual sum of squares for each row of `powers`."""
        powers = np.atleast_2d(powers)
        design = np.stack([self._design(F, p, q) for p, q in powers])  # (G, n, k)
        k = design.shape[2]
        penalty = self.alpha * np.diag(np.r_[0.0, np.ones(k - 1)])
        gram = np.einsum("gni,gnj->gij", design, design) + penalty
        rhs = np.einsum("gni,n->gi", design, y)
        coef = np.linalg.solve(gram + 1e-12 * np.eye(k), rhs[..., None])[..., 0]
        residual = y - np.einsum("gnk,gk->gn", design, coef)
        return coef, np.einsum("gn,gn->g", residual, residual)

    def _fit(self, F, y):
        bounds = [tuple(self.mux_power_bounds), tuple(self.sparsity_power_bounds)]
        grid = np.array([(p, q) for p in np.linspace(*bounds[0], 11) for q in np.linspace(*bounds[1], 11)])
        start = grid[np.argmin(self._solve(F, y, grid)[1])]
        result = minimize(
            lambda powers: self._solve(F, y, powers)[1][0], start, method="L-BFGS-B", bounds=bounds
        )
        powers = result.x if result.fun <= self._solve(F, y, start)[1][0] else start
        coef, sse = self._solve(F, y, powers)
        self.coef_ = coef[0]
        self.mux_power_, self.sparsity_power_ = float(powers[0]), float(powers[1])
        self.residual_std_ = float(np.sqrt(sse[0] / max(len(y) - len(self.coef_) - 2, 1)))

    def _predict(self, F):
        mean = self._design(F, self.mux_power_, self.sparsity_power_) @ self.coef_
        return mean, np.full(len(F), self.residual_std_)


class PolynomialRidgeModel(_PerformanceModel):
    """Ridge regression on polynomial terms of (log N, -log(1 - s)), standardised.

    Parameters
    ----------
    degree : int, default=2
    alpha : float, default=1e-3
        Ridge penalty on the standardised polynomial terms.

    Attributes
    ----------
    pipeline_ : the fitted scikit-learn pipeline; residual_std_ : in-sample residual standard error.
    """

    def __init__(self, degree=2, alpha=1e-3):
        self.degree = degree
        self.alpha = alpha

    def _fit(self, F, y):
        self.pipeline_ = make_pipeline(
            StandardScaler(),
            PolynomialFeatures(self.degree, include_bias=False),
            StandardScaler(),
            Ridge(self.alpha),
        ).fit(F, y)
        n_terms = self.pipeline_[1].n_output_features_ + 1
        residual = y - self.pipeline_.predict(F)
        self.residual_std_ = float(np.sqrt(residual @ residual / max(len(y) - n_terms, 1)))

    def _predict(self, F):
        return self.pipeline_.predict(F), np.full(len(F), self.residual_std_)


class GaussianProcessModel(_PerformanceModel):
    """Gaussian-process regression (Matern + white noise, normalised targets) with native std.

    With `linear_mean` the GP models the residual of a linear fit on the features, so it
    extrapolates along the trend instead of reverting to the mean.

    Parameters
    ----------
    nu : float, default=2.5
        Matern smoothness.
    linear_mean : bool, default=True
    n_restarts_optimizer : int, default=0
    random_state : int or None, default=0
    kernel : scikit-learn kernel or None, default=None
        Starting kernel (its hyperparameters are then optimised); None means
        Constant * Matern(nu) + White on standardised features.
    optimize : bool, default=True
        False keeps `kernel` as it is.

    Attributes
    ----------
    scaler_, trend_ (LinearRegression or None), gp_ (GaussianProcessRegressor, or None when the
    linear trend fits exactly).
    """

    has_native_std = True

    def __init__(self, nu=2.5, linear_mean=True, n_restarts_optimizer=0, random_state=0, kernel=None, optimize=True):
        self.nu = nu
        self.linear_mean = linear_mean
        self.n_restarts_optimizer = n_restarts_optimizer
        self.random_state = random_state
        self.kernel = kernel
        self.optimize = optimize

    def warm_start_params(self) -> dict:
        """Keep this fit's kernel in a clone (for fast CV folds: only the GP weights are re-solved)."""
        check_is_fitted(self)
        return {} if self.gp_ is None else {"kernel": self.gp_.kernel_, "optimize": False}

    def _fit(self, F, y):
        self.scaler_ = StandardScaler().fit(F)
        Z = self.scaler_.transform(F)
        self.trend_ = LinearRegression().fit(Z, y) if self.linear_mean else None
        residual = y - self.trend_.predict(Z) if self.linear_mean else y
        # Bounds in standardised units: length scales below 0.1 would treat neighbouring grid
        # values as unrelated, and a noise floor of 1e-6 keeps noiseless tables well conditioned.
        kernel = self.kernel
        if kernel is None:
            kernel = ConstantKernel(1.0, (1e-2, 1e3)) * Matern(
                length_scale=np.ones(2), length_scale_bounds=(0.1, 1e2), nu=self.nu
            ) + WhiteKernel(1e-2, (1e-6, 1.0))
        self.gp_ = GaussianProcessRegressor(
            kernel,
            normalize_y=True,
            n_restarts_optimizer=self.n_restarts_optimizer,
            random_state=self.random_state,
            optimizer="fmin_l_bfgs_b" if self.optimize or self.kernel is None else None,
        )
        if self.trend_ is not None and np.std(residual) <= 1e-9 * max(np.std(y), 1e-300):
            self.gp_ = None  # the trend is exact (a noiseless plane): nothing left for a GP to learn
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.gp_.fit(Z, residual)

    def _predict(self, F):
        Z = self.scaler_.transform(F)
        if self.gp_ is None:
            mean, std = np.zeros(len(Z)), np.zeros(len(Z))
        else:
            mean, std = self.gp_.predict(Z, return_std=True)
        if self.trend_ is not None:
            mean = mean + self.trend_.predict(Z)
        return mean, std
