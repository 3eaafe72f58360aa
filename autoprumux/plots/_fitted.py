"""The fitted performance models over (s, N): one curve per N against s, with its band and the
measured points, for accuracy and for throughput.

`fitted_info` computes plain arrays (no matplotlib), `plot_fitted` draws them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from autoprumux.meta.budget import DEFAULT_CONFIDENCE
from autoprumux.plots._style import ACCURACY_LABEL, describe_table, mux_colors, percent, title_with_context


class FittedCurve(NamedTuple):
    """Predictions along s for one N: accuracy as fractions, throughput in examples/s, each with
    its one-sided lower and upper `confidence` bounds."""

    mux: int
    sparsity: np.ndarray
    accuracy: np.ndarray
    accuracy_low: np.ndarray
    accuracy_high: np.ndarray
    throughput: np.ndarray
    throughput_low: np.ndarray
    throughput_high: np.ndarray


class FittedInfo(NamedTuple):
    """Everything the fitted-surface plot shows. `measured_*` are the table's finished rows (one
    per trial, measured sparsity), `*_model` the names of the chosen models."""

    curves: tuple[FittedCurve, ...]
    measured_mux: np.ndarray
    measured_sparsity: np.ndarray
    measured_accuracy: np.ndarray
    measured_throughput: np.ndarray
    confidence: float
    accuracy_model: str
    throughput_model: str
    accuracy_floor: float | None
    context: str


def fitted_info(
    models, results, confidence: float = DEFAULT_CONFIDENCE, points: int = 80, accuracy_floor: float | None = None
) -> FittedInfo:
    """Evaluate the fitted `models` (`autoprumux.meta` FittedModels) of `results` along s in
    [0, largest measured sparsity] for every N in the table. The band runs between the one-sided
    `confidence` bounds `autoprumux recommend` uses (its `accuracy_low` is the band's lower edge);
    throughput is modelled on a log scale, so its band is multiplicative. `accuracy_floor`
    (fraction), when given, is drawn as a line on the accuracy panel."""
    from autoprumux.meta.optimizer import score_candidates

    rows = results.rows
    grid = np.linspace(0.0, float(rows["sparsity"].max()), points)
    curves = []
    for mux in sorted(int(n) for n in rows["mux"].unique()):
        candidates = pd.DataFrame({"mux": mux, "sparsity": grid, "feature_sparsity": grid, "measured": False,
                                   "measured_accuracy": np.nan, "measured_throughput": np.nan})
        scored = score_candidates(models, candidates, floor=0.0, confidence=confidence)
        curves.append(FittedCurve(mux, grid, *(scored[name].to_numpy(dtype=float) for name in FittedCurve._fields[2:])))
    return FittedInfo(
        tuple(curves),
        rows["mux"].to_numpy(dtype=int),
        rows["sparsity"].to_numpy(dtype=float),
        rows["accuracy"].to_numpy(dtype=float),
        rows["throughput"].to_numpy(dtype=float),
        float(confidence),
        models.accuracy.name,
        models.throughput.name,
        accuracy_floor,
        describe_table(rows),
    )


def plot_fitted(info: FittedInfo, axes: tuple[Axes, Axes] | None = None) -> Figure:
    """Draw `info` as two panels (accuracy, throughput) against sparsity; returns the figure."""
    if axes is None:
        figure = Figure(figsize=(12.0, 5.0), layout="constrained")
        axes = tuple(figure.subplots(1, 2))
    figure = axes[0].figure
    colors = mux_colors(c.mux for c in info.curves)
    band = f"one-sided {info.confidence:.0%} bounds"
    panels = (
        (axes[0], "accuracy", percent(1.0), f"accuracy ({info.accuracy_model} model)"),
        (axes[1], "throughput", 1.0, f"throughput ({info.throughput_model} model)"),
    )
    for ax, target, scale, title in panels:
        for curve in info.curves:
            color = colors[curve.mux]
            mean = getattr(curve, target)
            low, high = getattr(curve, f"{target}_low"), getattr(curve, f"{target}_high")
            ax.fill_between(curve.sparsity, scale * low, scale * high, color=color, alpha=0.18,
                            linewidth=0)
            ax.plot(curve.sparsity, scale * mean, color=color, linewidth=1.8, label=f"N = {curve.mux}")
            mask = info.measured_mux == curve.mux
            measured = getattr(info, f"measured_{target}")[mask]
            ax.scatter(info.measured_sparsity[mask], scale * measured, color=color, edgecolors="black",
                       linewidths=0.6, s=36, zorder=3)
        ax.set_xlabel("sparsity s (fraction of prunable encoder weights removed)")
        ax.set_title(f"{title}, band = {band}", fontsize="medium")
        ax.grid(True, alpha=0.3)
    if info.accuracy_floor is not None:
        axes[0].axhline(percent(info.accuracy_floor), color="tab:red", linestyle="--", linewidth=1.2,
                        label="accuracy floor")
    axes[0].set_ylabel(ACCURACY_LABEL)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("throughput (examples/s, log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, title="multiplexing width", loc="outside right center", fontsize="small")
    figure.suptitle(title_with_context("Fitted performance models (lines) and measurements (dots)", info.context))
    return figure

