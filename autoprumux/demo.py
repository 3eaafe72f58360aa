"""`make demo`: the demo sweep (resuming when already done) -> fit -> recommend --budget 3% -> plots,
then the recommended model measured side by side with the baseline.

Run it with `make demo` (or `python -m autoprumux.demo [SPEC]` inside the virtual environment).
Everything it writes goes to `results/<sweep name>/`: trials.csv, the Optuna study, the fitted
performance models and the plots.
"""

from __future__ import annotations

import sys
import time

from autoprumux.cli import main as cli

DEFAULT_SPEC = "sweeps/demo.toml"


def _step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}: autoprumux {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    status = cli(argv)
    if status != 0:
        raise SystemExit(status)
    print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)


def recommended_checkpoints(table, budget: str) -> list[str]:
    """[baseline checkpoint, recommended checkpoint] of a sweep's table, when the recommendation
    is a measured configuration other than the baseline whose checkpoints are on disk; else []."""
    from pathlib import Path

    from autoprumux.meta import load_or_fit_models, load_results, recommend
    from autoprumux.table import finished_rows

    results = load_results(table)
    models, _ = load_or_fit_models(results)
    pick = recommend(results, budget, models=models).recommendation
    if not pick.measured or (pick.mux, pick.sparsity) == (1, 0.0):
        return []
    rows = finished_rows(results.rows)
    paths = []
    for mux, sparsity in ((1, 0.0), (pick.mux, pick.sparsity)):
        match = rows[(rows["mux"] == mux) & ((rows["config_sparsity"] - sparsity).abs() < 1e-6)]
        if match.empty or "checkpoint" not in match or not Path(str(match["checkpoint"].iloc[0])).exists():
            return []
        paths.append(str(match["checkpoint"].iloc[0]))
    return paths


def run_demo(spec_path: str = DEFAULT_SPEC) -> None:
    """Run every step of the demo, printing what it does and where the outputs are."""
    from autoprumux.spec import load_spec

    spec = load_spec(spec_path)
    table = spec.table_path
    out = spec.results_path
    _step("plan", ["sweep", spec_path, "--dry-run"])
    _step("sweep (resumes; finished trials are not rerun)", ["sweep", spec_path])
    _step("status", ["status", spec_path])
    _step("fit the performance models", ["fit", "--results", str(table)])
    _step("recommend", ["recommend", "--budget", "3%", "--results", str(table)])
    _step("suggest what to measure next", ["suggest", "--budget", "3%", "--n", "3", "--results", str(table)])
    _step("plots", ["plot", "--results", str(table), "--out", str(out), "--budget", "3%"])
    checkpoints = recommended_checkpoints(table, "3%")
    if checkpoints:
        bench = spec.training.bench
        _step(
            "the recommendation against the baseline, measured side by side",
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

