"""Collapsed configurations: accuracy at chance, i.e. a model that did not train.

Chance accuracy is 1 / num_labels when the table records `num_labels`; otherwise it is inferred
as the highest level 1 / k (k = 2 to 20) under every measured accuracy (plus a small margin),
since no classifier scores much below chance. A configuration is collapsed
when its accuracy is closer to chance than to the baseline: within a quarter of the way from
chance up to the baseline, or within three of its own standard errors of chance. Collapsed
points are no point on a smooth curve: the accuracy models leave them out and the optimizer
treats them as infeasible.

>>> round(chance_accuracy(None, [0.51, 0.9]), 3), round(chance_accuracy(3, [0.3]), 3)
(0.5, 0.333)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

COLLAPSE_SHARE = 0.25
MARGIN = 0.03


def chance_accuracy(num_labels: float | None, accuracies: Sequence[float]) -> float:
    """1 / num_labels, or the inferred chance level when `num_labels` is None or NaN."""
    if num_labels is not None and np.isfinite(num_labels) and num_labels >= 2:
        return 1.0 / float(num_labels)
    lowest = float(np.min(accuracies))
    for k in range(2, 21):
        if 1.0 / k <= lowest + MARGIN:
            return 1.0 / k
    return 1.0 / 20


def collapsed(accuracy: np.ndarray, se: np.ndarray, chance: float, baseline: float) -> np.ndarray:
    """Which accuracies (fractions, with standard errors, NaN when unknown) sit at chance."""
    se = np.nan_to_num(np.asarray(se, float))
    threshold = chance + np.maximum(COLLAPSE_SHARE * (baseline - chance), 3.0 * se)
    return np.asarray(accuracy, float) <= threshold


def collapsed_configurations(results, models) -> pd.DataFrame:
    """The collapsed (chance-level) configurations, with `never_trained`: the smooth accuracy
    model puts them well above chance, so the width itself failed rather than the pruning."""
    bad = results.configurations[results.configurations["collapsed"]]
    expected = models.predict(bad[["mux", "feature_sparsity"]].to_numpy(float))["accuracy"] if len(bad) else []
    gap = results.baseline_accuracy - results.chance
    return bad.assign(never_trained=np.asarray(expected, float) - results.chance > 0.5 * gap)


def collapsed_candidates(results, candidates: pd.DataFrame, models) -> np.ndarray:
    """Candidates ruled out by a collapsed measurement at (N, s_c): those of that N with s >= s_c
    (accuracy does not recover with more pruning), and every s of a width that never trained."""
    out = np.zeros(len(candidates), dtype=bool)
    mux, s = candidates["mux"].to_numpy(), candidates["sparsity"].to_numpy(float)
    for row in collapsed_configurations(results, models).itertuples():
        out |= (mux == row.mux) & ((s >= row.sparsity - 1e-9) | row.never_trained)
    return out


def collapse_warnings(results, models) -> list[str]:
    """One warning per collapsed configuration, saying what it rules out."""
    out = []
    for row in collapsed_configurations(results, models).itertuples():
        scope = (
            f"every N={row.mux} configuration (the width never trained)"
            if row.never_trained
            else f"N={row.mux} at s >= {row.sparsity:.2f}"
        )
        out.append(
            f"N={row.mux}, s={row.sparsity:.2f} collapsed: accuracy {row.accuracy:.4f} is at chance "
            f"({results.chance:.3f}); left out of the accuracy model, and {scope} is treated as infeasible"
        )
    return out
