"""Fit the performance models of a results table and pick one per target by cross-validation.

Each target (accuracy, and throughput on a log scale) gets every candidate model; the one with
the lowest leave-one-configuration-out error wins (accuracy: mean absolute error in points;
throughput: mean absolute percentage error). Models without a native uncertainty use the RMSE of
their out-of-fold residuals as their predictive standard deviation; a native one (the GP's) is
floored at that RMSE.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import InconsistentVersionWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted

from autoprumux import __version__
from autoprumux.meta.compiled import COMPILED_FILENAME, save_compiled
from autoprumux.meta.models import GaussianProcessModel, PolynomialRidgeModel, SeparableModel
from autoprumux.meta.results import TARGETS, Results
from autoprumux.table import write_atomically

MODELS_FILENAME = "performance_models.joblib"
_FORMAT = 1


def default_candidates() -> dict[str, object]:
    """The candidate models tried for each target, by name."""
    return {"separable": SeparableModel(), "ridge": PolynomialRidgeModel(), "gp": GaussianProcessModel()}


@dataclass
class TargetModel:
    """The chosen model of one target. Throughput is modelled as log(examples/s)."""

    target: str
    name: str
    estimator: object
    std_source: str  # "native" (the model's own, floored at cv_rmse) or "cv" (cv_rmse)
    cv_rmse: float  # on the modelled scale: accuracy fraction, or log throughput

    def predict(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation on the modelled scale at `X` = [[mux, sparsity], ...].

        The std is the out-of-fold RMSE for models without their own; a model's own std is
        floored at it, because a GP that interpolates noisy points claims no uncertainty there.
        """
        mean, std = self.estimator.predict(np.asarray(X, dtype=float), return_std=True)
        if self.std_source == "cv":
            return mean, np.full(len(mean), self.cv_rmse)
        return mean, np.maximum(std, self.cv_rmse)

    def refit(self, X, y) -> TargetModel:
        """The same model type fitted on other data (keeps the CV-based spread)."""
        return TargetModel(
            self.target, self.name, clone(self.estimator).fit(X, y), self.std_source, self.cv_rmse
        )


@dataclass
class FittedModels:
    """Accuracy and throughput models of one table, with the cross-validation table behind them.

    `cv` has one row per (target, model): `error` (accuracy: MAE in points; throughput: MAPE in
    percent), `rmse` (on the modelled scale) and `chosen`.
    """

    accuracy: TargetModel
    throughput: TargetModel
    cv: pd.DataFrame
    fingerprint: str
    source: str
    n_rows: int
    n_configurations: int
    X: np.ndarray = field(repr=False)
    y: dict[str, np.ndarray] = field(repr=False)
    folds: int = 0  # cross-validation folds (= n_configurations: leave-one-configuration-out)
    format: int = _FORMAT
    version: str = __version__

    def predict(self, X) -> dict[str, np.ndarray]:
        """Predictions at `X` = [[mux, sparsity], ...]: accuracy mean/std (fraction) and
        log-throughput mean/std (log examples/s)."""
        acc, acc_std = self.accuracy.predict(X)
        log_thr, log_thr_std = self.throughput.predict(X)
        return {
            "accuracy": acc,
            "accuracy_std": acc_std,
            "log_throughput": log_thr,
            "log_throughput_std": log_thr_std,
        }

    def summary(self) -> dict:
        """A JSON-ready description: chosen model and CV error per target, and the table used."""
        out: dict = {"table": self.source, "configurations": self.n_configurations, "rows": self.n_rows}
        for target in TARGETS:
            chosen: TargetModel = getattr(self, target)
            row = self.cv[(self.cv["target"] == target) & (self.cv["model"] == chosen.name)].iloc[0]
            out[target] = {
                "model": chosen.name,
                "cv_error": float(row["error"]),
                "cv_error_unit": str(row["unit"]),
                "std_source": chosen.std_source,
            }
        return out


def configuration_folds(results: Results, max_folds: int = 30) -> np.ndarray:
    """One fold number per row: its grid point's index (leave-one-configuration-out), or, for
    tables with more than `max_folds` configurations, that index dealt into `max_folds` folds
    (grouped K-fold, deterministic), which keeps fitting time bounded on dense grids."""
    keys = results.rows[["mux", "config_sparsity"]].astype(float)
    groups = keys.groupby(["mux", "config_sparsity"], sort=True).ngroup().to_numpy()
    n_groups = int(groups.max()) + 1
    if n_groups <= max_folds:
        return groups
    order = np.random.default_rng(0).permutation(n_groups)
    return order[groups] % max_folds


