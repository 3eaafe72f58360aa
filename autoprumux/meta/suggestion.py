"""Which configurations to train next: expected improvement of what `recommend` picks.

A candidate's score is the expected gain in throughput (log-normal predictive throughput) over
what `recommend` would pick now (the incumbent: the fastest candidate whose accuracy bound meets
the floor, at its measured throughput when it was measured), times the probability that one
measurement of the candidate lets `recommend` certify it (`certification_probability`: the
measurement and the prediction combined must clear the floor at the asked confidence, and the
mean of the candidate's measurements must not be under the floor). That is a one-step knowledge
gradient restricted to the candidate itself: a configuration that is probably within budget but
sits too close to the floor for one noisy measurement to settle is worth little, because
`recommend` could not pick it afterwards either.

With `repeats`, a measured configuration that is faster than the incumbent but not certified
(measured under the floor, or too close to it) is a candidate too: training it again with another
seed averages its training noise away. It is on by default: on simulated sweeps, repeats gave
lower regret than none with one and two points of training noise (at one point the lowest of
every order after 24 trainings), about the same with three, and without training noise they cost
one training in most sweeps, with the same outcome: a repeat that measures the same value again
shows that further ones are useless (results/adaptive/README.md). Its gain is its measured
throughput over the incumbent's; one more repeat adds only what it averages away
(`repeat_noise`), since repeats are evaluated on one dev set and share its sampling error. After
each pick, the accuracy model conditions on the pick's predicted value as if it had been measured
("kriging believer"; its kernel and trend are kept, not estimated again from a row that carries
no information), and picks keep a minimum sparsity distance within one N, so the K suggestions
spread out instead of piling up at one spot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from statistics import NormalDist

import numpy as np
import pandas as pd

from autoprumux.meta.budget import DEFAULT_CONFIDENCE, accuracy_floor, parse_budget
from autoprumux.meta.optimizer import (
    candidate_configurations,
    check_confidence,
    choose,
    normal_cdf,
    score_candidates,
)
from autoprumux.meta.results import Results
from autoprumux.meta.selection import FittedModels, fit_performance_models

SUGGEST_STEP = 0.05
MIN_SPACING = 0.1


@dataclass(frozen=True)
class Suggestion:
    """One configuration worth training: `expected_gain` in examples/s (already weighted by the
    probability that `recommend` can certify it afterwards), predictions as in `ConfigEstimate`,
    `repeat` (it was measured already: train it again with another seed) and a one-line reason."""

    mux: int
    sparsity: float
    expected_gain: float
    probability_feasible: float
    accuracy: float
    accuracy_std: float
    throughput: float
    reason: str
    repeat: bool = False

    def to_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Suggestions:
    """What `suggest` returns: the floor, the incumbent (what `recommend` would pick now: mux,
    sparsity, throughput) and the suggestions, best first."""

    budget: float
    relative: bool
    confidence: float
    baseline_accuracy: float
    accuracy_floor: float
    incumbent: dict
    suggestions: tuple[Suggestion, ...]
    models: dict

    def to_dict(self) -> dict:
        out = asdict(self)
        out["suggestions"] = [s.to_dict() for s in self.suggestions]
        return out


def certification_probability(
    scored: pd.DataFrame, floor: float, confidence: float, noise_variance: float | np.ndarray
) -> np.ndarray:
    """P(one more measurement of the candidate lets `recommend` certify it), per row of
    `score_candidates` output. The new measurement y (noise variance `noise_variance`, per row or
    one for all) is predicted as N(m, s^2 + noise) from the model's mean m and std s. `recommend`
    certifies the candidate when both hold, and each is a threshold on y:

    - the posterior (variance v = 1 / (1/s^2 + 1/noise), mean m + s^2 (y - m) / (s^2 + noise))
      less z(confidence) sqrt(v) clears the floor;
    - the mean of its k measured repeats and y is not under the floor (`score_candidates` rules
      out a configuration measured under it), so y >= (k + 1) floor - k mean.

    A candidate a hair above the floor, or one whose measurement is too noisy to settle it, is
    worth little even when P(feasible) is high."""
    m, s2 = scored["accuracy"].to_numpy(float), np.maximum(scored["accuracy_std"].to_numpy(float) ** 2, 1e-18)
    noise = np.maximum(np.broadcast_to(np.asarray(noise_variance, float), m.shape), 1e-18)
    v = 1.0 / (1.0 / s2 + 1.0 / noise)
    z = NormalDist().inv_cdf(confidence)
    bound = m + (floor + z * np.sqrt(v) - m) * (s2 + noise) / s2
    k = np.nan_to_num(scored.get("measured_repeats", pd.Series(0.0, scored.index)).to_numpy(float))
    mean = np.nan_to_num(scored.get("measured_accuracy", pd.Series(0.0, scored.index)).to_numpy(float))
    threshold = np.maximum(bound, (k + 1.0) * floor - k * mean)
    with np.errstate(invalid="ignore"):
        probability = normal_cdf((m - threshold) / np.sqrt(s2 + noise))
    # an infinite noise (a repeat where nothing is left to average away) settles nothing
    useless = scored["collapsed"].to_numpy(bool) | ~np.isfinite(noise)
    return np.where(useless, 0.0, np.nan_to_num(probability))


def constrained_expected_improvement(
    scored: pd.DataFrame, incumbent: float, certified: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """E[max(T - incumbent, 0)] * P per row of `score_candidates` output, T log-normal
    (examples/s): the expected improvement of the constrained optimum, that is of what `recommend`
    picks. A configuration only improves on it if it is faster and `recommend` can then pick it:
    P is `certified` (`certification_probability`) when given, else P(accuracy >= floor); speed
    and accuracy are modelled independently."""
    mu, sigma = np.log(scored["throughput"].to_numpy()), scored["log_throughput_std"].to_numpy()
    if "measured" in scored.columns:  # a measured candidate (a repeat) counts at its measured speed
        measured = scored["measured"].to_numpy(bool)
        mu = np.where(measured, np.log(scored["measured_throughput"].where(measured, 1.0).to_numpy(float)), mu)
        sigma = np.where(measured, 0.0, sigma)
    normal = NormalDist()
    cdf = np.vectorize(normal.cdf)
    safe = np.maximum(sigma, 1e-12)
    d2 = (mu - math.log(incumbent)) / safe
    gain = np.exp(mu + sigma**2 / 2) * cdf(d2 + sigma) - incumbent * cdf(d2)
    gain = np.where(sigma > 1e-12, gain, np.maximum(np.exp(mu) - incumbent, 0.0))
    p_feasible = scored["p_feasible"].to_numpy()  # 0 where a collapsed measurement rules it out
    weight = p_feasible if certified is None else certified
    return np.maximum(gain, 0.0) * weight, p_feasible


def constrained_optimum(models, candidates: pd.DataFrame, floor, confidence, results: Results) -> dict:
    """What `recommend` would pick among `candidates` now (mux, sparsity, and its throughput:
    measured, else predicted), or the baseline when nothing is feasible. Suggestions are scored
    by how much they are expected to improve on it: measuring a point matters when it could move
    the recommendation, not only when it could beat the best row measured so far."""
    scored = score_candidates(models, candidates, floor, confidence, results)
    pick = choose(scored)
    if pick is None:
        return {"mux": 1, "sparsity": 0.0, "throughput": float(results.baseline_throughput or 1e-9)}
    row = scored.loc[pick]
    throughput = row["measured_throughput"] if row["measured"] else row["throughput"]
    return {"mux": int(row["mux"]), "sparsity": float(row["sparsity"]), "throughput": float(throughput)}


def suggest(
    results: Results,
    budget: str | float,
    *,
    n: int = 3,
    models: FittedModels | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    relative: bool = False,
    mux_choices: Sequence[int] | None = None,
    sparsity_choices: Sequence[float] | None = None,
    sparsity_step: float = SUGGEST_STEP,
    repeats: bool = True,
) -> Suggestions:
    """The `n` configurations whose measurement is expected to raise the recommended throughput
    within the budget most. Candidates: the table's N (or `mux_choices`) x sparsities in steps of
    `sparsity_step` up to one step past the highest measured one (or `sparsity_choices`); with
    `repeats` (the default), also the measured configurations that `recommend` cannot certify yet
    (a repeat: another seed).
    """
    budget = parse_budget(budget)
    confidence = check_confidence(confidence)
    models = models or fit_performance_models(results)
    floor = accuracy_floor(results.baseline_accuracy, budget, relative)
    configs = results.configurations
    if sparsity_choices is None:
        top = min(float(configs["feature_sparsity"].max()) + sparsity_step, 0.99)
        sparsity_choices = list(np.round(np.arange(0.0, top + 1e-9, sparsity_step), 6))
    candidates = candidate_configurations(results, mux_choices, sparsity_choices)
    incumbent = constrained_optimum(models, candidates, floor, confidence, results)
    if not repeats:
        candidates = candidates[~candidates["measured"]]
    picks = _greedy_picks(models, candidates, floor, confidence, incumbent, n, results)
    return Suggestions(
        budget=budget,
        relative=relative,
        confidence=confidence,
        baseline_accuracy=results.baseline_accuracy,
        accuracy_floor=floor,
        incumbent=incumbent,
        suggestions=tuple(picks),
        models=models.summary(),
    )


def _greedy_picks(
    models: FittedModels, candidates, floor, confidence, incumbent: dict, n, results
) -> list[Suggestion]:
    picks: list[Suggestion] = []
    X, y_acc = models.accuracy_X, models.y["accuracy"]
    noise = models.fit_params["accuracy"]["noise_variance"]
    remaining = candidates.reset_index(drop=True)
    while len(picks) < n and not remaining.empty:
        scored = score_candidates(models, remaining, floor, confidence, results)
        noise_again = repeat_noise(models, noise, scored)
        certified = certification_probability(scored, floor, confidence, noise_again)
        score, p_feasible = constrained_expected_improvement(scored, incumbent["throughput"], certified)
        # a measured configuration is worth a repeat only when `recommend` cannot pick it yet and
        # it would gain something if it could
        measured = scored["measured"].to_numpy(bool)
        allowed = ~measured | (~scored["feasible"].to_numpy(bool) & (score > 0))
        if not allowed.any():
            break
        i = int(np.argmax(np.where(allowed, score, -1.0)))
        row = scored.iloc[i]
        picks.append(_suggestion(row, score[i], p_feasible[i], incumbent, floor, results))
        if len(picks) == n:
            break
        # pretend its accuracy was measured at the prediction (the throughput model has no
        # uncertainty that one more point near it would shrink), condition, keep later picks apart
        X = np.vstack([X, [[row["mux"], row["feature_sparsity"]]]])
        y_acc, noise = np.append(y_acc, row["accuracy"]), np.append(noise, np.nan)
        models = replace(models, accuracy=models.accuracy.condition(X, y_acc, noise_variance=noise))
        near = (remaining["mux"] == row["mux"]) & (
            (remaining["sparsity"] - row["sparsity"]).abs() < MIN_SPACING - 1e-9
        )
        remaining = remaining[~near].reset_index(drop=True)
    return picks


def repeat_noise(models: FittedModels, known: np.ndarray, scored: pd.DataFrame) -> np.ndarray:
    """Per candidate, the variance of one more accuracy measurement as information about its true
    accuracy.

    Unmeasured: the median of the variances the table knows (binomial, and a training seed's) plus
    the accuracy model's fitted noise beyond them, W (all of it where nothing is known).

    Measured k times: its mean has variance b + s + f/k, with b its binomial variance (its repeats
    share one dev set: one more does not shrink it), f a training seed's variance and s the rest,
    which repeats do not average either; one more repeat makes it b + s + f/(k+1), and the
    equivalent independent measurement is the inverse of that gain in precision (infinite when
    f = 0: another seed teaches nothing). f is the models' `seed_variance` once some configuration
    was measured twice, and s is then W; before that, the table cannot tell the two apart, and W
    is taken as all seed noise, so that a first repeat can find out."""
    known = np.asarray(known, float)
    known = known[np.isfinite(known) & (known > 0)]
    w = float(getattr(models.accuracy.estimator, "noise_", 0.0))
    fresh = float(np.median(known)) + w if len(known) else (w or models.accuracy.cv_rmse**2)
    k = np.nan_to_num(scored["measured_repeats"].to_numpy(float)) if "measured_repeats" in scored else np.zeros(len(scored))
    if not k.any():
        return np.full(len(scored), fresh)
    seed = models.seed_variance
    f, s = (seed, w) if np.isfinite(seed) else (w or models.accuracy.cv_rmse**2, 0.0)
    b = np.nan_to_num(scored["measured_accuracy_se"].to_numpy(float) ** 2) + s
    with np.errstate(divide="ignore"):
        gain = 1.0 / (b + f / np.maximum(k + 1, 1)) - 1.0 / (b + f / np.maximum(k, 1))
        again = np.where(gain > 0, 1.0 / np.where(gain > 0, gain, 1.0), np.inf)
    return np.where(k > 0, again, fresh)


def _suggestion(row, score, p_feasible, incumbent: dict, floor, results: Results) -> Suggestion:
    mux, s = int(row["mux"]), float(row["sparsity"])
    configs = results.configurations
    repeat = bool(row["measured"])
    throughput = row["measured_throughput"] if repeat else row["throughput"]
    ratio = throughput / incumbent["throughput"]
    if repeat:
        k, mean = int(row["measured_repeats"]), row["measured_accuracy"]
        side = "under" if mean < floor else "just above"
        reason = (
            f"measured {'once' if k == 1 else f'{k} times'} at accuracy {mean:.4f}, {side} the floor "
            f"{floor:.4f}, and {throughput:.0f} examples/s ({ratio:.2f}x the current recommendation); "
            f"the model puts it at {row['accuracy']:.4f} ± {row['accuracy_std']:.4f}, P(within budget) "
            f"{p_feasible:.0%}: another seed could let recommend certify it; expected gain {score:.0f} examples/s"
        )
    elif mux == incumbent["mux"] and abs(s - incumbent["sparsity"]) < 1e-9:
        reason = (
            f"the current recommendation itself, never measured: measuring it checks its predictions, "
            f"{throughput:.0f} examples/s at accuracy {row['accuracy']:.4f} ± {row['accuracy_std']:.4f}; "
            f"P(within budget) {p_feasible:.0%}; expected gain {score:.0f} examples/s"
        )
    else:
        where = (
            "beyond the measured range"
            if mux > configs["mux"].max() or s > configs["feature_sparsity"].max() + 1e-6
            else "an N never measured"
            if mux not in set(configs["mux"])
            else "between measured points"
        )
        reason = (
            f"{where}: predicted {throughput:.0f} examples/s ({ratio:.2f}x the current recommendation) "
            f"at accuracy {row['accuracy']:.4f} ± {row['accuracy_std']:.4f}; P(within budget) {p_feasible:.0%}; "
            f"expected gain {score:.0f} examples/s"
        )
    if score <= 1e-9 * incumbent["throughput"]:
        reason += " (unlikely to beat what was measured)"
    return Suggestion(
        mux=mux,
        sparsity=s,
        expected_gain=float(score),
        probability_feasible=float(p_feasible),
        accuracy=float(row["accuracy"]),
        accuracy_std=float(row["accuracy_std"]),
        throughput=float(throughput),
        reason=reason,
        repeat=repeat,
    )
