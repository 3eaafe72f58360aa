"""`make demo`: the demo sweep (resuming when already done) -> re-measure -> fit -> recommend
--budget 3% -> plots, then the recommendation measured side by side with the baseline and with the
fastest configuration of each technique alone.

Run it with `make demo` (or `python -m autoprumux.demo [SPEC]` inside the virtual environment).
Everything it writes goes to `results/<sweep name>/`: trials.csv, the Optuna study, the fitted
performance models and the plots.
"""

from __future__ import annotations

import sys
import time

from autoprumux.cli import main as cli

DEFAULT_SPEC = "sweeps/demo.toml"
#: Local workers of the demo sweep, one CPU thread each: the tiny model trains about as fast on one
#: thread as on two, so two workers halve the wall time. The throughput each trial measures while
#: the other worker trains is then replaced by the side-by-side `--remeasure`.
DEMO_WORKERS = 2


def _step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}: autoprumux {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    status = cli(argv)
    if status != 0:
        raise SystemExit(status)
    print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)


def comparison_checkpoints(table, budget: str) -> list[str]:
    """Checkpoints the demo measures side by side: the baseline, the recommendation (when it was
    measured), the fastest measured row within the budget, and the fastest measured MUX-only
    (N > 1, s = 0) and CoFi-only (N = 1, s > 0) rows within the budget.

    This is the compounding check: when the fastest row within the budget has N > 1 and s > 0, it
    has to beat the best of each technique alone in one interleaved measurement too. Configurations without a
    checkpoint on disk are left out; fewer than two left gives [].
    """
    from pathlib import Path

    from autoprumux.meta import load_or_fit_models, load_results, recommend
    from autoprumux.meta.budget import accuracy_floor, parse_budget
    from autoprumux.table import finished_rows

    results = load_results(table)
    models, _ = load_or_fit_models(results)
    pick = recommend(results, budget, models=models).recommendation
    rows = finished_rows(results.rows)
    rows = rows[rows["checkpoint"].notna()] if "checkpoint" in rows else rows.iloc[0:0]
    rows = rows[[Path(str(c)).exists() for c in rows["checkpoint"]]]
    floor = accuracy_floor(results.baseline_accuracy, parse_budget(budget))
    within = rows[rows["accuracy"] >= floor - 1e-12]

    def fastest(frame) -> list[str]:
        return [] if frame.empty else [str(frame.loc[frame["throughput"].idxmax(), "checkpoint"])]

    def at(mux: int, sparsity: float):
        return rows[(rows["mux"] == mux) & ((rows["config_sparsity"] - sparsity).abs() < 1e-6)]

    chosen = fastest(at(1, 0.0))
    if not chosen:
        return []
    if pick.measured:
        chosen += fastest(at(pick.mux, pick.sparsity))
    chosen += fastest(within)
    chosen += fastest(within[(within["mux"] > 1) & (within["config_sparsity"] == 0)])
    chosen += fastest(within[(within["mux"] == 1) & (within["config_sparsity"] > 0)])
    unique = list(dict.fromkeys(chosen))
    return unique if len(unique) > 1 else []


def run_demo(spec_path: str = DEFAULT_SPEC) -> None:
    """Run every step of the demo, printing what it does and where the outputs are."""
    from autoprumux.spec import load_spec

    spec = load_spec(spec_path)
    table = spec.table_path
    out = spec.results_path
    _step("plan", ["sweep", spec_path, "--dry-run"])
    _step("sweep (resumes; finished trials are not rerun)", ["sweep", spec_path, "--workers", str(DEMO_WORKERS)])
    _step("re-measure every trial's throughput side by side", ["sweep", spec_path, "--remeasure", "--rounds", "3"])
    _step("status", ["status", spec_path])
    _step("fit the performance models", ["fit", "--results", str(table)])
    _step("recommend", ["recommend", "--budget", "3%", "--results", str(table)])
    _step("suggest what to measure next", ["suggest", "--budget", "3%", "--n", "3", "--results", str(table)])
    _step("plots", ["plot", "--results", str(table), "--out", str(out), "--budget", "3%"])
    checkpoints = comparison_checkpoints(table, "3%")
    if checkpoints:
        bench = spec.training.bench
        _step(
            "baseline, recommendation, fastest measured, MUX-only and CoFi-only within 3%, side by side",
            ["bench", *checkpoints, "--batch", str(bench.batch_size), "--seq-len", str(bench.seq_len),
             "--repeats", str(bench.repeats), "--warmup", str(bench.warmup), "--rounds", "5"],
        )
    print(
        f"\nDone. Results table: {table}\nPlots: {out}/pareto.png and friends\n"
        f"Dashboard: autoprumux dashboard {spec_path}\nNotebook: notebooks/auto_prumux.ipynb"
    )


if __name__ == "__main__":
    run_demo(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SPEC)
    sys.exit(0)

