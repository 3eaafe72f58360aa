"""Fitted performance models as plain arrays, so `recommend` can predict without scikit-learn.

Importing scikit-learn costs about a second of CPU, most of `recommend`'s start-up. `save_models`
therefore also writes `performance_models.npz` beside the table: each chosen model's parameters
as numpy arrays (no pickle), and this module predicts from them with numpy alone: the separable
model's formula, the ridge pipeline's standardise -> polynomial -> standardise -> linear map, the
GP posterior mean and std (Matern with nu in {0.5, 1.5, 2.5, inf} + white noise on the
linear-trend residual), the monotone trend + residual GP (`structured.MonotoneGPModel`, with the
trend's own variance as the GP's explicit basis) and the additive throughput model with its FLOPs part. Stds are multiplied
by the saved calibration factor, and the accuracy model's degrees of freedom are kept for
`optimizer.few_dof_widening`. `tests/test_meta_models.py` checks the results equal scikit-learn's.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from autoprumux import __version__
from autoprumux.meta.results import TARGETS, Results, mux_sparsity_features
from autoprumux.meta.terms import additive_mean, monotone_trend, trend_variance
from autoprumux.table import write_atomically

COMPILED_FILENAME = "performance_models.npz"
_FORMAT = 11
_MATERN = {
    0.5: lambda d: np.exp(-d),
    1.5: lambda d: (1.0 + np.sqrt(3.0) * d) * np.exp(-np.sqrt(3.0) * d),
    2.5: lambda d: (1.0 + np.sqrt(5.0) * d + 5.0 / 3.0 * d**2) * np.exp(-np.sqrt(5.0) * d),
    np.inf: lambda d: np.exp(-0.5 * d**2),
}


class CompiledTarget:
    """One target's chosen model as arrays; `predict(X)` -> (mean, std) like `TargetModel`."""

    def __init__(self, kind: str, arrays: dict[str, np.ndarray], std_source: str, cv_rmse: float,
                 std_scale: float = 1.0, dof: float = math.inf):  # fmt: skip
        self.kind, self.arrays, self.std_source = kind, arrays, std_source
        self.cv_rmse, self.std_scale, self.dof = cv_rmse, std_scale, dof

    def predict(self, X) -> tuple[np.ndarray, np.ndarray]:
        F = mux_sparsity_features(np.asarray(X, dtype=float))
        mean, std = getattr(self, f"_predict_{self.kind}")(F)
        if self.std_source == "cv":
            return mean, np.full(len(mean), self.cv_rmse)
        return mean, std * self.std_scale

    def _predict_separable(self, F):
        a = self.arrays
        p, q = float(a["mux_power"]), float(a["sparsity_power"])
        mux_term = F[:, 0] if abs(p) < 1e-9 else np.expm1(p * F[:, 0]) / p
        columns = [np.ones(len(F)), mux_term, F[:, 1] ** q]
        if len(a["coef"]) == 4:
            columns.append(mux_term * F[:, 1] ** q)
        return np.column_stack(columns) @ a["coef"], np.full(len(F), float(a["residual_std"]))

    def _predict_ridge(self, F):
        a = self.arrays
        Z = (F - a["mean1"]) / a["scale1"]
        P = np.prod(Z[:, None, :] ** a["powers"][None, :, :], axis=2)
        mean = ((P - a["mean2"]) / a["scale2"]) @ a["coef"] + float(a["intercept"])
        return mean, np.full(len(F), float(a["residual_std"]))

    def _predict_gp(self, F):
        a = self.arrays
        Z = (F - a["mean"]) / a["scale"]
        trend = (
            Z @ a["trend_coef"] + float(a["trend_intercept"]) if a["trend_coef"].size else np.zeros(len(Z))
        )
        if not a["X_train"].size:
            return trend, np.zeros(len(Z))
        mean, latent = _gp_posterior(a, Z)
        var = np.maximum(latent + float(a["noise"]), 0.0)
        y_mean, y_std = float(a["y_mean"]), float(a["y_std"])
        return trend + y_mean + y_std * mean, y_std * np.sqrt(var)

    def _predict_monotone_gp(self, F):
        a = self.arrays
        shape = a["trend_powers"]
        mean = monotone_trend(F, a["trend_coef"], *shape)
        if not a["X_train"].size:
            return mean, np.sqrt(trend_variance(F, a["trend_cov"], a["trend_coef"], *shape))
        residual, latent, weights = _gp_posterior(a, (F - a["mean"]) / a["scale"], with_weights=True)
        var = trend_variance(
            F, a["trend_cov"], a["trend_coef"], *shape, train_jacobian=a["train_jacobian"], weights=weights
        )
        y_scale = float(a["y_scale"])
        return mean + y_scale * residual, np.sqrt(np.maximum(latent, 0.0) * y_scale**2 + var)

    def _predict_additive(self, F):
        a = self.arrays
        mean = additive_mean(F, a["knots"], a["levels"], a["coef"], a["flops"] if a["flops"].size else None)
        return mean, np.full(len(F), float(a["residual_std"]))


