"""The constrained optimizer: the fastest (N, s) whose accuracy stays within the budget.

Over the candidate configurations, maximise predicted throughput subject to
P(true accuracy >= floor) >= `confidence`, i.e. the one-sided lower bound at `confidence` meets
the floor; a measured configuration must also have met the floor when it was measured, and a
configuration a collapsed (chance-level) measurement rules out is infeasible (`collapse.py`).
Near-ties (within `near_tie` of the best predicted throughput) go to a measured configuration.

The probability comes from the accuracy model's predictive distribution of the true accuracy. A
model with its own std (the GP-based ones) was fitted with each row's binomial measurement
variance (from `eval_examples`), so at a measured point its posterior already combines the
measurement with its neighbours. For a model without one, a measured configuration whose
standard error is known is estimated by the measurement itself (`accuracy_estimates`). Where the
accuracy model's noise rests on few degrees of freedom the std is widened to Student's t's bound
(`few_dof_widening`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from autoprumux.errors import BudgetError, SpecError
from autoprumux.meta.budget import DEFAULT_CONFIDENCE, accuracy_floor, parse_budget
from autoprumux.meta.collapse import collapse_warnings, collapsed_candidates
from autoprumux.meta.results import Results

if TYPE_CHECKING:  # scikit-learn loads only when models must be fitted
    from autoprumux.meta.selection import FittedModels

NEAR_TIE = 0.02
SPARSITY_STEP = 0.01
#: below this many measured configurations `recommend` picks among the measured ones only: the
#: accuracy trend has up to 7 parameters, so it passes through every point of a smaller table and
#: its std has nothing to be checked against (on generated tables of 2-6 configurations, 25 of its
#: 73 unmeasured picks fell under the floor, 3 of its 167 measured ones; results/small-tables)
MIN_MODELLED = 8
#: `recommend` warns when Student's t widens the accuracy bound at least this much (few degrees of
#: freedom left to the noise: at 95%, one or two)
FEW_DOF_WARNING = 1.5
#: `recommend` names a candidate it could not certify when it is predicted at least this much
#: faster than the pick and its risk of missing the floor is at most twice the risk allowed
NEAR_MISS_GAIN = 0.10
#: configuration columns -> the names a candidate carries them under
MEASURED_COLUMNS = {
    "accuracy": "measured_accuracy",
    "accuracy_se": "measured_accuracy_se",
    "throughput": "measured_throughput",
    "repeats": "measured_repeats",
}


@dataclass(frozen=True)
class ConfigEstimate:
    """Predicted (and, when measured, measured) performance of one (N, s).

    Accuracy is a fraction, throughput examples/s; `*_low`/`*_high` are the one-sided bounds at
    the run's confidence; `speedup` is predicted throughput over the predicted N = 1, s = 0 one.
    """

    mux: int
    sparsity: float
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    throughput: float
    throughput_low: float
    throughput_high: float
    speedup: float
    measured: bool
    measured_accuracy: float | None
    measured_throughput: float | None
    probability_within_budget: float = math.nan  # P(true accuracy >= floor), 0 when collapsed

    def to_dict(self) -> dict:
        """The JSON object of one configuration (`measured_*` are null when not measured)."""
        return {k: _json_value(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Recommendation:
    """What `recommend` returns; `to_dict()` is the `--json` output.

    `reason` is set only when no configuration meets the budget (the recommendation is then the
    baseline); `warnings` flag picks on the edge of, or outside, what was measured. `near_miss` is
    the fastest candidate that the bound narrowly failed to certify (`near_miss()`), if any.
    """

    budget: float
    relative: bool
    confidence: float
    baseline_accuracy: float
    accuracy_floor: float
    recommendation: ConfigEstimate
    alternatives: tuple[ConfigEstimate, ...]
    models: dict
    reason: str | None = None
    warnings: tuple[str, ...] = field(default=())
    near_miss: ConfigEstimate | None = None

    @property
    def feasible(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict:
        out = {
            "budget": self.budget,
            "relative": self.relative,
            "confidence": self.confidence,
            "baseline_accuracy": self.baseline_accuracy,
            "accuracy_floor": self.accuracy_floor,
            "recommendation": self.recommendation.to_dict(),
            "alternatives": [a.to_dict() for a in self.alternatives],
            "models": self.models,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        out["warnings"] = list(self.warnings)
        out["near_miss"] = None if self.near_miss is None else self.near_miss.to_dict()
        return out


def _json_value(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def check_confidence(confidence: float) -> float:
    """A confidence level must be a probability in [0.5, 1); raises `BudgetError` otherwise."""
    if not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1.0:
        raise BudgetError(
            f"confidence {confidence!r} is out of range; expected a probability in [0.5, 1) such as 0.9"
        )
    return float(confidence)


def candidate_configurations(
    results: Results,
    mux_choices: Sequence[int] | None = None,
    sparsity_choices: Sequence[float] | None = None,
    sparsity_step: float = SPARSITY_STEP,
) -> pd.DataFrame:
    """The (N, s) candidates: by default the table's N values x s on [0, max measured s] in steps
    of `sparsity_step`, plus every measured configuration of those N; `mux_choices` and
    `sparsity_choices` restrict (or extend) either axis. Columns: mux, sparsity (grid identity),
    feature_sparsity (model input), measured, measured_accuracy, measured_accuracy_se,
    measured_throughput, measured_repeats (NaN where not measured)."""
    configs = results.configurations
    mux_values = sorted({int(m) for m in configs["mux"]}) if mux_choices is None else _check_mux(mux_choices)
    if sparsity_choices is not None:
        grid = _check_sparsity(sparsity_choices)
    else:
        top = float(configs["feature_sparsity"].max())
        grid = list(np.round(np.arange(0.0, top + 1e-9, sparsity_step), 6))
    grid = np.asarray(grid, dtype=float)
    # a grid value next to a measured point of the same N is represented by that point
    tolerance = 1e-6 if sparsity_choices is not None else sparsity_step / 2
    parts = []
    for mux in mux_values:
        measured = configs[configs["mux"] == mux]
        distance = np.abs(grid[:, None] - measured["sparsity"].to_numpy()[None, :])
        free = grid[~(distance < tolerance).any(axis=1)]
        parts.append(
            pd.DataFrame({"mux": mux, "sparsity": free, "feature_sparsity": free, "measured": False})
        )
        if sparsity_choices is not None:
            measured = measured[
                np.isclose(measured["sparsity"].to_numpy()[:, None], grid[None, :], atol=1e-6).any(1)
            ]
        parts.append(
            measured[["mux", "sparsity", "feature_sparsity", *MEASURED_COLUMNS]]
            .rename(columns=MEASURED_COLUMNS)
            .assign(measured=True)
        )
    parts = [p for p in parts if not p.empty]
    if not parts:
        raise SpecError("no candidate configurations: give at least one mux choice and one sparsity choice")
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.sort_values(["mux", "sparsity"], ignore_index=True)
    frame["measured"] = frame["measured"].astype(bool)
    frame["mux"] = frame["mux"].astype(int)
    columns = ["mux", "sparsity", "feature_sparsity", "measured", *MEASURED_COLUMNS.values()]
    return frame[columns].astype(dict.fromkeys(MEASURED_COLUMNS.values(), float))


def _check_mux(values: Sequence[int]) -> list[int]:
    out = []
    for value in values:
        if isinstance(value, bool) or not float(value).is_integer() or value < 1:
            raise SpecError(f"mux choice {value!r} is invalid; expected integers >= 1 such as 1,2,5,10")
        out.append(int(value))
    return sorted(set(out))


def _check_sparsity(values: Sequence[float]) -> list[float]:
    out = []
    for value in values:
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise SpecError(
                f"sparsity choice {value!r} is invalid; expected fractions in [0, 1) such as 0,0.6,0.7"
            )
        out.append(round(float(value), 6))
    return sorted(set(out))


def score_candidates(
    models: FittedModels, candidates: pd.DataFrame, floor: float, confidence: float, results: Results | None = None
) -> pd.DataFrame:
    """`candidates` with predicted accuracy/throughput, their bounds, speedup, `p_feasible`
    (P(true accuracy >= floor)) and `feasible` (p_feasible >= confidence, not collapsed, and a
    measured candidate measured at the floor or above). With `results`, candidates that a
    collapsed configuration rules out (`collapsed_candidates`) are infeasible."""
    z = NormalDist().inv_cdf(confidence)
    X = candidates[["mux", "feature_sparsity"]].to_numpy(dtype=float)
    pred = models.predict(np.vstack([X, [[1.0, 0.0]]]))
    acc, acc_std = pred["accuracy"][:-1], pred["accuracy_std"][:-1] * few_dof_widening(models.accuracy, confidence)
    if models.accuracy.std_source != "native":
        acc, acc_std = accuracy_estimates(acc, acc_std, candidates)
    log_thr, log_thr_std = pred["log_throughput"][:-1], pred["log_throughput_std"][:-1]
    scored = candidates.copy()
    scored["accuracy"] = acc
    scored["accuracy_std"] = acc_std
    scored["accuracy_low"] = acc - z * acc_std
    scored["accuracy_high"] = acc + z * acc_std
    scored["p_feasible"] = normal_cdf((acc - floor) / np.maximum(acc_std, 1e-12))
    scored["throughput"] = np.exp(log_thr)
    scored["throughput_low"] = np.exp(log_thr - z * log_thr_std)
    scored["throughput_high"] = np.exp(log_thr + z * log_thr_std)
    scored["log_throughput_std"] = log_thr_std
    scored["speedup"] = np.exp(log_thr - pred["log_throughput"][-1])
    measured_ok = ~scored["measured"] | (scored["measured_accuracy"] >= floor - 1e-12)
    scored["collapsed"] = False if results is None else collapsed_candidates(results, scored, models)
    scored["p_feasible"] = np.where(scored["collapsed"], 0.0, scored["p_feasible"])
    scored["feasible"] = (scored["accuracy_low"] >= floor - 1e-12) & measured_ok & ~scored["collapsed"]
    return scored


def few_dof_widening(target, confidence: float) -> float:
    """The factor on a target model's calibrated std that makes its one-sided bound at `confidence`
    at least Student's t's with the model's degrees of freedom (`target.dof`, `target.std_scale`):
    max(1, t_dof(confidence) / (z(confidence) x std_scale)). A noise estimated from few degrees of
    freedom (a 7-parameter trend on 8-10 rows) is often far too small, and the normal bound then
    trusts each measured row; t's quantile allows for it. The calibration factor, fitted on held-out
    errors, counts against it: where it already widened the std as much, nothing is added. The std
    so widened gives P(feasible) >= `confidence` exactly where the t bound meets the floor."""
    dof = getattr(target, "dof", math.inf)
    if not math.isfinite(dof) or confidence <= 0.5:
        return 1.0
    from scipy.special import ndtri, stdtrit  # only for a finite dof: recommend's start-up stays light

    return max(1.0, float(stdtrit(max(dof, 1e-3), confidence) / (ndtri(confidence) * target.std_scale)))


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(x, float) / math.sqrt(2.0)))


def accuracy_estimates(
    predicted: np.ndarray, predicted_std: np.ndarray, candidates: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy mean and std of each candidate for a model without its own std: the model's
    prediction, or for a measured candidate whose standard error is known, the measurement itself
    (a model with its own std, fitted with each row's measurement variance, already combines the
    measurement with its neighbours in its posterior)."""
    if "measured_accuracy_se" not in candidates.columns:
        return predicted, predicted_std
    se = candidates["measured_accuracy_se"].to_numpy(dtype=float)
    known = candidates["measured"].to_numpy(dtype=bool) & np.isfinite(se) & (se > 0)
    measured = candidates["measured_accuracy"].to_numpy(dtype=float)
    return np.where(known, measured, predicted), np.where(known, se, predicted_std)


