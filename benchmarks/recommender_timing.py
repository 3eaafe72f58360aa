"""Wall time of `autoprumux recommend` on a 40-row table, cold (no saved models: fit, save,
recommend) and warm (the saved arrays), each in a fresh interpreter, and what it imported.

    OMP_NUM_THREADS=1 python benchmarks/recommender_timing.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoprumux.meta.surfaces import make_case

SCRIPT = """
import json, sys
from autoprumux import cli
assert cli.main(["recommend", "--budget", "3%", "--results", sys.argv[1], "--json"]) == 0
print(json.dumps([m for m in ("torch", "transformers", "sklearn") if m in sys.modules]))
"""


def run_once(table: Path) -> tuple[float, list[str]]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(table)], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    return elapsed, json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    case = make_case("smooth", 1, measured_fraction=0.97)
    table = case.table.iloc[:40]
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trials.csv"
        table.to_csv(path, index=False)
        for _ in range(args.repeats):
            for saved in Path(folder).glob("performance_models.*"):
                saved.unlink()
            cold.append(run_once(path))
            warm.append(run_once(path))
    for name, runs in (("cold (fit, save, recommend)", cold), ("warm (saved arrays)", warm)):
        times = sorted(t for t, _ in runs)
        print(f"{name}: median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s; imported {runs[-1][1]}")
    print(f"table: {len(table)} rows, {table[['mux', 'sparsity']].drop_duplicates().shape[0]} configurations")


if __name__ == "__main__":
    main()
