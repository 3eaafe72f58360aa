"""Performance models with the structure real (N, s) surfaces share.

- `MonotoneGPModel` (accuracy): a trend that cannot rise with N or s (a separable parametric
  family whose slopes are constrained to be <= 0, solved by non-negative least squares, which may
  hold flat until a pruning knee), plus a Gaussian process on its residual. The trend's own
  error (every fitted parameter, shape included, by the delta method) enters the std; with the
  GP, the trend is the GP's explicit basis (Rasmussen and Williams 2006, section 2.7): its
  parameters are weighed by the GP's covariance of the rows, and only what the GP cannot learn
  from nearby rows adds to the std. Each row's known measurement variance (binomial, from
  `eval_examples`) enters the GP as its own noise, so the posterior at a measured point combines
  the measurement with its neighbours; the extra noise beyond it is fitted by restricted
  likelihood, so the trend's parameters do not make it look smaller than it is.
  `predict(..., return_std=True)` gives the std of the *true* value (the fitted extra noise is
  left out).
- `AdditiveThroughputModel` (log throughput): a free level per N (which can peak at a middle N
  when demultiplexing costs grow) plus a shared quadratic in z = -log(1 - s) and an N x z term,
  i.e. throughput multiplicative in a part from N and a part from pruning. Given `flops` (FLOPs
  per example of each row), it models log efficiency = log(throughput x FLOPs) that way instead
  and predicts FLOPs at any (N, s) as A_N (1 - s) + B_N (a prunable and a fixed part per N).

>>> import numpy as np
>>> X = np.array([[n, s] for n in (1, 2, 4) for s in (0.0, 0.5, 0.8)])
>>> y = np.log(100 * X[:, 0] / (1 - X[:, 1]))
>>> model = AdditiveThroughputModel().fit(X, y)
>>> bool(abs(np.exp(model.predict([[2, 0.7]])[0]) - 100 * 2 / 0.3) < 1.0)
True
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.linalg import cho_solve
from scipy.optimize import minimize, nnls
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from autoprumux.meta.models import _PerformanceModel
from autoprumux.meta.results import mux_sparsity_features
from autoprumux.meta.terms import (
    additive_mean,
    additive_terms,
    monotone_design,
    monotone_trend,
    trend_jacobian,
    trend_variance,
)

MUX_POWERS = np.linspace(-1.0, 2.0, 7)
SPARSITY_POWERS = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
#: knees of the sparsity term, in z = -log(1 - s): none, and s = 0.5, 0.6, 0.7
KNEES = -np.log1p(-np.array([0.0, 0.5, 0.6, 0.7]))
#: ridge of the free-sign trend's slopes, relative to each column's sum of squares: no sign bound
#: holds a direction the rows barely determine (a knee just under a measured sparsity, with one
#: row beyond it, made two columns equal but for 1e-14 and their slopes +-1e11)
FREE_RIDGE = 1e-4


def fit_monotone_trend(
    F: np.ndarray, y: np.ndarray, weights: np.ndarray, monotone: bool = True, shape=None
) -> tuple[np.ndarray, np.ndarray]:
    """(coef [intercept, -slopes...], shape (p, q, knee)) of the best non-increasing separable
    trend (weighted least squares, slopes >= 0 on the negated columns; unless `monotone`, any
    sign with a ridge of `FREE_RIDGE`): a grid of shapes, then a local search; or at the given `shape` ((p, q) means no
    knee). A knee is kept only when it lowers the weighted residual enough to pay for its
    parameter (BIC), and it stays below the highest measured sparsity, so it never hides a fall no
    row could show."""
    w = np.sqrt(weights / weights.mean())
    # np.average's own arithmetic, without its checks: solve runs some 500 times per fit
    total, row_weights = weights.sum(), weights[:, None]
    mean_y = np.multiply(y, weights).sum() / total
    b = (y - mean_y) * w

    def solve(shape):
        D = -monotone_design(F, *shape)
        mean_d = np.multiply(D, row_weights).sum(axis=0) / total
        A = (D - mean_d) * w[:, None]
        if monotone:
            slopes, residual = nnls(A, b)
        else:  # no sign bounds a direction the rows barely determine: a small ridge does
            penalty = np.diag(np.sqrt(FREE_RIDGE) * np.linalg.norm(A, axis=0))
            slopes = np.linalg.lstsq(np.vstack([A, penalty]), np.r_[b, np.zeros(len(penalty))], rcond=None)[0]
            residual = float(np.linalg.norm(A @ slopes - b))
        return residual, np.concatenate(([mean_y - mean_d @ slopes], -slopes))

    if shape is not None:
        shape = np.r_[np.asarray(shape, float), np.zeros(3 - len(shape))]  # (p, q) means no knee
        return solve(shape)[1], shape

    def search(knees, top_knee):
        grid = [(p, q, k) for p in MUX_POWERS for q in SPARSITY_POWERS for k in knees]
        start = min(grid, key=lambda shape: solve(shape)[0])
        bounds = [(MUX_POWERS[0], MUX_POWERS[-1]), (SPARSITY_POWERS[0], SPARSITY_POWERS[-1]), (0.0, top_knee)]
        local = minimize(lambda shape: solve(shape)[0], start, method="Nelder-Mead", bounds=bounds,
                         options={"maxiter": 120, "xatol": 1e-3, "fatol": 1e-12})  # fmt: skip
        shape = local.x if local.fun < solve(start)[0] else np.asarray(start, float)
        return solve(shape)[0], np.asarray(shape, float)

    rss, shape = search([0.0], 0.0)
    # a knee needs measured sparsities beyond it, and must pay for its parameter (BIC)
    top_knee = float(np.sort(np.unique(F[:, 1]))[-2]) if len(np.unique(F[:, 1])) > 2 else 0.0
    if top_knee > 0:
        knee_rss, knee_shape = search([k for k in KNEES if k <= top_knee + 1e-12], top_knee)
        n = len(y)
        # n log(rss^2 / knee_rss^2) > log n, in logs: squares of residuals under 1e-154 underflow
        if 2 * n * (np.log(max(rss, 1e-300)) - np.log(max(knee_rss, 1e-300))) > np.log(n):
            shape = knee_shape
    return solve(shape)[1], shape


class MonotoneGPModel(_PerformanceModel):
    """Accuracy: a non-increasing separable trend in (N, s) plus a GP on its residual.

    Parameters
    ----------
    nu : float, default=2.5
        Matern smoothness of the residual GP.
    residual_gp : bool, default=True
        False keeps the parametric trend alone (its std is then the residual spread).
    monotone : bool, default=True
        False lets the trend's slopes take any sign (the same family, unconstrained).
    random_state : int or None, default=0
    fixed_powers, fixed_kernel : default=None
        Hyperparameters to keep instead of searching (the trend's shape (p, q) or (p, q, knee),
        the GP's fitted kernel);
        `warm_start_params()` returns a fit's own, so cross-validation folds only re-solve the
        linear and GP weights.
    powers_estimated : bool or None, default=None
        Whether the trend's error counts its powers as estimated from the rows (None: when they
        are searched). `conditioning_params()` keeps a fit's powers and says they were estimated,
        so a clone conditioned on one more row keeps the fit's uncertainty about them.
    noise_dof : float or None, default=None
        Degrees of freedom of the noise (None: from this fit's rows). `conditioning_params()`
        keeps a fit's, as its kernel keeps the noise itself: a fantasy row is no evidence on it.

    Attributes
    ----------
    trend_coef_, trend_powers_ : the trend (trend_powers_ = p, q, knee); scaler_mean_, scaler_scale_ : feature standardisation;
    powers_estimated_ : whether the trend's error counted its powers as estimated; y_scale_ : residual
    scale; gp_ : fitted GaussianProcessRegressor or None; noise_ : fitted
    variance of a measurement beyond its known (binomial) variance, in accuracy units squared: the
    GP's white noise, or without the GP the trend's residual variance less the known mean
    (training-seed noise where the binomial variance is known, all the noise where it is not);
    noise_dof_ : effective degrees of freedom of a measurement's variance (`noise_degrees_of_freedom`:
    the rows less the trend's fitted parameters, more where a known variance carries most of it);
    residual_std_ : trend-only residual spread; trend_cov_ : covariance of the trend's parameters;
    train_jacobian_ : the trend's Jacobian at the training rows (zero for parameters not fitted),
    or None without the GP.
    """

    has_native_std = True

    def __init__(self, nu=2.5, residual_gp=True, monotone=True, random_state=0, fixed_powers=None, fixed_kernel=None,
                 powers_estimated=None, noise_dof=None):  # fmt: skip
        self.nu = nu
        self.residual_gp = residual_gp
        self.monotone = monotone
        self.random_state = random_state
        self.fixed_powers = fixed_powers
        self.fixed_kernel = fixed_kernel
        self.powers_estimated = powers_estimated
        self.noise_dof = noise_dof

    def warm_start_params(self) -> dict:
        """This fit's GP kernel, for clones fitted on most of the same data (the trend's powers are
        searched again: they drive extrapolation, so their variability belongs in the held-out
        error that calibrates the std)."""
        return {"fixed_kernel": None if self.gp_ is None else self.gp_.kernel_}

    def conditioning_params(self) -> dict:
        """Every hyperparameter of this fit (the GP's kernel, the trend's powers, the noise's
        degrees of freedom), for a clone that conditions on one more row without re-estimating them."""
        return {**self.warm_start_params(), "fixed_powers": tuple(self.trend_powers_),
                "powers_estimated": self.powers_estimated_, "noise_dof": self.noise_dof_}  # fmt: skip

    def fit(self, X, y, noise_variance=None):
        """Fit on `X` = [[mux, sparsity], ...], accuracies `y` and optionally each row's known
        measurement variance (NaN where unknown)."""
        X, y = self._check_X(X, y, reset=True)
        F = mux_sparsity_features(X)
        known = np.zeros(len(y)) if noise_variance is None else np.nan_to_num(np.asarray(noise_variance, float))
        weights = 1.0 / (known + max(np.var(y) * 1e-3, 1e-6))
        self.trend_coef_, self.trend_powers_ = fit_monotone_trend(F, y, weights, self.monotone, self.fixed_powers)
        residual = y - monotone_trend(F, self.trend_coef_, *self.trend_powers_)
        searched = self.powers_estimated_ = self.fixed_powers is None if self.powers_estimated is None else self.powers_estimated
        fitted = np.r_[np.ones(4, bool), searched, searched, searched and self.trend_powers_[2] > 0]
        dof = max(len(y) - int(fitted.sum()), 1)
        self.residual_std_ = float(np.sqrt(residual @ residual / dof))
        self.scaler_mean_, self.scaler_scale_ = F.mean(axis=0), np.where(F.std(axis=0) > 0, F.std(axis=0), 1.0)
        self.y_scale_ = max(float(np.std(residual)), float(np.sqrt(known.mean())), 1e-4)
        # noise_: a measurement's variance around the true value beyond its known variance
        # (training-seed noise, or misfit); without a GP, the residual spread beyond the known part
        self.gp_, self.noise_ = None, max(self.residual_std_**2 - float(known.mean()), 0.0)
        jacobian = trend_jacobian(F, self.trend_coef_, *self.trend_powers_)
        if self.residual_gp and len(y) >= 4:
            Z = (F - self.scaler_mean_) / self.scaler_scale_
            self._fit_gp(Z, residual / self.y_scale_, known, jacobian[:, fitted])
        if self.gp_ is None:
            # the trend's own error uses its residual spread
            self.trend_cov_ = trend_covariance(jacobian, np.maximum(known, self.residual_std_**2), fitted)
            self.train_jacobian_ = None
        else:
            # with the GP, the trend's parameters are weighed by the GP's covariance of the rows
            # (Rasmussen and Williams 2006, section 2.7), and `_predict` removes from the trend's
            # error what the GP already learns from nearby rows
            self.train_jacobian_ = jacobian * fitted[None, :]
            weighted = cho_solve((self.gp_.L_, True), self.train_jacobian_) / self.y_scale_**2
            self.trend_cov_ = trend_covariance_from_gram(self.train_jacobian_.T @ weighted, fitted)
        self.noise_dof_ = (
            noise_degrees_of_freedom(dof, float(known.mean()), self.noise_) if self.noise_dof is None else self.noise_dof
        )
        return self

    def _fit_gp(self, Z, r, known, basis):
        # Bounds in standardised units: length scales under 0.7 would let the GP treat neighbouring
        # grid values as unrelated and interpolate noise; the noise floor (5% of the residual
        # variance) keeps the likelihood from explaining every residual as signal.
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(
            np.ones(2), length_scale_bounds=(0.7, 1e2), nu=self.nu
        ) + WhiteKernel(0.1, (0.05, 2.0))
        alpha = known / self.y_scale_**2 + 1e-8
        if self.fixed_kernel is not None:
            kernel, optimizer = self.fixed_kernel, None
        else:
            optimizer = RestrictedNoiseOptimizer(kernel, Z, r, alpha, basis)
        gp = GaussianProcessRegressor(
            kernel, alpha=alpha, normalize_y=False, optimizer=optimizer, random_state=self.random_state
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.gp_ = gp.fit(Z, r)
        self.noise_ = float(self.gp_.kernel_.k2.noise_level) * self.y_scale_**2

    def _predict(self, F):
        mean = monotone_trend(F, self.trend_coef_, *self.trend_powers_)
        if self.gp_ is None:  # the trend alone: its own error (the residual spread is noise_)
            return mean, np.sqrt(trend_variance(F, self.trend_cov_, self.trend_coef_, *self.trend_powers_))
        # the GP posterior from one cross-covariance: its mean, its latent variance (white noise
        # left out) and the rows' weights K^-1 k* that the trend's explicit-basis error needs
        Z = (F - self.scaler_mean_) / self.scaler_scale_
        latent_kernel = self.gp_.kernel_.k1
        cross = latent_kernel(self.gp_.X_train_, Z)
        weights = cho_solve((self.gp_.L_, True), cross)
        residual = cross.T @ self.gp_.alpha_
        latent = np.maximum(latent_kernel.diag(Z) - np.einsum("ij,ij->j", cross, weights), 0.0)
        trend_var = trend_variance(
            F, self.trend_cov_, self.trend_coef_, *self.trend_powers_,
            train_jacobian=self.train_jacobian_, weights=weights,
        )  # fmt: skip
        return mean + residual * self.y_scale_, np.sqrt(latent * self.y_scale_**2 + trend_var)


class RestrictedNoiseOptimizer:
    """A `GaussianProcessRegressor` optimizer for the residual GP (a class, so that fitted models
    pickle): the kernel by maximum likelihood (from two starts), then its white-noise level by the
    restricted (REML) likelihood, with the trend's fitted parameters (`basis`: its Jacobian at the
    rows) integrated out (Rasmussen and Williams 2006, eq. 2.45). The trend's p parameters leave its
    residuals n - p degrees of freedom, so plain maximum likelihood puts the noise variance near
    (n - p) / n of the truth: with 20 rows and a 7-parameter trend, a third short (0.68 of it against
    REML's 0.95 on a known noise, see the tests). Only the noise level is restricted: a smooth
    component in the trend's span is not identified under REML, whose fit then let the GP's
    amplitude drift up to its bound and raised violations with training noise on the generated suite
    (7.8% to 10.9%). Plain likelihood throughout when the basis leaves fewer than 3 degrees of
    freedom. The kernel's amplitude must be its first hyperparameter and the white noise its last."""

    def __init__(self, kernel, Z, r, alpha, basis):
        self.kernel, self.Z, self.r, self.alpha = kernel, Z, r, alpha
        u, singular, _ = np.linalg.svd(basis, full_matrices=False)
        self.U = u[:, singular > 1e-8 * max(singular.max(initial=0.0), 1e-300)]

    def __call__(self, obj_func, initial_theta, bounds):
        # two starts: the kernel's own, and one that explains the residuals as noise (amplitude at
        # its lower bound, white noise at the residuals' whole variance). From the first alone
        # the likelihood can stop in a rough-signal mode with the noise at its floor when the
        # noise mode is more likely (a table with one point of training noise: -32.5 against
        # -31.3), and the bound then trusts each noisy row as if it were the truth.
        noise_start = np.r_[bounds[0, 0], initial_theta[1:-1], np.clip(0.0, *bounds[-1])]
        starts = (initial_theta, noise_start)
        fits = [minimize(obj_func, x0, jac=True, method="L-BFGS-B", bounds=bounds) for x0 in starts]
        result = min(fits, key=lambda fit: fit.fun)
        theta = result.x.copy()
        if len(self.r) - self.U.shape[1] < 3:
            return theta, result.fun
        noise = minimize(self.restricted, theta[-1:], args=(theta,), jac=True, method="L-BFGS-B", bounds=bounds[-1:])
        theta[-1] = noise.x[0]
        return theta, obj_func(theta, eval_gradient=False)

    def restricted(self, log_noise, theta):
        """Minus the restricted log likelihood (up to a constant) at `theta` with its last entry,
        the log white noise, set to `log_noise`; and its derivative in the log noise, which adds
        noise x I to the covariance."""
        theta = np.r_[theta[:-1], log_noise]
        K = self.kernel.clone_with_theta(theta)(self.Z)
        K[np.diag_indices_from(K)] += self.alpha
        try:
            L = np.linalg.cholesky(K)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros(1)
        Kinv_U = cho_solve((L, True), self.U)
        A = self.U.T @ Kinv_U
        P = cho_solve((L, True), np.eye(len(self.r))) - Kinv_U @ np.linalg.solve(A, Kinv_U.T)
        Pr = P @ self.r
        value = 0.5 * self.r @ Pr + np.log(np.diag(L)).sum() + 0.5 * np.linalg.slogdet(A)[1]
        return value, np.exp(log_noise) * (0.5 * np.trace(P) - 0.5 * Pr @ Pr)


def noise_degrees_of_freedom(dof: int, known: float, fitted: float) -> float:
    """Effective degrees of freedom of a measurement's variance, `known` (binomial, exact) plus
    `fitted` (estimated from residuals with `dof` degrees of freedom), by Welch-Satterthwaite:
    dof ((known + fitted) / fitted)^2. Infinite when nothing was fitted beyond a known variance;
    `dof` when nothing is known. With a 7-parameter trend on 8 rows the noise rests on one degree
    of freedom: its estimate is often a small fraction of the truth (on generated Gaussian tables of 8
    configurations, at most a sixteenth of the rows' squared error in one fit of ten), and the
    predictive distribution is Student's t, not normal (`optimizer.few_dof_widening`)."""
    if fitted <= 0.0:
        return math.inf if known > 0.0 else float(dof)
    return float(dof) * ((known + fitted) / fitted) ** 2


def trend_covariance(J: np.ndarray, noise_variance: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Covariance of the trend's parameters (intercept, slopes..., p, q, knee) by the delta
    method: the inverse weighted Gram matrix of its Jacobian J on rows with the given noise
    variances. The searched shape parameters count like the slopes, so their error widens the bound
    where the trend extrapolates; those not fitted (`fitted` False: given, or a knee left at
    zero) get no variance."""
    return trend_covariance_from_gram(J.T @ (J / np.maximum(noise_variance, 1e-12)[:, None]), fitted)


def trend_covariance_from_gram(gram: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """The inverse of the Gram matrix J' W J over the fitted parameters (zero for the others)."""
    free = np.flatnonzero(fitted)
    gram = gram[np.ix_(free, free)]
    cov = np.zeros((len(fitted), len(fitted)))
    cov[np.ix_(free, free)] = np.linalg.pinv(gram + 1e-9 * np.trace(gram) * np.eye(len(free)))
    return cov


class AdditiveThroughputModel(_PerformanceModel):
    """Log throughput (or log efficiency, with FLOPs) = level(N) + b1 z + b2 z^2 + c log N z.

    Levels of N values never measured are interpolated linearly in log N (and extrapolated
    along the end slope).

    Parameters
    ----------
    alpha : float, default=1e-6
        Ridge penalty on the shared terms.

    Attributes
    ----------
    mux_levels_ : log N of each measured N; level_ : their levels; coef_ : (b1, b2, c);
    flops_ : (log N, A_N, B_N) rows of the FLOPs model, or None; residual_std_.
    """

    def __init__(self, alpha=1e-6):
        self.alpha = alpha

    def fit(self, X, y, flops=None):
        """Fit on `X` = [[mux, sparsity], ...], log throughputs `y` and optionally FLOPs per example."""
        X, y = self._check_X(X, y, reset=True)
        F = mux_sparsity_features(X)
        self.flops_ = None
        if flops is not None and np.all(np.isfinite(flops)) and np.all(np.asarray(flops) > 0):
            self.flops_ = fit_flops(X, np.asarray(flops, float))
            y = y + np.log(flops)
        self.mux_levels_ = np.unique(F[:, 0])
        onehot = (F[:, [0]] == self.mux_levels_[None, :]).astype(float)
        shared = additive_terms(F)
        design = np.column_stack([onehot, shared])
        penalty = np.diag(np.r_[np.zeros(onehot.shape[1]), np.full(shared.shape[1], self.alpha)])
        coef = np.linalg.lstsq(design.T @ design + penalty + 1e-10 * np.eye(design.shape[1]), design.T @ y, rcond=None)[0]
        self.level_, self.coef_ = coef[: onehot.shape[1]], coef[onehot.shape[1] :]
        residual = y - design @ coef
        self.residual_std_ = float(np.sqrt(residual @ residual / max(len(y) - len(coef), 1)))
        return self

    def _predict(self, F):
        mean = additive_mean(F, self.mux_levels_, self.level_, self.coef_, self.flops_)
        return mean, np.full(len(F), self.residual_std_)


def fit_flops(X: np.ndarray, flops: np.ndarray) -> np.ndarray:
    """Rows (log N, A_N, B_N) with FLOPs = A_N (1 - s) + B_N per measured N (non-negative least
    squares); an N measured at one sparsity borrows the median fixed share B / (A + B)."""
    rows, single = [], []
    for mux in np.unique(X[:, 0]):
        at = X[:, 0] == mux
        keep = 1.0 - X[at, 1]
        if np.ptp(keep) > 1e-6:
            (a, b), _ = nnls(np.column_stack([keep, np.ones(at.sum())]), flops[at])
            rows.append([np.log(mux), a, b])
        else:
            single.append((mux, float(keep.mean()), float(flops[at].mean())))
    shares = [b / (a + b) for _, a, b in rows if a + b > 0]
    share = float(np.median(shares)) if shares else 0.05
    for mux, keep, value in single:  # value = A (keep + share / (1 - share))
        a = value / (keep + share / (1.0 - share))
        rows.append([np.log(mux), a, a * share / (1.0 - share)])
    return np.array(sorted(rows))