def choose(scored: pd.DataFrame, near_tie: float = NEAR_TIE):
    """Index of the fastest feasible candidate, or None. Measured candidates win near-ties (within
    `near_tie` of the best predicted throughput), and among those the measured throughput decides:
    the models cannot rank configurations closer than their own error."""
    feasible = scored[scored["feasible"]]
    if feasible.empty:
        return None
    best = feasible["throughput"].max()
    ties = feasible[feasible["measured"] & (feasible["throughput"] >= (1.0 - near_tie) * best)]
    if ties.empty:
        return feasible["throughput"].idxmax()
    return ties["measured_throughput"].idxmax()


def _alternatives(scored: pd.DataFrame, pick, count: int) -> list:
    """Runners-up: the best feasible candidate of each other N, then the best measured ones."""
    feasible = scored[scored["feasible"]].drop(index=pick)
    other_mux = feasible[feasible["mux"] != scored.loc[pick, "mux"]]
    per_mux = (
        other_mux.loc[other_mux.groupby("mux")["throughput"].idxmax()] if not other_mux.empty else other_mux
    )
    picks = list(per_mux.sort_values("throughput", ascending=False).index)
    measured = feasible[feasible["measured"]].sort_values("throughput", ascending=False)
    picks += [i for i in measured.index if i not in picks]
    return picks[:count]


