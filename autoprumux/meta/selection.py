"""Fit the performance models of a results table and pick one per target by cross-validation.

Every candidate model of a target is scored by leave-configurations-out cross-validation: the
configurations are dealt into `CV_FOLDS` folds, each hiding about a fifth of them at once.
Throughput (on a log scale) goes to the lowest mean absolute percentage error. Accuracy goes to
the lowest *decision regret* (`calibration.decision_regret`: what picking by the held-out lower
bounds would have lost at budgets of 1-5%), ties to the lower RMSE. Collapsed configurations
(accuracy at chance) are left out of the accuracy fit. Each chosen model's std is rescaled by
the factor that makes its held-out standardised residuals unit-variance (`calibration.std_scale`);
a model without its own std uses the RMSE of its held-out residuals.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import InconsistentVersionWarning

from autoprumux import __version__
from autoprumux.meta.calibration import by_configuration, decision_regret, out_of_fold, std_scale
from autoprumux.meta.compiled import COMPILED_FILENAME, predict_targets, save_compiled
from autoprumux.meta.models import GaussianProcessModel, SeparableModel
from autoprumux.meta.results import TARGETS, Results
from autoprumux.meta.structured import AdditiveThroughputModel, MonotoneGPModel
from autoprumux.table import write_atomically

MODELS_FILENAME = "performance_models.joblib"
_FORMAT = 14
#: configurations are dealt into this many folds: each fold hides about a fifth of the table's
#: configurations at once, as a sweep leaves much of its grid unmeasured (one-out was too kind
#: to the models: its held-out errors, and so the calibrated bounds, came out too small)
CV_FOLDS = 5
REGRET_TIE = 0.005


def default_candidates() -> dict[str, dict[str, object]]:
    """The candidate models tried for each target, by name."""
    return {
        "accuracy": {
            "monotone-gp": MonotoneGPModel(),
            "monotone": MonotoneGPModel(residual_gp=False),
            "free-gp": MonotoneGPModel(monotone=False),
        },
        "throughput": {
            "additive": AdditiveThroughputModel(),
            "separable": SeparableModel(),
            "gp": GaussianProcessModel(),
        },
    }


@dataclass
class TargetModel:
    """The chosen model of one target. Throughput is modelled as log(examples/s)."""

    target: str
    name: str
    estimator: object
    std_source: str  # "native" (the model's own std x std_scale) or "cv" (cv_rmse)
    cv_rmse: float  # on the modelled scale: accuracy fraction, or log throughput
    std_scale: float = 1.0

    def predict(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation on the modelled scale at `X` = [[mux, sparsity], ...]:
        the model's own std times the calibration factor, or the held-out RMSE."""
        mean, std = self.estimator.predict(np.asarray(X, dtype=float), return_std=True)
        if self.std_source == "cv":
            return mean, np.full(len(mean), self.cv_rmse)
        return mean, std * self.std_scale

    @property
    def dof(self) -> float:
        """Degrees of freedom of the predictive distribution: the estimator's noise_dof_ (a
        Student's t), infinite (normal) for models without one or with the held-out RMSE as std."""
        return float(getattr(self.estimator, "noise_dof_", math.inf)) if self.std_source == "native" else math.inf

    def condition(self, X, y, **fit_params) -> TargetModel:
        """The model fitted on other data (typically the same rows and a few more) with its
        hyperparameters kept: a Gaussian process conditioned on more rows, not re-estimated."""
        params = self.estimator.conditioning_params() if hasattr(self.estimator, "conditioning_params") else {}
        estimator = clone(self.estimator).set_params(**params).fit(X, y, **accepted(self.estimator, fit_params))
        return replace(self, estimator=estimator)


