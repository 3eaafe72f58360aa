"""`autoprumux sweep SPEC --remeasure`: every finished trial's throughput again, side by side.

Each trial measures its model's throughput when it finishes, so two rows of one table carry
whatever the machine was doing at two different times (and, with several local workers, each
other's training). Re-measuring loads every finished checkpoint in one process and benchmarks
them in interleaved rounds (`autoprumux.bench.compare_throughput`), so drift hits them alike.

The figures go to `results/<sweep>/remeasured.json`, keyed by checkpoint, and the table export
applies them: `throughput` and `throughput_spread` become the re-measured median over rounds and
its interquartile range over rounds, and the figure measured at the end of the trial stays in
`throughput_at_trial`. Nothing is retrained; rerunning re-measures again and replaces the file.
"""

from __future__ import annotations

import json
import statistics
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from autoprumux.errors import AutoprumuxError
from autoprumux.spec import SweepSpec
from autoprumux.table import finished_rows, write_text

REMEASURE_FILE = "remeasured.json"


def remeasure_path(spec: SweepSpec) -> Path:
    return spec.results_path / REMEASURE_FILE


def remeasure(spec: SweepSpec, frame: pd.DataFrame, *, rounds: int = 3, device: str | None = None,
              report=print) -> Path:
    """Benchmark the checkpoints of `frame`'s finished rows in `rounds` interleaved rounds; write the file."""
    from autoprumux.bench import (
        BUSY_SPREAD,
        bench_options,
        compare_throughput,
        load_checkpoint_model,
        resolve_device,
    )
    from autoprumux.train.pipeline import code_version

    rows = finished_rows(frame)
    checkpoints = [str(c) for c in rows["checkpoint"].dropna()] if "checkpoint" in rows else []
    checkpoints = [c for c in checkpoints if Path(c).exists()]
    if not checkpoints:
        raise AutoprumuxError(f"sweep {spec.name!r} has no finished trial with a checkpoint on disk to re-measure")
    torch_device = resolve_device(device)
    bench = spec.training.bench
    report(f"re-measuring {len(checkpoints)} checkpoints in {rounds} interleaved rounds on {torch_device.type}")
    models = {path: load_checkpoint_model(Path(path)) for path in checkpoints}
    comparison = compare_throughput(models, rounds=rounds, device=torch_device, report=report, **bench_options(bench))
    finished = dict(zip(rows["checkpoint"].astype(str), rows["finished_at"].astype(str), strict=True))
    measured = {}
    for path in checkpoints:
        rates = sorted(r.examples_per_second for r in comparison.rounds[path])
        quartiles = statistics.quantiles(rates, n=4, method="inclusive") if len(rates) > 1 else [rates[0]] * 3
        measured[path] = {
            "throughput": statistics.median(rates),
            "throughput_spread": quartiles[2] - quartiles[0],
            "rounds": rates,
            "finished_at": finished[path],  # the trial this model came from; a retrained point is not matched
            "hardware": comparison.rounds[path][0].hardware,
            "dtype": bench.dtype,
            # the re-measured figure's own flag: a busy round, or rounds that disagree
            "throughput_busy": int(any(r.busy_reason() for r in comparison.rounds[path])
                                   or quartiles[2] - quartiles[0] > BUSY_SPREAD * statistics.median(rates)),
        }
    payload = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "rounds": rounds,
        "checkpoints": measured,
    }
    return write_text(remeasure_path(spec), json.dumps(payload, indent=2) + "\n")


def apply_remeasured(spec: SweepSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the re-measured throughputs in place, when `remeasured.json` exists."""
    path = remeasure_path(spec)
    if not path.is_file() or "checkpoint" not in frame.columns:
        return frame
    measured = json.loads(path.read_text())["checkpoints"]
    frame = frame.copy()
    at_trial = frame["throughput"].astype("Float64")
    frame["throughput_at_trial"] = at_trial
    for index, checkpoint in frame["checkpoint"].items():
        figures = measured.get(str(checkpoint)) if not pd.isna(checkpoint) else None
        if figures is None or figures["finished_at"] != str(frame.loc[index, "finished_at"]):
            frame.loc[index, "throughput_at_trial"] = pd.NA  # not re-measured: its figure is the trial's own
            continue
        for name in ("throughput", "throughput_spread", "hardware", "dtype", "throughput_busy"):
            if name in figures:  # files written before dtype was recorded measured fp32 and lack it
                frame.loc[index, name] = figures[name]
    return frame
