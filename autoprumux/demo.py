"""`make demo`: the demo sweep (resuming when already done) -> fit -> recommend --budget 3% -> plots.

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
    print(
        f"\nDone. Results table: {table}\nPlots: {out}/pareto.png and friends\n"
        f"Dashboard: autoprumux dashboard {spec_path}\nNotebook: notebooks/auto_prumux.ipynb"
    )


if __name__ == "__main__":
    run_demo(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SPEC)
    sys.exit(0)

