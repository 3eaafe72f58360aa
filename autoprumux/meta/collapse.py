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
