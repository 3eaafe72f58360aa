"""The study -> the results table (`results/<sweep>/trials.csv`), one row per grid point and per
repeat of one (another seed: `sweep --repeat`).

A point's row is its finished trial; without one, its running, waiting or (last) failed trial,
so a failed point keeps its error message until a retry finishes it. Retried trials are new trial
numbers; `retry_of` names the trial they retry. Schema columns come from `autoprumux.table`;
`family`, `retry_of` and `error` are extra columns after them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from autoprumux.spec import SweepSpec
from autoprumux.sweep.remeasure import apply_remeasured
from autoprumux.sweep.study import OBJECTIVES, retried_from, seed_of, trials_by_replica
from autoprumux.table import COLUMNS, rows_to_frame, write_table

EXTRA_COLUMNS = ("family", "retry_of", "error")


def _iso(moment: datetime | None) -> str | None:
    # Optuna stores naive local times; the table records UTC.
    return None if moment is None else moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def representative_trial(trials: list[FrozenTrial]) -> FrozenTrial:
    """The trial that stands for a grid point: the first finished one, else the latest attempt."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        return min(complete, key=lambda t: t.number)
    for state in (TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL):
        matching = [t for t in trials if t.state == state]
        if matching:
            return max(matching, key=lambda t: t.number)
    return max(trials, key=lambda t: t.number)


def trial_row(spec: SweepSpec, trial: FrozenTrial) -> dict:
    """The table row of one trial: its metrics (user attributes) plus identity and timing."""
    attrs = trial.user_attrs
    row: dict = {name: attrs[name] for name in COLUMNS if name in attrs}
    row.update(
        sweep=spec.name,
        task=attrs.get("task", spec.training.task),
        model=attrs.get("model", spec.training.model),
        seed=attrs.get("seed", seed_of(spec, trial)),
        mux=int(trial.params["mux"]),
        sparsity_target=float(trial.params["sparsity"]),
        status=trial.state.name,
        trial_number=trial.number,
        started_at=_iso(trial.datetime_start),
        finished_at=_iso(trial.datetime_complete),
    )
    if trial.state == TrialState.COMPLETE:
        row.update(dict(zip(OBJECTIVES, trial.values, strict=True)))
        if "duration_s" not in row and trial.duration is not None:
            row["duration_s"] = trial.duration.total_seconds()
    error = attrs.get("error")
    if trial.state == TrialState.FAIL and not error:
        error = (
            f"no heartbeat for more than {spec.workers.grace_period} s: its worker died or lost the storage"
        )
    row.update(family=attrs.get("family"), retry_of=retried_from(trial), error=error)
    return row


def results_frame(spec: SweepSpec, study: optuna.Study) -> pd.DataFrame:
    """The results table of a study as a DataFrame, one row per grid point and repeat, sorted by
    (N, s, repeat)."""
    groups = trials_by_replica(study)
    rows = [trial_row(spec, representative_trial(groups[point])) for point in sorted(groups)]
    frame = apply_remeasured(spec, rows_to_frame(rows))
    for name in (*COLUMNS, *EXTRA_COLUMNS):
        if name not in frame.columns:
            frame[name] = pd.NA
    return frame


def export_table(spec: SweepSpec, study: optuna.Study) -> Path:
    """Write the study's results table to `spec.table_path` atomically and return the path."""
    return write_table(results_frame(spec, study), spec.table_path)
