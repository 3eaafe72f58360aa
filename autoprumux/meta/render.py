"""Plain-text renderings of the meta results (the CLI prints them; nothing here computes)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from autoprumux.meta.budget import format_budget
from autoprumux.meta.results import TARGETS

if TYPE_CHECKING:  # types only: rendering a recommendation must not load scikit-learn
    from autoprumux.meta.evaluation import Evaluation
    from autoprumux.meta.optimizer import ConfigEstimate, Recommendation
    from autoprumux.meta.selection import FittedModels
    from autoprumux.meta.suggestion import Suggestions


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def format_fit(models: FittedModels) -> str:
    """Each candidate's cross-validated error per target, the chosen ones marked with *."""
    rows = []
    for target in TARGETS:
        for r in models.cv[models.cv["target"] == target].itertuples():
            regret = "" if target != "accuracy" else f"{r.regret:.3f}"
            rows.append([target, r.model + (" *" if r.chosen else ""), f"{r.error:.3f}", r.unit, regret,
                         f"{r.std_scale:.2f}"])  # fmt: skip
    lines = [
        f"table: {models.source} ({models.n_rows} rows, {models.n_configurations} configurations)",
        f"{_scheme(models)} cross-validation (* = chosen; accuracy by decision regret, throughput by error):",
        "",
        _table(["target", "model", "cv error", "unit", "decision regret", "std scale"], rows),
    ]
    for target in TARGETS:
        chosen = getattr(models, target)
        spread = (
            f"its own predictive std x {chosen.std_scale:.2f} (calibrated on held-out residuals)"
            if chosen.std_source == "native"
            else "the CV residual spread"
        )
        if math.isfinite(chosen.dof):  # the noise was estimated: bounds are Student's t's
            spread += f", Student's t with {chosen.dof:.1f} degrees of freedom"
        lines.append(f"{target}: {chosen.name}, uncertainty from {spread}")
    if models.collapsed:
        listed = ", ".join(f"N={m} s={s:.2f}" for m, s in models.collapsed)
        lines.append(f"collapsed (at chance, left out of the accuracy fit): {listed}")
    return "\n".join(lines)


def _scheme(models: FittedModels) -> str:
    if models.folds >= models.n_configurations:
        return "leave-one-configuration-out"
    return f"grouped {models.folds}-fold (whole configurations held out)"


def _estimate_row(label: str, e: ConfigEstimate) -> list[str]:
    measured = "no"
    if e.measured:
        measured = f"yes: {e.measured_accuracy:.4f}, {e.measured_throughput:,.0f}/s"
    return [
        label,
        str(e.mux),
        f"{e.sparsity:.2f}",
        f"{e.accuracy:.4f} [{e.accuracy_low:.4f}, {e.accuracy_high:.4f}]",
        f"{e.throughput:,.0f} [{e.throughput_low:,.0f}, {e.throughput_high:,.0f}]",
        f"{e.speedup:.2f}x",
        f"{e.probability_within_budget:.0%}",
        measured,
    ]


def format_recommendation(rec: Recommendation) -> str:
    """The recommended configuration and runners-up with intervals, floor, models, warnings."""
    floor_text = (
        f"budget {format_budget(rec.budget, rec.relative)}: baseline accuracy {rec.baseline_accuracy:.4f}, "
        f"floor {rec.accuracy_floor:.4f}, bounds at {rec.confidence:.0%} confidence (one-sided)"
    )
    header = [
        "",
        "N",
        "s",
        "accuracy [low, high]",
        "examples/s [low, high]",
        "speedup",
        "P(within budget)",
        "measured (acc, examples/s)",
    ]
    rows = [_estimate_row("recommended" if rec.feasible else "baseline", rec.recommendation)]
    rows += [_estimate_row(f"runner-up {i}", alt) for i, alt in enumerate(rec.alternatives, 1)]
    if rec.near_miss is not None:
        rows.append(_estimate_row("near miss", rec.near_miss))
    lines = [f"table: {rec.models['table']}", floor_text, ""]
    if not rec.feasible:
        lines += [f"infeasible: {rec.reason}", ""]
    lines.append(_table(header, rows))
    lines += ["", _models_line(rec.models)]
    lines += [f"warning: {w}" for w in rec.warnings]
    return "\n".join(lines)


def _models_line(models: dict) -> str:
    parts = [
        f"{t} = {models[t]['model']} (CV {models[t]['cv_error_unit'].split(',')[0]} "
        f"{models[t]['cv_error']:.2f}{'%' if t == 'throughput' else ' points'})"
        for t in TARGETS
    ]
    return "models: " + "; ".join(parts)


def format_suggestions(sug: Suggestions) -> str:
    """The suggested configurations, best first, each with its reason."""
    inc = sug.incumbent
    lines = [
        f"table: {sug.models['table']}",
        f"budget {format_budget(sug.budget, sug.relative)}: floor {sug.accuracy_floor:.4f}; what recommend picks now "
        f"(the incumbent): N={inc['mux']}, s={inc['sparsity']:.2f} at {inc['throughput']:,.0f} examples/s",
        "",
    ]
    rows = [
        [str(i), str(s.mux), f"{s.sparsity:.2f}", "again, another seed" if s.repeat else "new",
         f"{s.expected_gain:,.0f}", f"{s.probability_feasible:.0%}"]
        for i, s in enumerate(sug.suggestions, 1)
    ]  # fmt: skip
    lines.append(_table(["#", "N", "s", "train", "expected gain (examples/s)", "P(within budget)"], rows))
    lines.append("")
    lines += [f"{i}. N={s.mux}, s={s.sparsity:.2f}: {s.reason}" for i, s in enumerate(sug.suggestions, 1)]
    if not sug.suggestions:
        lines.append("every candidate configuration has been measured already")
    again = [s for s in sug.suggestions if s.repeat]
    if again:
        points = " ".join(f"--repeat {s.mux},{s.sparsity:g}" for s in again)
        lines += ["", f"to train the repeats: autoprumux sweep SPEC {points} (each with the next seed)"]
    return "\n".join(lines)


def format_evaluation(ev: Evaluation) -> str:
    """Per-budget regret, violation rate and oracle agreement, then the overall means."""
    rows = [
        [f"{r.budget:.1%}", f"{r.regret:.3f}", f"{r.violation_rate:.0%}", f"{r.oracle_match:.0%}"]
        for r in ev.summary.itertuples()
    ]
    return "\n".join(
        [
            f"table: {ev.source}",
            f"{ev.n_splits} random splits holding out {ev.holdout} configuration(s) each; "
            f"confidence {ev.confidence:.0%}; {'relative' if ev.relative else 'absolute'} budgets",
            "",
            _table(["budget", "mean regret", "violations", "pick = oracle"], rows),
            "",
            f"mean regret {ev.regret:.3f} (1 - pick's throughput / oracle's); violation rate {ev.violation_rate:.1%}",
            "coverage of the one-sided accuracy bound on hidden configurations: "
            + ", ".join(f"{value:.0%} at {level:.0%}" for level, value in ev.coverage.items()),
        ]
    )
