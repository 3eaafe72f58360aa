"""Pipelines that sleep instead of training, for storage tests and load benchmarks.

They have the signature of `autoprumux.train.pipeline.train_configuration` and return metrics
that name the point, so a sweep runs through every part of the engine (claims, heartbeats,
retries, the table) in seconds and without torch. They are picklable, so local worker processes
can run them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SleepPipeline:
    """Sleep `seconds` per grid point (`slow` maps "N,s" to other durations), then report metrics.

    With `log_dir`, each call appends one JSON line (point, pid, start and end times) to
    `<log_dir>/<pid>.jsonl`: what a load test needs to count duplicates and claim latency.
    """

    seconds: float = 0.2
    log_dir: str | None = None
    slow: tuple[tuple[str, float], ...] = ()

    def duration(self, mux: int, sparsity: float) -> float:
        return dict(self.slow).get(f"{mux},{sparsity:g}", self.seconds)

    def __call__(self, settings, mux: int, sparsity: float, out_dir, **_) -> dict:
        start = time.time()
        time.sleep(self.duration(mux, sparsity))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        if self.log_dir is not None:
            record = {"mux": mux, "sparsity": sparsity, "pid": os.getpid(), "start": start, "end": time.time()}
            with open(Path(self.log_dir) / f"{os.getpid()}.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
        return {
            "mux": mux,
            "sparsity_target": sparsity,
            "sparsity": sparsity,
            "accuracy": round(0.9 - 0.05 * sparsity - 0.01 * mux, 6),
            "throughput": round(1000.0 * mux / (1.0 - 0.9 * sparsity), 3),
        }