@dataclass
class FittedModels:
    """Accuracy and throughput models of one table, with the cross-validation table behind them.

    `cv` has one row per (target, model): `error` (accuracy: MAE in points; throughput: MAPE in
    percent), `rmse` (on the modelled scale), `regret` (accuracy: decision regret), `std_scale`
    and `chosen`. `X` and `y["throughput"]` hold every row; the accuracy model saw one row per
    configuration that is not collapsed (`accuracy_X`, `y["accuracy"]`: `Results.accuracy_data`);
    `fit_params` are each target's extra fit arrays, aligned with those; `seed_variance` is the
    training seed's variance in the accuracy rows' known variance (`training_seed_variance`; NaN
    when no configuration was measured twice).
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
    folds: int = 0  # cross-validation folds (whole configurations held out in each)
    fit_params: dict = field(default_factory=dict, repr=False)
    accuracy_X: np.ndarray | None = field(default=None, repr=False)
    collapsed: list = field(default_factory=list)  # (mux, sparsity) of collapsed configurations
    seed_variance: float = float("nan")  # a training seed's variance the accuracy model was told
    format: int = _FORMAT
    version: str = __version__

    def predict(self, X) -> dict[str, np.ndarray]:
        """Predictions at `X` = [[mux, sparsity], ...]: accuracy mean/std (fraction, the std of
        the true accuracy) and log-throughput mean/std (log examples/s)."""
        return predict_targets(self.accuracy, self.throughput, X)

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
                "std_scale": float(chosen.std_scale),
                "dof": None if math.isinf(chosen.dof) else chosen.dof,  # None: normal
            }
        out["collapsed"] = [list(c) for c in self.collapsed]
        return out


def configuration_folds(results: Results, max_folds: int = CV_FOLDS) -> np.ndarray:
    """One fold number per row: its grid point's index (leave-one-configuration-out), or, for
    tables with more than `max_folds` configurations, that index dealt into `max_folds` folds
    (grouped K-fold, deterministic), which keeps fitting time bounded on dense grids."""
    return _folds(len(results.configurations), max_folds)[configuration_groups(results)]


def _folds(n_groups: int, max_folds: int) -> np.ndarray:
    """The fold of each configuration (see `configuration_folds`)."""
    if n_groups <= max_folds:
        return np.arange(n_groups)
    return np.random.default_rng(0).permutation(n_groups) % max_folds


def configuration_groups(results: Results) -> np.ndarray:
    """Each row's configuration index, in the order of `results.configurations`."""
    keys = results.rows[["mux", "config_sparsity"]].astype(float)
    return keys.groupby(["mux", "config_sparsity"], sort=True).ngroup().to_numpy()


def accepted(estimator, fit_params: dict) -> dict:
    """The `fit_params` that `estimator.fit` takes (and that are not None)."""
    names = inspect.signature(estimator.fit).parameters
    return {k: v for k, v in fit_params.items() if k in names and v is not None}


def _cv_row(target, name, y, oof):
    residual = y - oof
    if target == "accuracy":
        error, unit = 100.0 * np.mean(np.abs(residual)), "MAE, points"
    else:
        error, unit = 100.0 * np.mean(np.abs(np.expm1(-residual))), "MAPE, %"
    rmse = float(np.sqrt(np.mean(residual**2)))
    return {"target": target, "model": name, "error": float(error), "unit": unit, "rmse": rmse}


def cross_validated(models: FittedModels, results: Results, target: str) -> tuple[np.ndarray, ...]:
    """(mux, measured, held-out prediction) of each row the chosen `target` model was fitted on,
    with the folds `fit_performance_models` scored it on (targets on their modelled scale)."""
    X = models.accuracy_X if target == "accuracy" else models.X
    y, params = models.y[target], models.fit_params[target]
    estimator = getattr(models, target).estimator
    folds = _target_data(results, CV_FOLDS, models.seed_variance)[target][3]
    oof, _ = _held_out(estimator, X, y, folds, params)
    return X[:, 0].astype(int), y, oof


def _held_out(fitted, X, y, folds, params):
    """Held-out mean and std of clones of the `fitted` model, one fold per value of `folds`;
    each clone keeps the fit's expensive hyperparameters (`warm_start_params`)."""
    warm = fitted.warm_start_params() if hasattr(fitted, "warm_start_params") else {}
    return out_of_fold(fitted, X, y, folds, accepted(fitted, params), warm)


def _score_candidate(target, name, estimator, data, results):
    X, y, params, folds, groups, configs = data
    fitted = clone(estimator).fit(X, y, **accepted(estimator, params))
    mean, std = _held_out(fitted, X, y, folds, params)
    row = _cv_row(target, name, y, mean)
    native = getattr(estimator, "has_native_std", False)
    noise = np.nan_to_num(params.get("noise_variance", np.zeros(len(y)))) + getattr(fitted, "noise_", 0.0)
    scale = std_scale(y - mean, std, noise) if native else 1.0
    calibrated = std * scale if native else np.full(len(y), row["rmse"])
    row["std_scale"] = scale
    if target == "accuracy":
        at = by_configuration(mean, groups), by_configuration(calibrated, groups)
        row["regret"] = decision_regret(configs, *at, results.baseline_accuracy)
    model = TargetModel(target, name, fitted, "native" if native else "cv", row["rmse"], scale)
    return row, model