def _gp_posterior(a: dict[str, np.ndarray], Z: np.ndarray, with_weights: bool = False) -> tuple:
    """GP mean and latent variance (without the white noise) in the GP's own units; with
    `with_weights`, also K^-1 k* (the training rows' weights, one column per point of Z)."""
    diff = (Z[:, None, :] - a["X_train"][None, :, :]) / a["length_scale"]
    k = float(a["constant"]) * _MATERN[float(a["nu"])](np.sqrt((diff**2).sum(axis=2)))
    v = np.linalg.solve(a["L"], k.T)  # L is lower triangular
    mean, latent = k @ a["alpha"], float(a["constant"]) - (v**2).sum(axis=0)
    if not with_weights:
        return mean, latent
    return mean, latent, np.linalg.solve(a["L"].T, v)


def predict_targets(accuracy, throughput, X) -> dict[str, np.ndarray]:
    """Both targets' (mean, std) at `X`, by the name `recommend` reads them: accuracy (fraction,
    the std of the true accuracy) and log throughput (log examples/s). For `FittedModels` and
    `CompiledModels` alike."""
    acc, acc_std = accuracy.predict(X)
    log_thr, log_thr_std = throughput.predict(X)
    return {"accuracy": acc, "accuracy_std": acc_std, "log_throughput": log_thr, "log_throughput_std": log_thr_std}


class CompiledModels:
    """Light stand-in for `FittedModels` with what `recommend` needs: `predict` and `summary`."""

    def __init__(self, targets: dict[str, CompiledTarget], summary: dict, fingerprint: str):
        self.accuracy, self.throughput = targets["accuracy"], targets["throughput"]
        self._summary, self.fingerprint = summary, fingerprint

    def predict(self, X) -> dict[str, np.ndarray]:
        return predict_targets(self.accuracy, self.throughput, X)

    def summary(self) -> dict:
        return dict(self._summary)


def compile_target(target) -> tuple[str, dict[str, np.ndarray]] | None:
    """The arrays of a fitted `TargetModel`'s estimator, or None for a model this module cannot
    evaluate (then `recommend` falls back to the scikit-learn models)."""
    from autoprumux.meta.models import GaussianProcessModel, PolynomialRidgeModel, SeparableModel
    from autoprumux.meta.structured import AdditiveThroughputModel, MonotoneGPModel

    est = target.estimator
    if isinstance(est, MonotoneGPModel):
        return _compile_monotone_gp(est)
    if isinstance(est, AdditiveThroughputModel):
        return "additive", {
            "knots": est.mux_levels_, "levels": est.level_, "coef": est.coef_,
            "flops": np.empty(0) if est.flops_ is None else est.flops_,
            "residual_std": np.float64(est.residual_std_),
        }  # fmt: skip
    if isinstance(est, SeparableModel):
        return "separable", {
            "coef": est.coef_,
            "mux_power": np.float64(est.mux_power_),
            "sparsity_power": np.float64(est.sparsity_power_),
            "residual_std": np.float64(est.residual_std_),
        }
    if isinstance(est, PolynomialRidgeModel):
        scale1, poly, scale2, ridge = (step for _, step in est.pipeline_.steps)
        return "ridge", {
            "mean1": scale1.mean_, "scale1": scale1.scale_, "powers": poly.powers_.astype(float),
            "mean2": scale2.mean_, "scale2": scale2.scale_, "coef": ridge.coef_,
            "intercept": np.float64(ridge.intercept_), "residual_std": np.float64(est.residual_std_),
        }  # fmt: skip
    if isinstance(est, GaussianProcessModel):
        return _compile_gp(est)
    return None


