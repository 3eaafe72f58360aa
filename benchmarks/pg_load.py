"""Many workers on one PostgreSQL storage: duplicates, lost results, connections, claim latency, retry time.

Starts a throw-away PostgreSQL server (`autoprumux.testing.postgres`), a sweep over a grid of
`--points` (N, s) points whose trials sleep instead of training, and K worker processes that
join it as `autoprumux worker` does (`run_worker`). One worker is SIGKILLed in the middle of a
trial; the time until its point starts again elsewhere is the crash-to-retry time (heartbeat
`--heartbeat` s, grace `--grace` s). Runs each K in turn and prints one line per K::

    python benchmarks/pg_load.py --workers 8 48 --points 120

"between trials" is what a worker spends from the end of one trial to the start of the next:
reporting the result, exporting the table, failing dead workers' trials and claiming.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autoprumux.spec import spec_from_dict
from autoprumux.sweep.engine import prepare_sweep, run_worker
from autoprumux.sweep.storage import open_storage
from autoprumux.testing.pipelines import SleepPipeline
from autoprumux.testing.postgres import TemporaryPostgres


def _worker(spec, pipeline) -> None:
    run_worker(spec, pipeline=pipeline, wait_s=60)


def _grid(points: int) -> tuple[list[int], list[float]]:
    muxes = list(range(1, 11))
    per_mux = -(-points // len(muxes))
    return muxes, [round(i / (per_mux + 1), 4) for i in range(per_mux)]


def run_one(server: TemporaryPostgres, workers: int, points: int, args) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"pg-load-{workers}-"))
    logs = work / "logs"
    logs.mkdir()
    mux, sparsity = _grid(points)
    spec = spec_from_dict({
        "name": "load", "results_dir": str(work / "results"), "storage": server.new_database(f"load{workers}"),
        "grid": {"mux": mux, "sparsity": sparsity},
        "workers": {"heartbeat_interval": args.heartbeat, "grace_period": args.grace, "max_retries": 2},
    })
    prepare_sweep(spec)
    pipeline = SleepPipeline(args.trial_s, log_dir=str(logs))
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(spec, pipeline)) for _ in range(workers)]
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            try:
                peak[0] = max(peak[0], server.connection_count())
            except Exception:
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.time()
    for process in processes:
        process.start()
    study = optuna.load_study(study_name=spec.name, storage=open_storage(spec.storage_url))
    kill_at, victim_point, victim_number = None, None, None
    while kill_at is None:  # kill one worker in the middle of a trial, once trials are flowing
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        fresh = [t for t in running if t.datetime_start and time.time() - t.datetime_start.timestamp() < 0.3 * args.trial_s]
        if not running and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) and done:
            break  # finished before a trial could be caught mid-sleep: no kill this time
        if fresh and done >= min(points // 4, workers // 2):  # surely in the middle of its sleep
            trial = fresh[0]
            pid = int(trial.user_attrs.get("worker", ":0").rsplit(":", 1)[1])
            if pid and trial.user_attrs.get("run_dir"):
                os.kill(pid, signal.SIGKILL)
                kill_at, victim_point = time.time(), (trial.params["mux"], trial.params["sparsity"])
                victim_number = trial.system_attrs.get("failed_trial", trial.number)
        time.sleep(0.02)
    for process in processes:
        process.join()
    wall = time.time() - start
    stop.set()
    records = [json.loads(line) for path in logs.glob("*.jsonl") for line in path.read_text().splitlines()]
    runs = Counter((r["mux"], r["sparsity"]) for r in records)
    trials = study.get_trials(deepcopy=False)
    complete = Counter((t.params["mux"], t.params["sparsity"]) for t in trials if t.state == TrialState.COMPLETE)
    gaps: list[float] = []
    by_pid: dict[int, list[dict]] = {}
    for record in records:
        by_pid.setdefault(record["pid"], []).append(record)
    for runs_of_pid in by_pid.values():
        runs_of_pid.sort(key=lambda r: r["start"])
        gaps += [b["start"] - a["end"] for a, b in zip(runs_of_pid, runs_of_pid[1:], strict=False)]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim_number and t.datetime_start]
    retry_starts = [t.datetime_start.timestamp() for t in retries]  # Optuna's naive local times
    planned = len(mux) * len(sparsity)
    return {
        "workers": workers,
        "points": planned,
        "wall_s": wall,
        "duplicates": sum(n - 1 for n in complete.values() if n > 1),
        "trained_twice": sum(n - 1 for p, n in runs.items() if n > 1 and p != victim_point),
        "lost": planned - len(complete),
        "peak_connections": peak[0],
        "between_median_s": statistics.median(gaps) if gaps else float("nan"),
        "between_p95_s": statistics.quantiles(gaps, n=20, method="inclusive")[-1] if len(gaps) > 1 else float("nan"),
        "kill_to_retry_s": (min(retry_starts) - kill_at) if retry_starts else float("nan"),
        "exit_codes": Counter(p.exitcode for p in processes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 48])
    parser.add_argument("--points", type=int, default=120)
    parser.add_argument("--trial-s", type=float, default=1.0, help="seconds each trial sleeps")
    parser.add_argument("--heartbeat", type=int, default=2)
    parser.add_argument("--grace", type=int, default=6)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"PostgreSQL load: {args.points} points, trials sleep {args.trial_s:g} s, heartbeat {args.heartbeat} s, "
          f"grace {args.grace} s; {os.cpu_count()} CPU(s); python {sys.version.split()[0]}, optuna {optuna.__version__}")
    header = (f"{'workers':>7} {'points':>6} {'wall s':>7} {'dupl.':>5} {'lost':>4} {'conns':>5} "
              f"{'between trials med/p95 s':>25} {'SIGKILL->retry s':>16}  exit codes")
    print(header)
    with TemporaryPostgres(settings={"max_connections": "300"}) as server:
        for workers in args.workers:
            r = run_one(server, workers, args.points, args)
            print(f"{r['workers']:>7} {r['points']:>6} {r['wall_s']:>7.1f} {r['duplicates'] + r['trained_twice']:>5} "
                  f"{r['lost']:>4} {r['peak_connections']:>5} {r['between_median_s']:>12.3f} / {r['between_p95_s']:<10.3f} "
                  f"{r['kill_to_retry_s']:>16.1f}  {dict(r['exit_codes'])}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