def _estimate(row) -> ConfigEstimate:
    return ConfigEstimate(
        mux=int(row["mux"]),
        sparsity=float(row["sparsity"]),
        accuracy=float(row["accuracy"]),
        accuracy_low=float(row["accuracy_low"]),
        accuracy_high=float(row["accuracy_high"]),
        throughput=float(row["throughput"]),
        throughput_low=float(row["throughput_low"]),
        throughput_high=float(row["throughput_high"]),
        speedup=float(row["speedup"]),
        measured=bool(row["measured"]),
        measured_accuracy=None if not row["measured"] else float(row["measured_accuracy"]),
        measured_throughput=None if not row["measured"] else float(row["measured_throughput"]),
        probability_within_budget=float(row["p_feasible"]),
    )


def recommend(
    results: Results,
    budget: str | float,
    *,
    models: FittedModels | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    relative: bool = False,
    mux_choices: Sequence[int] | None = None,
    sparsity_choices: Sequence[float] | None = None,
    n_alternatives: int = 3,
    near_tie: float = NEAR_TIE,
) -> Recommendation:
    """The fastest configuration whose accuracy lower bound meets `baseline - budget` (or
    `baseline * (1 - budget)` when `relative`), with runners-up.

    `budget` is a fraction or a string such as "3%"; `models` (`FittedModels`, or the array
    form from `compiled.load_compiled`) defaults to fitting them now. When
    nothing is feasible, the recommendation is the baseline (N = 1, s = 0) and `reason` says why.
    """
    budget = parse_budget(budget)
    confidence = check_confidence(confidence)
    if models is None:
        from autoprumux.meta.selection import fit_performance_models

        models = fit_performance_models(results)
    floor = accuracy_floor(results.baseline_accuracy, budget, relative)
    candidates = candidate_configurations(results, mux_choices, sparsity_choices)
    baseline_row = candidate_configurations(results, [1], [0.0])
    scored = score_candidates(
        models, pd.concat([candidates, baseline_row], ignore_index=True), floor, confidence, results
    )
    baseline = _estimate(scored.iloc[-1])
    scored = scored.iloc[:-1]
    if len(results.configurations) < MIN_MODELLED:
        scored = scored[scored["measured"]]
    pick = choose(scored, near_tie)
    common = dict(
        budget=budget,
        relative=relative,
        confidence=confidence,
        baseline_accuracy=results.baseline_accuracy,
        accuracy_floor=floor,
        models=models.summary(),
    )
    if pick is None:
        highest = ""
        if not scored.empty:
            best = scored.loc[scored["accuracy_low"].idxmax()]
            highest = f" (highest lower bound {best['accuracy_low']:.4f}, at N={int(best['mux'])}, s={best['sparsity']:.2f})"
        reason = (
            f"no candidate configuration meets the accuracy floor {floor:.4f} with {confidence:.0%} confidence"
            f"{highest}; keep the baseline or allow a larger budget"
        )
        return Recommendation(
            recommendation=baseline,
            alternatives=(),
            reason=reason,
            warnings=tuple(_table_warnings(results, models, budget, confidence)),
            **common,
        )
    alternatives = tuple(_estimate(scored.loc[i]) for i in _alternatives(scored, pick, n_alternatives))
    pick_row = scored.loc[pick]
    miss = near_miss(scored, pick, confidence, near_tie=near_tie)
    warnings = _pick_warnings(results, pick_row) + _near_miss_warnings(scored, pick, miss, confidence)
    warnings += _table_warnings(results, models, budget, confidence)
    return Recommendation(
        recommendation=_estimate(pick_row),
        alternatives=alternatives,
        warnings=tuple(warnings),
        near_miss=None if miss is None else _estimate(scored.loc[miss]),
        **common,
    )


