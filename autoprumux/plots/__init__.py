"""Plots of a results table: Pareto frontiers, fitted performance models, cross-validation.

Each plot is a pure `*_info(...)` function returning plain data (NamedTuples of numbers and
arrays) and a `plot_*(info)` renderer returning a `matplotlib.figure.Figure`; `plot_results`
does all three for a table and writes PNG and SVG files. Nothing here imports torch.

>>> from autoprumux.plots import plot_results
>>> paths = plot_results("results/demo/trials.csv", "results/demo", budget="3%")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from autoprumux.meta.budget import DEFAULT_CONFIDENCE
from autoprumux.plots._crossval import (
    CrossValidationInfo,
    CrossValidationPanel,
    cross_validation_info,
    plot_cross_validation,
)
from autoprumux.plots._fitted import FittedCurve, FittedInfo, fitted_info, plot_fitted
from autoprumux.plots._pareto import (
    Highlight,
    MeasuredPoint,
    ParetoInfo,
    highlight_from_dict,
    pareto_front,
    pareto_info,
    plot_pareto,
)
from autoprumux.plots._style import FAMILIES, FORMATS, describe_table, save_figure
from autoprumux.table import family_of

__all__ = [
    "FAMILIES",
    "FORMATS",
    "CrossValidationInfo",
    "CrossValidationPanel",
    "FittedCurve",
    "FittedInfo",
    "Highlight",
    "MeasuredPoint",
    "ParetoInfo",
    "cross_validation_info",
    "describe_table",
    "family_of",
    "fitted_info",
    "highlight_from_dict",
    "pareto_front",
    "pareto_info",
    "plot_cross_validation",
    "plot_fitted",
    "plot_pareto",
    "plot_results",
    "save_figure",
]

#: File stems written by `plot_results`, one PNG and one SVG each.
PLOT_NAMES = ("pareto", "fitted", "cross_validation")


def plot_results(
    results: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    budget: str | float | None = None,
    *,
    relative: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Draw the three plots of a results table and write them to `out_dir`; returns the paths.

    `results` is a table path (None: the newest `results/*/trials.csv`). With `budget` (`"3%"`,
    `0.03`; absolute accuracy points unless `relative`), the accuracy-vs-throughput plot also shows
    the accuracy floor and the configuration `autoprumux recommend` picks at `confidence`
    (default: `recommend`'s).
    Writes `pareto`, `fitted` and `cross_validation`, each as `.png` and `.svg`. Raises
    `TableError` / `BudgetError` for a missing or malformed table or budget.
    """
    from autoprumux.meta import load_or_fit_models, load_results, parse_budget, recommend
    from autoprumux.meta.optimizer import check_confidence

    budget_fraction = parse_budget(budget) if budget is not None else None
    confidence = check_confidence(confidence)
    loaded = load_results(results)
    models, _ = load_or_fit_models(loaded, save=False)
    recommendation = None
    if budget_fraction is not None:
        recommendation = recommend(
            loaded, budget_fraction, models=models, confidence=confidence, relative=relative
        ).to_dict()
    figures = {
        "pareto": plot_pareto(pareto_info(loaded, recommendation)),
        "fitted": plot_fitted(fitted_info(
            models, loaded, confidence=confidence,
            accuracy_floor=recommendation["accuracy_floor"] if recommendation else None,
        )),
        "cross_validation": plot_cross_validation(cross_validation_info(models, loaded)),
    }
    out = Path(out_dir)
    return [path for stem, figure in figures.items() for path in save_figure(figure, out, stem, formats)]
