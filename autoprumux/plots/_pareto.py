"""Accuracy vs throughput: every measured configuration, each family's Pareto frontier, the budget.

`pareto_info` computes plain data (no matplotlib), `plot_pareto` draws it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from autoprumux.plots._style import (
    ACCURACY_LABEL,
    FAMILIES,
    FRONTIER_STYLES,
    THROUGHPUT_LABEL,
    describe_table,
    mux_colors,
    percent,
    title_with_context,
)
from autoprumux.table import family_of


class MeasuredPoint(NamedTuple):
    """One measured configuration (repeats averaged): accuracy a fraction, throughput examples/s."""

    mux: int
    sparsity: float
    accuracy: float
    throughput: float
    family: str


class Highlight(NamedTuple):
    """The recommended configuration: predicted values with their intervals, and measured ones if any.

    Accuracies are fractions, throughputs examples/s. `reason` is set when no configuration met the
    budget and the baseline is recommended instead.
    """

    mux: int
    sparsity: float
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    throughput: float
    throughput_low: float
    throughput_high: float
    measured: bool
    measured_accuracy: float | None
    measured_throughput: float | None
    reason: str | None = None


class ParetoInfo(NamedTuple):
    """Everything the accuracy-vs-throughput plot shows, as plain data.

    `fronts` maps each family present to its Pareto-optimal points (no other point of the family
    has both higher-or-equal accuracy and throughput, one of them strictly), sorted by throughput.
    `accuracy_floor` and `highlight` are None without a budget.
    """

    points: tuple[MeasuredPoint, ...]
    fronts: dict[str, tuple[MeasuredPoint, ...]]
    baseline_accuracy: float
    accuracy_floor: float | None
    budget_label: str | None
    highlight: Highlight | None
    confidence: float | None
    context: str


def pareto_front(points: Sequence[MeasuredPoint]) -> tuple[MeasuredPoint, ...]:
    """The points no other point dominates in (throughput, accuracy), both maximised.

    Sorted by increasing throughput (so by decreasing accuracy). Exact duplicates are all kept.
    """
    ordered = sorted(points, key=lambda p: (-p.throughput, -p.accuracy))
    front: list[MeasuredPoint] = []
    best_accuracy = -np.inf
    best_key: tuple[float, float] | None = None
    for point in ordered:
        # Everything seen so far has throughput >= this point's; it survives if it is more accurate
        # than all of them, or it ties exactly with the last front point.
        if point.accuracy > best_accuracy or (point.throughput, point.accuracy) == best_key:
            front.append(point)
            best_accuracy = max(best_accuracy, point.accuracy)
            best_key = (point.throughput, point.accuracy)
    return tuple(reversed(front))


def measured_points(configurations) -> tuple[MeasuredPoint, ...]:
    """`MeasuredPoint`s from a configurations frame (columns mux, sparsity, accuracy, throughput)."""
    return tuple(
        MeasuredPoint(int(row.mux), float(row.sparsity), float(row.accuracy), float(row.throughput),
                      family_of(int(row.mux), float(row.sparsity)))
        for row in configurations.itertuples(index=False)
    )


def highlight_from_dict(recommendation: Mapping[str, object], reason: str | None = None) -> Highlight:
    """A `Highlight` from the `recommendation` object of `autoprumux recommend --json`."""
    fields = {name: recommendation.get(name) for name in Highlight._fields if name != "reason"}
    return Highlight(**fields, reason=reason or recommendation.get("reason"))


def pareto_info(results, recommendation: Mapping[str, object] | None = None) -> ParetoInfo:
    """The data of the accuracy-vs-throughput plot of `results` (`autoprumux.meta` Results).

    One point per measured configuration (repeats averaged). `recommendation` is the JSON object
    of `autoprumux recommend` (`Recommendation.to_dict()`); with it the plot shows the budget's
    accuracy floor and highlights the recommended configuration.
    """
    points = measured_points(results.configurations)
    fronts = {}
    for family in FAMILIES:
        members = [p for p in points if p.family == family]
        if members:
            fronts[family] = pareto_front(members)
    floor = label = highlight = confidence = None
    if recommendation is not None:
        from autoprumux.meta import format_budget

        floor = float(recommendation["accuracy_floor"])
        label = f"accuracy floor: baseline − {format_budget(recommendation['budget'], recommendation['relative'])}"
        highlight = highlight_from_dict(recommendation["recommendation"], recommendation.get("reason"))
        confidence = float(recommendation["confidence"])
    return ParetoInfo(points, fronts, float(results.baseline_accuracy), floor, label, highlight, confidence,
                      describe_table(results.rows))


def plot_pareto(info: ParetoInfo, ax: Axes | None = None) -> Figure:
    """Draw `info`: markers coloured by N and shaped by family, frontiers as step lines, the
    budget's accuracy floor and the recommended configuration. Returns the figure."""
    own_figure = ax is None
    if own_figure:
        figure = Figure(figsize=(10.5, 6.0), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    colors = mux_colors(p.mux for p in info.points)
    for family, front in info.fronts.items():
        if len(front) > 1:
            ax.step(
                [p.throughput for p in front], [percent(p.accuracy) for p in front], where="pre",
                color=FRONTIER_STYLES[family][0], linestyle=FRONTIER_STYLES[family][1], linewidth=1.5, zorder=1,
            )
    for point in info.points:
        marker = FAMILIES[point.family][1]
        ax.scatter(
            point.throughput, percent(point.accuracy), marker=marker, s=170 if marker == "*" else 70,
            color=colors[point.mux], edgecolors="black", linewidths=0.6, zorder=3,
        )
    _draw_budget(ax, info)
    ax.set_xscale("log")
    ax.set_xlabel(THROUGHPUT_LABEL)
    ax.set_ylabel(ACCURACY_LABEL)
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)
    _legends(ax, info, colors, outside=own_figure)
    ax.set_title(title_with_context("Accuracy vs throughput of every measured configuration", info.context))
    return figure