def _pick_warnings(results: Results, pick) -> list[str]:
    configs = results.configurations
    mux, s = int(pick["mux"]), float(pick["sparsity"])
    top_mux, top_s = (
        int(configs["mux"].max()),
        float(max(configs["sparsity"].max(), configs["feature_sparsity"].max())),
    )
    out = []
    if mux > top_mux or max(s, float(pick["feature_sparsity"])) > top_s + 1e-6:
        out.append(
            f"N={mux}, s={s:.2f} lies outside the measured range (N <= {top_mux}, s <= {top_s:.2f}): "
            "the prediction is an extrapolation"
        )
    elif mux not in set(configs["mux"]):
        out.append(f"N={mux} was never measured: its prediction is interpolated between other N")
    else:
        edges = []
        if mux == top_mux and mux > 1:
            edges.append(f"N={mux} is the largest N measured")
        if s >= configs["sparsity"].max() - SPARSITY_STEP and s > 0:
            edges.append(f"s={s:.2f} is at the highest sparsity measured")
        if edges:
            out.append(
                "the pick sits on the edge of what was measured ("
                + "; ".join(edges)
                + "): measuring beyond it may find a faster configuration within budget"
            )
    if not pick["measured"]:
        out.append(f"N={mux}, s={s:.2f} was not measured: train it to confirm the prediction")
    return out


