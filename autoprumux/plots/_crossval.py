"""Cross-validated predicted vs measured values of both performance models (y = x is perfect).

`cross_validation_info` computes plain arrays (no matplotlib), `plot_cross_validation` draws them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from autoprumux.plots._style import describe_table, mux_colors, title_with_context


class CrossValidationPanel(NamedTuple):
    """One target's leave-one-configuration-out predictions for every finished row.

    `measured` and `predicted` are accuracy fractions or throughputs in examples/s; `error` is
    the CV error reported by `autoprumux fit` in `error_unit` (accuracy: MAE in points,
    throughput: MAPE in percent).
    """

    target: str
    model: str
    mux: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    error: float
    error_unit: str


class CrossValidationInfo(NamedTuple):
    panels: tuple[CrossValidationPanel, ...]
    context: str


def cross_validation_info(models, results) -> CrossValidationInfo:
    """Out-of-fold predictions of the chosen model of each target of `models` (`autoprumux.meta`
    FittedModels), each configuration of `results` predicted by a model fitted without it (the
    same folds `autoprumux fit` scores the models on)."""
    from autoprumux.meta.selection import cross_validated

    panels = []
    for target in ("accuracy", "throughput"):
        chosen = getattr(models, target)
        mux, y, oof = cross_validated(models, results, target)
        if target == "throughput":  # modelled as log(examples/s)
            y, oof = np.exp(y), np.exp(oof)
        row = models.cv[(models.cv["target"] == target) & (models.cv["model"] == chosen.name)].iloc[0]
        panels.append(CrossValidationPanel(target, chosen.name, mux, y, oof, float(row["error"]), str(row["unit"])))
    return CrossValidationInfo(tuple(panels), describe_table(results.rows))


def plot_cross_validation(info: CrossValidationInfo, axes: tuple[Axes, ...] | None = None) -> Figure:
    """Draw each panel of `info` as predicted against measured with the y = x line; returns the figure."""
    if axes is None:
        figure = Figure(figsize=(11.0, 5.0), layout="constrained")
        axes = tuple(figure.subplots(1, len(info.panels)))
    figure = axes[0].figure
    colors = mux_colors(int(n) for panel in info.panels for n in panel.mux)
    for ax, panel in zip(axes, info.panels, strict=True):
        scale = 100.0 if panel.target == "accuracy" else 1.0
        measured, predicted = scale * panel.measured, scale * panel.predicted
        for mux, color in colors.items():
            mask = panel.mux == mux
            ax.scatter(measured[mask], predicted[mask], color=color, edgecolors="black", linewidths=0.6, s=40,
                       label=f"N = {mux}", zorder=3)
        low, high = _limits(np.concatenate([measured, predicted]), log=panel.target == "throughput")
        ax.plot([low, high], [low, high], color="0.4", linestyle="--", linewidth=1.0, label="y = x", zorder=2)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        unit = "%" if panel.target == "accuracy" else "examples/s"
        if panel.target == "throughput":
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"measured {panel.target} ({unit})")
        ax.set_ylabel(f"cross-validated prediction ({unit})")
        ax.set_title(f"{panel.target}: {panel.model} model, CV {panel.error_unit.split(',')[0]} "
                     f"{panel.error:.2f}{' points' if panel.target == 'accuracy' else '%'}", fontsize="medium")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, title="multiplexing width", loc="outside right center", fontsize="small")
    figure.suptitle(title_with_context(
        "Cross-validated predictions vs measurements (each configuration held out of its model's fit)",
        info.context))
    return figure


def _limits(values: np.ndarray, log: bool) -> tuple[float, float]:
    low, high = float(np.min(values)), float(np.max(values))
    if log:
        pad = (high / low) ** 0.06 if high > low else 1.1
        return low / pad, high * pad
    pad = 0.06 * (high - low) if high > low else 0.5
    return low - pad, high + pad