def _target_data(results: Results, max_folds: int, seed_variance: float | None = None) -> dict:
    """Per target: X, y, fit arrays, CV fold of each row, configuration index of each row (0..G-1
    over the configurations used) and those configurations. Accuracy has one row per configuration
    that is not collapsed (`Results.accuracy_data`, with `seed_variance`), throughput one per table
    row."""
    groups, folds = configuration_groups(results), configuration_folds(results, max_folds)
    X, y, noise, trained = results.accuracy_data(seed_variance)
    kept = np.flatnonzero(~results.configurations["collapsed"].to_numpy(bool))
    configs = results.configurations
    return {
        "accuracy": (
            X,
            y,
            {"noise_variance": noise},
            _folds(len(configs), max_folds)[kept],
            np.arange(len(trained)),
            trained,
        ),
        "throughput": (
            results.features,
            np.log(results.rows["throughput"].to_numpy(float)),
            {"flops": results.flops},
            folds,
            groups,
            configs,
        ),
    }


def _best(target, rows):
    if target == "throughput":
        return min(rows, key=lambda r: r["error"])
    lowest = min(r["regret"] for r in rows)
    return min((r for r in rows if r["regret"] <= lowest + REGRET_TIE), key=lambda r: r["rmse"])


def fit_performance_models(
    results: Results, candidates: dict[str, dict[str, object]] | None = None, max_folds: int = CV_FOLDS
) -> FittedModels:
    """Fit every candidate model (default: `default_candidates()`, per target) and choose one per
    target by grouped `max_folds`-fold CV over configurations (see the module docstring; tables
    with at most `max_folds` configurations leave one configuration out at a time)."""
    candidates = candidates or default_candidates()
    trained = int((~results.configurations["collapsed"]).sum())
    if trained < 2:
        from autoprumux.errors import TableError

        raise TableError(
            f"{results.source}: only {trained} of its {len(results.configurations)} configurations is above chance "
            f"accuracy ({results.chance:.3f}); at least 2 are needed to fit the accuracy model"
        )
    seed_variance = training_seed_variance(results)
    data = _target_data(results, max_folds, seed_variance)
    rows, chosen = [], {}
    for target in TARGETS:
        scored = [_score_candidate(target, n, e, data[target], results) for n, e in candidates[target].items()]
        best = _best(target, [r for r, _ in scored])
        rows += [{**r, "chosen": r is best} for r, _ in scored]
        chosen[target] = next(m for r, m in scored if r is best)
    collapsed = results.configurations[results.configurations["collapsed"]]
    return FittedModels(
        accuracy=chosen["accuracy"],
        throughput=chosen["throughput"],
        cv=pd.DataFrame(rows),
        fingerprint=results.fingerprint,
        source=results.source,
        n_rows=len(results.rows),
        n_configurations=len(results.configurations),
        X=results.features,
        y={"accuracy": data["accuracy"][1], "throughput": data["throughput"][1]},
        folds=int(data["throughput"][3].max()) + 1,
        fit_params={"accuracy": data["accuracy"][2], "throughput": {"flops": results.flops}},
        accuracy_X=data["accuracy"][0],
        collapsed=[(int(m), float(s)) for m, s in zip(collapsed["mux"], collapsed["sparsity"], strict=True)],
        seed_variance=seed_variance,
    )


def training_seed_variance(results: Results) -> float:
    """The training seed's variance the accuracy models are told: the pooled spread of repeats
    (`Results.seed_variance`; NaN when nothing was repeated), at most the noise that a monotone
    GP fits beyond the binomial variance when each configuration's mean counts as one measurement.

    The pooled spread has as many degrees of freedom as there are repeats, often one to three, and
    every configuration measured once carries all of it in its known variance. A high draw (a
    chi-square with one degree of freedom exceeds twice its mean one time in six) widened the
    bound of every row, and the fitted noise beyond it cannot go below zero to make up for it: on
    simulated sweeps such a configuration was given 1.2-1.5 times the noise its error showed,
    and 0.8-1.1 times with the cap (`benchmarks/seed_variance.py`). The cap comes from every
    configuration. A low draw needs none: the fitted noise makes up the rest, and a repeat then
    gets less credit than it earns, which errs on the safe side."""
    pooled = results.seed_variance
    if not np.isfinite(pooled) or pooled <= 0:
        return pooled
    return float(min(pooled, noise_beyond_known(results, 0.0)[1]))  # told the binomial variance alone


def noise_beyond_known(results: Results, seed_variance: float) -> tuple[np.ndarray, float]:
    """(the known variance of each configuration's mean, the noise a monotone GP fits beyond it)
    when the table's accuracy data carry `seed_variance` (`Results.accuracy_data`)."""
    X, y, known, _ = results.accuracy_data(seed_variance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return known, MonotoneGPModel().fit(X, y, known).noise_


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