def _compile_monotone_gp(est) -> tuple[str, dict[str, np.ndarray]] | None:
    arrays = {
        "trend_coef": est.trend_coef_, "trend_powers": est.trend_powers_, "trend_cov": est.trend_cov_,
        "residual_std": np.float64(est.residual_std_), "mean": est.scaler_mean_, "scale": est.scaler_scale_,
        "y_scale": np.float64(est.y_scale_),
    }  # fmt: skip
    if est.gp_ is None:
        return "monotone_gp", {**arrays, "X_train": np.empty(0)}
    gp = _gp_arrays(est.gp_)
    return None if gp is None else ("monotone_gp", {**arrays, **gp, "train_jacobian": est.train_jacobian_})


def _gp_arrays(gp) -> dict[str, np.ndarray] | None:
    """Training inputs, weights, Cholesky factor and kernel parameters of a fitted
    Constant * Matern + White GaussianProcessRegressor, or None for another kernel."""
    kernel = gp.kernel_
    try:
        constant, matern, white = kernel.k1.k1, kernel.k1.k2, kernel.k2
        ok = (
            type(constant).__name__ == "ConstantKernel"
            and type(matern).__name__ == "Matern"
            and type(white).__name__ == "WhiteKernel"
            and float(matern.nu) in _MATERN
        )
    except AttributeError:
        ok = False
    if not ok:
        return None
    return {
        "X_train": gp.X_train_,
        "alpha": gp.alpha_,
        "L": gp.L_,
        "length_scale": np.asarray(matern.length_scale, dtype=float),
        "nu": np.float64(matern.nu),
        "constant": np.float64(constant.constant_value),
        "noise": np.float64(white.noise_level),
        "y_mean": np.float64(np.ravel(gp._y_train_mean)[0]),
        "y_std": np.float64(np.ravel(gp._y_train_std)[0]),
    }


def _compile_gp(est) -> tuple[str, dict[str, np.ndarray]] | None:
    arrays = {
        "mean": est.scaler_.mean_,
        "scale": est.scaler_.scale_,
        "trend_coef": np.empty(0) if est.trend_ is None else est.trend_.coef_,
        "trend_intercept": np.float64(0.0 if est.trend_ is None else est.trend_.intercept_),
    }
    if est.gp_ is None:
        return "gp", {**arrays, "X_train": np.empty(0)}
    gp = _gp_arrays(est.gp_)
    return None if gp is None else ("gp", {**arrays, **gp})


def compiled_path(results: Results) -> Path:
    """Where the arrays of a table's models are saved: `performance_models.npz` beside it."""
    return Path(results.source).parent / COMPILED_FILENAME


def save_compiled(models, path: str | os.PathLike) -> Path | None:
    """Write the chosen models of `models` (`FittedModels`) as arrays to `path` (atomically);
    returns None, writing nothing, when a chosen model has no array form."""
    path = Path(path)
    payload: dict[str, np.ndarray] = {}
    header = {
        "format": _FORMAT,
        "version": __version__,
        "fingerprint": models.fingerprint,
        "summary": models.summary(),
    }
    for target in TARGETS:
        chosen = getattr(models, target)
        compiled = compile_target(chosen)
        if compiled is None:
            return None
        kind, arrays = compiled
        header[target] = {
            "kind": kind, "std_source": chosen.std_source, "cv_rmse": chosen.cv_rmse, "std_scale": chosen.std_scale,
            "dof": None if math.isinf(chosen.dof) else chosen.dof,  # JSON has no infinity
        }  # fmt: skip
        payload.update({f"{target}.{name}": np.asarray(value, dtype=float) for name, value in arrays.items()})
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a handle, so numpy does not append ".npz" to the name
            np.savez(handle, header=np.array(json.dumps(header)), **payload)

    return write_atomically(path, write)


def load_compiled(results: Results) -> CompiledModels | None:
    """The array form of this table's saved models, if present and fitted on exactly its rows."""
    path = compiled_path(results)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            arrays = {key: data[key] for key in data.files if key != "header"}
    except (OSError, ValueError, KeyError):
        return None
    if (header.get("format"), header.get("version"), header.get("fingerprint")) != (
        _FORMAT,
        __version__,
        results.fingerprint,
    ):
        return None
    targets = {}
    for target in TARGETS:
        info = header[target]
        prefix = f"{target}."
        own = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
        dof = math.inf if info.get("dof") is None else float(info["dof"])
        targets[target] = CompiledTarget(
            info["kind"], own, info["std_source"], float(info["cv_rmse"]), float(info["std_scale"]), dof
        )
    summary = {**header["summary"], "table": results.source}
    return CompiledModels(targets, summary, results.fingerprint)