def near_miss(
    scored: pd.DataFrame, pick, confidence: float, gain: float = NEAR_MISS_GAIN, near_tie: float = NEAR_TIE
):
    """Index of the candidate that `recommend` could not certify but nearly did, or None: among
    those predicted at least `gain` faster than `pick`, not collapsed, and within budget with
    probability at least 1 - 2 (1 - confidence), the one `choose` would take (the fastest, a
    measured one in a near-tie). On the generated suite most of `recommend`'s regret comes from
    such candidates, a hair above the floor; one more measurement may certify them."""
    bar = 1.0 - 2.0 * (1.0 - confidence)
    near = (
        ~scored["feasible"]
        & ~scored["collapsed"]
        & (scored["p_feasible"] >= bar)
        & (scored["throughput"] >= (1.0 + gain) * scored.loc[pick, "throughput"])
    )
    return choose(scored[near].assign(feasible=True), near_tie)


def _near_miss_warnings(scored: pd.DataFrame, pick, miss, confidence: float) -> list[str]:
    if miss is None:
        return []
    row = scored.loc[miss]
    ratio = row["throughput"] / scored.loc[pick, "throughput"]
    where = f"N={int(row['mux'])}, s={row['sparsity']:.2f}"
    if row["measured"]:
        how = (
            f"measured at {row['measured_accuracy']:.4f}; more evidence (another seed, a larger evaluation set) "
            "may certify it"
        )
    else:
        how = "not measured; measuring it may certify it (`autoprumux suggest` ranks what to measure)"
    return [
        f"{where} is predicted {ratio:.2f}x as fast as the pick and within budget with probability "
        f"{row['p_feasible']:.0%}, short of the {confidence:.0%} asked: {how}"
    ]


def _table_warnings(results: Results, models: FittedModels, budget: float, confidence: float) -> list[str]:
    out = collapse_warnings(results, models)
    if len(results.configurations) < MIN_MODELLED:
        out.append(
            f"only {len(results.configurations)} configurations were measured, fewer than {MIN_MODELLED}: too few for "
            "the models to check their own error, so only measured ones are recommended "
            "(`autoprumux suggest` names the next to measure)"
        )
    acc_error = models.summary()["accuracy"]["cv_error"]
    if acc_error > 100.0 * budget > 0:
        out.append(
            f"the accuracy model's cross-validated error ({acc_error:.2f} points) exceeds the budget "
            f"({100.0 * budget:.2g} points)"
        )
    widening = few_dof_widening(models.accuracy, confidence)
    if widening >= FEW_DOF_WARNING and len(results.configurations) >= MIN_MODELLED:
        out.append(
            f"the accuracy noise rests on {models.accuracy.dof:.1f} degrees of freedom (the trend has up to 7 "
            f"parameters): bounds are Student's t's, {widening:.1f}x as wide as a normal's; another seed of a "
            "measured configuration or more configurations narrow them (`autoprumux suggest` proposes both)"
        )
    if len(results.devices) > 1:
        out.append(
            f"throughputs were measured on different devices ({', '.join(results.devices)}): not comparable"
        )
    return out


def load_models_for_recommend(results: Results) -> tuple[object, str]:
    """The quickest models that fit this table: the saved arrays (no scikit-learn import), else
    `selection.load_or_fit_models` (saved or freshly fitted and saved). Returns (models, note)."""
    from autoprumux.meta.compiled import compiled_path, load_compiled

    compiled = load_compiled(results)
    if compiled is not None:
        return compiled, f"models loaded from {compiled_path(results)}"
    from autoprumux.meta.selection import load_or_fit_models

    return load_or_fit_models(results)
