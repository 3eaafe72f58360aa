"""Accuracy against N at s = 0, over seeds: does multiplexing keep accuracy as N grows?

Trains the s = 0 model of every N of a spec (default: the demo's) for several seeds with
`autoprumux train`, `--jobs` at a time (each with one CPU thread), and prints one row per N:
mean validation accuracy and its spread over the seeds, the gap to N = 1, what the retrieval
warm-up or pre-training reached, its optimizer steps and the CPU time of the stages.

    python benchmarks/mux_accuracy.py                                  # demo spec, N = 1 2 4 8, seeds 0 1 2
    python benchmarks/mux_accuracy.py --mux 1 4 --seeds 0 --task synthetic-pairs --out runs/pairs

The seed changes the model's initialisation, the batch order and, for the built-in synthetic
tasks, the generated examples too. Runs that already finished in `--out` are read, not retrained.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def train(spec: str, task: str | None, mux: int, seed: int, out: Path) -> dict:
    metrics = out / "metrics.json"
    if not metrics.is_file():
        command = [sys.executable, "-m", "autoprumux.cli", "train", "--spec", spec, "--mux", str(mux),
                   "--seed", str(seed), "--out", str(out), "--task", task or _spec_task(spec)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "train.log", "w") as log:
            subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return json.loads(metrics.read_text())


def _spec_task(spec: str) -> str:
    from autoprumux.spec import load_spec

    return load_spec(spec).training.task


def describe(runs: list[dict]) -> dict:
    accuracy = [r["accuracy"] for r in runs]
    first = [s["metrics"] for s in runs[0]["stages"]]
    before_task = [m for m in first if m.get("stage") in ("pretrain", "warmup")]
    retrieval = [r["retrieval_accuracy"] for r in runs if r.get("retrieval_accuracy") is not None]
    steps = [sum(s["metrics"].get("steps", 0) for s in r["stages"] if s["name"] in ("pretrain", "warmup")) for r in runs]
    cpu = [sum(s["metrics"].get("duration_s", 0.0) for s in r["stages"]) for r in runs]
    return {
        "mean": statistics.mean(accuracy),
        "std": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
        "min": min(accuracy),
        "max": max(accuracy),
        "retrieval": statistics.mean(retrieval) if retrieval else None,
        "before_task": before_task[0]["stage"] if before_task else "-",
        "steps": statistics.mean(steps),
        "cpu_s": statistics.mean(cpu),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="sweeps/demo.toml")
    parser.add_argument("--task", help="override the spec's task")
    parser.add_argument("--mux", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one CPU thread each)")
    parser.add_argument("--out", default="runs/mux_accuracy")
    args = parser.parse_args(argv)
    out = Path(args.out)
    started = time.perf_counter()
    jobs = [(n, seed) for n in args.mux for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {job: pool.submit(train, args.spec, args.task, *job, out / f"n{job[0]}-seed{job[1]}") for job in jobs}
        runs = {job: future.result() for job, future in futures.items()}
    rows = {n: describe([runs[(n, seed)] for seed in args.seeds]) for n in args.mux}
    base = rows[args.mux[0]]["mean"]
    task = args.task or _spec_task(args.spec)
    print(f"{task}, spec {args.spec}, s = 0, seeds {' '.join(map(str, args.seeds))}; "
          f"wall {time.perf_counter() - started:.0f} s with {args.jobs} job(s)")
    print(f"{'N':>3} {'accuracy':>9} {'std':>6} {'min':>6} {'max':>6} {'vs N=' + str(args.mux[0]):>8} "
          f"{'before task':>12} {'retrieval':>9} {'its steps':>9} {'CPU s':>7}")
    for n, row in rows.items():
        retrieval = f"{row['retrieval']:.3f}" if row["retrieval"] is not None else "-"
        print(f"{n:>3} {row['mean']:>9.3f} {row['std']:>6.3f} {row['min']:>6.3f} {row['max']:>6.3f} "
              f"{100 * (row['mean'] - base):>+7.1f}p {row['before_task']:>12} {retrieval:>9} {row['steps']:>9.0f} "
              f"{row['cpu_s']:>7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