def _draw_budget(ax: Axes, info: ParetoInfo) -> None:
    if info.accuracy_floor is not None:
        ax.axhline(percent(info.accuracy_floor), color="tab:red", linestyle="--", linewidth=1.2, zorder=2)
    highlight = info.highlight
    if highlight is None:
        return
    x, y = highlight.throughput, percent(highlight.accuracy)
    ax.errorbar(
        x, y,
        xerr=[[max(x - highlight.throughput_low, 0.0)], [max(highlight.throughput_high - x, 0.0)]],
        yerr=[[max(y - percent(highlight.accuracy_low), 0.0)], [max(percent(highlight.accuracy_high) - y, 0.0)]],
        fmt="D", markersize=9, markerfacecolor="none", markeredgecolor="tab:red", markeredgewidth=1.8,
        ecolor="tab:red", elinewidth=1.2, capsize=3, zorder=4,
    )
    ax.annotate(f"N = {highlight.mux}, s = {highlight.sparsity:.2f}", (x, y), xytext=(12, 10),
                textcoords="offset points", color="tab:red", fontsize="small", fontweight="bold")
    if highlight.measured and highlight.measured_throughput is not None:
        ax.scatter(
            highlight.measured_throughput, percent(highlight.measured_accuracy), s=320, facecolors="none",
            edgecolors="tab:red", linewidths=1.8, zorder=4,
        )


def _legends(ax: Axes, info: ParetoInfo, colors: Mapping[int, object], outside: bool) -> None:
    present = {p.family for p in info.points}
    family_handles = []
    for family, (label, marker) in FAMILIES.items():
        if family not in present:
            continue
        has_line = len(info.fronts.get(family, ())) > 1
        family_handles.append(Line2D(
            [], [], marker=marker, markersize=12 if marker == "*" else 8, color=FRONTIER_STYLES[family][0],
            markerfacecolor="white", markeredgecolor="black",
            linestyle=FRONTIER_STYLES[family][1] if has_line else "none", label=label,
        ))
    if info.accuracy_floor is not None:
        family_handles.append(Line2D([], [], color="tab:red", linestyle="--", label=info.budget_label or "accuracy floor"))
    if info.highlight is not None:
        h = info.highlight
        label = f"recommended: N = {h.mux}, s = {h.sparsity:.2f}\n(predicted, one-sided {info.confidence:.0%} bounds)"
        if h.reason:
            label = f"nothing meets the budget: baseline (N = {h.mux}, s = {h.sparsity:.2f})"
        family_handles.append(Line2D(
            [], [], marker="D", markerfacecolor="none", markeredgecolor="tab:red", color="tab:red",
            linestyle="none", label=label,
        ))
        if h.measured:
            family_handles.append(Line2D(
                [], [], marker="o", markersize=13, markerfacecolor="none", markeredgecolor="tab:red",
                linestyle="none", label="recommended, as measured",
            ))
    mux_handles = [
        Line2D([], [], marker="o", linestyle="none", markerfacecolor=color, markeredgecolor="black",
               markersize=8, label=f"N = {mux}")
        for mux, color in colors.items()
    ]
    legends = ((family_handles, "family · Pareto frontier", "upper"), (mux_handles, "multiplexing width", "lower"))
    for handles, title, where in legends:
        if outside:  # in the figure's right margin, which constrained layout keeps free for them
            ax.figure.legend(handles=handles, title=title, loc=f"outside right {where}", fontsize="small")
        else:
            ax.add_artist(ax.legend(handles=handles, title=title, loc=f"{where} right", fontsize="small"))