def out_of_fold_predictions(estimator, X, y, groups) -> np.ndarray:
    """Leave-one-group-out predictions of clones of `estimator` for every row. A fitted
    `estimator` seeds each clone with its `warm_start_params()` (same model, faster search)."""
    warm = (
        estimator.warm_start_params()
        if hasattr(estimator, "warm_start_params") and _is_fitted(estimator)
        else {}
    )
    predictions = np.empty(len(y))
    for group in np.unique(groups):
        held = groups == group
        model = clone(estimator).set_params(**warm)
        predictions[held] = model.fit(X[~held], y[~held]).predict(X[held])
    return predictions


def _is_fitted(estimator) -> bool:
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


def _cv_row(target, name, y, oof):
    residual = y - oof
    if target == "accuracy":
        error, unit = 100.0 * np.mean(np.abs(residual)), "MAE, points"
    else:
        error, unit = 100.0 * np.mean(np.abs(np.expm1(-residual))), "MAPE, %"
    rmse = float(np.sqrt(np.mean(residual**2)))
    return {"target": target, "model": name, "error": float(error), "unit": unit, "rmse": rmse}


def fit_performance_models(
    results: Results, candidates: dict[str, object] | None = None, max_folds: int = 30
) -> FittedModels:
    """Fit every candidate model (default: `default_candidates()`) to accuracy and log
    throughput, and choose one per target by leave-one-configuration-out CV (grouped
    `max_folds`-fold CV on larger tables, see `configuration_folds`)."""
    candidates = candidates or default_candidates()
    X = results.features
    y = {
        "accuracy": results.rows["accuracy"].to_numpy(dtype=float),
        "throughput": np.log(results.rows["throughput"].to_numpy(dtype=float)),
    }
    groups = configuration_folds(results, max_folds)
    rows, chosen = [], {}
    for target in TARGETS:
        fitted = {name: clone(est).fit(X, y[target]) for name, est in candidates.items()}
        scores = [
            _cv_row(target, name, y[target], out_of_fold_predictions(est, X, y[target], groups))
            for name, est in fitted.items()
        ]
        best = min(scores, key=lambda row: row["error"])
        for row in scores:
            rows.append({**row, "chosen": row is best})
        estimator = fitted[best["model"]]
        std_source = "native" if getattr(estimator, "has_native_std", False) else "cv"
        chosen[target] = TargetModel(target, best["model"], estimator, std_source, best["rmse"])
    return FittedModels(
        accuracy=chosen["accuracy"],
        throughput=chosen["throughput"],
        cv=pd.DataFrame(rows),
        fingerprint=results.fingerprint,
        source=results.source,
        n_rows=len(results.rows),
        n_configurations=len(results.configurations),
        X=X,
        y=y,
        folds=int(groups.max()) + 1,
    )


def models_path(results: Results) -> Path:
    """Where the models of a table are saved: `performance_models.joblib` beside the table."""
    return Path(results.source).parent / MODELS_FILENAME


def save_models(models: FittedModels, path: str | os.PathLike) -> Path:
    """Write `models` with joblib, atomically (temporary file, then rename), and their array
    form (`compiled.save_compiled`) beside them for a quick `recommend`."""
    path = Path(path)
    stale = path.with_name(COMPILED_FILENAME)
    if stale.exists():
        stale.unlink()  # never leave arrays of older models next to new ones
    write_atomically(path, lambda tmp: joblib.dump(models, tmp))
    save_compiled(models, stale)
    return path


def load_saved_models(results: Results) -> FittedModels | None:
    """The saved models of this table if they exist and were fitted on exactly its rows."""
    path = models_path(results)
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", InconsistentVersionWarning)  # other scikit-learn: refit
            models = joblib.load(path)
    except Exception:  # noqa: BLE001 - a stale or unreadable cache is simply refitted
        return None
    ok = (
        isinstance(models, FittedModels)
        and models.format == _FORMAT
        and models.version == __version__
        and models.fingerprint == results.fingerprint
    )
    return replace(models, source=results.source) if ok else None


def load_or_fit_models(results: Results, save: bool = True) -> tuple[FittedModels, str]:
    """Saved models of this table when they match it, else freshly fitted ones (saved beside the
    table when `save` and the folder is writable). Also returns a line saying which happened."""
    models = load_saved_models(results)
    path = models_path(results)
    if models is not None:
        return models, f"models loaded from {path}"
    models = fit_performance_models(results)
    if not save:
        return models, "models fitted now"
    try:
        save_models(models, path)
    except OSError as exc:
        return models, f"models fitted now (not saved: {exc.strerror or exc})"
    return models, f"models fitted and saved to {path}"
