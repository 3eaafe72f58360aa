"""One worker: claim a waiting grid point, train it through the pipeline, record it, repeat.

The worker keeps a heartbeat on its running trial; between trials it fails the trials of dead
workers (`optuna.storages.fail_stale_trials`), whose retry callback queues them again. It stops
when nothing is waiting and nothing is running anywhere (a running trial may still die and come
back as a retry). Ctrl-C or SIGTERM fails the running trial as "interrupted" and queues it again
(without using up a retry), so the study stays consistent and the next run continues with it.

A finished result is never lost: it is written to the trial's folder (`metrics.json`) before it
is told to the study. If the worker then loses the storage for good, or dies, the point's retry
finds the result there and reports it instead of training again.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from autoprumux import progress as progress_board
from autoprumux.spec import SweepSpec
from autoprumux.sweep.export import export_table
from autoprumux.sweep.storage import set_trial_user_attr_once
from autoprumux.sweep.store import StageStore
from autoprumux.sweep.study import (
    OBJECTIVES,
    claim_next_trial,
    duplicate_of,
    repeat_of,
    requeue,
    retried_from,
    seed_of,
)
from autoprumux.table import write_text

METRICS_FILE = "metrics.json"  # what `autoprumux train` writes, and what a worker writes if a pipeline did not
Reporter = Callable[[str], None]
Pipeline = Callable[..., dict]


def _quiet(_: str) -> None:
    pass


@dataclass
class WorkerReport:
    """What one worker did: trials finished / failed / skipped as duplicates, stage builds and reuses."""

    completed: int = 0
    failed: int = 0
    skipped: int = 0
    stages_built: int = 0
    stages_reused: int = 0

    def __str__(self) -> str:
        return (
            f"worker {socket.gethostname()}:{os.getpid()}: {self.completed} trial(s) finished, "
            f"{self.failed} failed, {self.skipped} skipped as duplicates; stages {self.stages_built} "
            f"trained, {self.stages_reused} reused"
        )


def stage_store(spec: SweepSpec) -> StageStore:
    """The sweep's stage store, with lock timing taken from the spec's worker settings."""
    return StageStore(
        spec.artifacts_path,
        heartbeat_s=float(spec.workers.heartbeat_interval),
        stale_after_s=float(spec.workers.grace_period),
    )


def default_pipeline() -> Pipeline:
    from autoprumux.train.pipeline import train_configuration

    return train_configuration


PROGRESS_REPORT_S = 60.0  # how often a worker prints where its trial stands


@contextmanager
def _heartbeat(storage, trial_id: int, label: str = "", report: Reporter = _quiet):
    """Beat every heartbeat interval; with each beat, the trial's progress goes to the study (for
    `status`), and once a minute to `report`."""
    interval = storage.get_heartbeat_interval()
    if interval is None:
        yield
        return
    stop = threading.Event()
    progress_board.reset()

    def beat() -> None:
        last_report = time.monotonic()
        while not stop.wait(interval):
            snap = progress_board.snapshot()
            try:
                storage.record_heartbeat(trial_id)
                if snap is not None:
                    set_trial_user_attr_once(storage, trial_id, "progress", snap)
            except Exception:  # a storage hiccup must not kill the trial; a later beat retries
                pass
            if snap is not None and time.monotonic() - last_report >= PROGRESS_REPORT_S:
                report(f"{label}: {progress_board.describe(snap)}")
                last_report = time.monotonic()

    thread = threading.Thread(target=beat, name=f"trial-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _deaf_to_interrupts():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def _jsonable(value):
    def fallback(obj):
        return obj.item() if hasattr(obj, "item") else str(obj)

    return json.loads(json.dumps(value, default=fallback))


def _objective_values(metrics: dict) -> list[float]:
    values = []
    for name in OBJECTIVES:
        value = metrics.get(name)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"the pipeline returned {name} = {value!r}; expected a finite number")
        values.append(float(value))
    return values


def _fail(study: optuna.Study, trial: optuna.Trial, error: str, **attrs) -> None:
    try:
        trial.set_user_attr("error", error)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # already failed as stale by another worker


def _recorded_result(trial: FrozenTrial) -> tuple[dict, list[float]] | None:
    """The finished metrics an earlier attempt at this point left in its folder, if any.

    A retry starts with a copy of the failed trial's attributes, so `run_dir` names the folder
    of the attempt it retries.
    """
    run_dir = trial.user_attrs.get("run_dir")
    if not run_dir or retried_from(trial) is None:
        return None
    try:
        metrics = json.loads((Path(run_dir) / METRICS_FILE).read_text())
        values = _objective_values(metrics)
    except (OSError, ValueError):
        return None
    for metric, param in (("mux", "mux"), ("sparsity_target", "sparsity")):  # the same point
        if metric in metrics and float(metrics[metric]) != float(trial.params[param]):
            return None
    return metrics, values


def run_trial(
    spec: SweepSpec,
    study: optuna.Study,
    storage,
    trial: optuna.Trial,
    *,
    device: str | None,
    pipeline: Pipeline,
    store: StageStore,
    report: Reporter,
) -> str:
    """Run one claimed trial to the end; returns its final state name (COMPLETE, FAIL, SKIPPED)."""
    mux, sparsity, repeat = int(trial.params["mux"]), float(trial.params["sparsity"]), repeat_of(trial)
    # repeat r of a point trains every stage again with the spec's seed + r
    training = replace(spec.training, seed=seed_of(spec, trial)) if repeat else spec.training
    seeded = f", seed {training.seed}" if repeat else ""
    label = f"trial {trial.number} (N={mux}, s={sparsity:g}{seeded})"
    other = duplicate_of(study, trial.number, (mux, round(sparsity, 6), repeat))
    if other is not None:
        _fail(study, trial, f"duplicate of trial {other.number} ({other.state.name}); not run", skipped=True)
        report(f"{label} skipped: trial {other.number} covers this point")
        return "SKIPPED"
    recorded = _recorded_result(storage.get_trial(trial._trial_id))
    if recorded is not None:
        report(f"{label}: the attempt it retries had finished ({trial.user_attrs['run_dir']}); reporting that result")
        return _tell_finished(study, trial, *recorded, label=label, started=time.monotonic(), report=report)
    out_dir = spec.results_path / "trials" / f"{trial.number:04d}-N{mux}-s{sparsity:g}{f'-seed{training.seed}' if repeat else ''}"
    for stale in ("error", "traceback"):  # a retry starts with a copy of the failed trial's attributes
        if trial.user_attrs.get(stale) is not None:
            trial.set_user_attr(stale, None)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("run_dir", str(out_dir))
    report(f"{label} started")
    start = time.monotonic()
    with _heartbeat(storage, trial._trial_id, label, report):
        try:
            raw = pipeline(training, mux, sparsity, Path(out_dir), device=device, store=store, progress=False)
            metrics = _jsonable(raw)
            values = _objective_values(metrics)
            if not (out_dir / METRICS_FILE).is_file():  # the result is on disk before the study hears of it
                write_text(out_dir / METRICS_FILE, json.dumps(metrics, indent=1))
        except KeyboardInterrupt:
            with _deaf_to_interrupts():  # a second Ctrl-C (the terminal's and the parent's) must not cut this short
                _fail(study, trial, "interrupted (Ctrl-C or SIGTERM); queued again")
                requeue(study, storage.get_trial(trial._trial_id))
            report(f"{label} interrupted; it is queued again")
            raise
        except Exception as exc:
            message = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
            _fail(study, trial, message, traceback=traceback.format_exc()[-8000:])
            report(f"{label} FAILED after {time.monotonic() - start:.0f} s: {message}")
            return TrialState.FAIL.name
    return _tell_finished(study, trial, metrics, values, label=label, started=start, report=report)


def _tell_finished(
    study: optuna.Study, trial: optuna.Trial, metrics: dict, values: list[float], *, label: str,
    started: float, report: Reporter,
) -> str:
    try:
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        study.tell(trial, values)
    except optuna.exceptions.UpdateFinishedTrialError:
        report(f"{label} was declared dead while running (no heartbeat); its retry reports this result")
        return TrialState.FAIL.name
    busy = " (flagged: the machine was busy while measuring)" if metrics.get("throughput_busy") else ""
    report(
        f"{label} finished in {time.monotonic() - started:.0f} s: accuracy {values[0]:.4f}, "
        f"throughput {values[1]:.1f} examples/s{busy}"
    )
    return TrialState.COMPLETE.name


def fail_dead_workers_trials(study: optuna.Study) -> None:
    """Fail running trials whose heartbeat is older than the grace period; the callback requeues them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def work(
    spec: SweepSpec,
    study: optuna.Study,
    storage,
    *,
    device: str | None = None,
    pipeline: Pipeline | None = None,
    report: Reporter | None = None,
) -> WorkerReport:
    """Claim and run waiting trials until none is waiting or running; export the table after each."""
    report = report or _quiet
    pipeline = pipeline or default_pipeline()
    store = stage_store(spec)
    summary = WorkerReport()
    poll_s = max(1.0, min(5.0, float(spec.workers.heartbeat_interval)))
    with _sigterm_as_interrupt():
        while True:
            fail_dead_workers_trials(study)
            trial = claim_next_trial(study, storage)
            if trial is None:
                if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    break
                time.sleep(poll_s)  # others are running: one may die and come back as a retry
                continue
            state = run_trial(
                spec, study, storage, trial, device=device, pipeline=pipeline, store=store, report=report
            )
            summary.completed += state == "COMPLETE"
            summary.failed += state == "FAIL"
            summary.skipped += state == "SKIPPED"
            export_table(spec, study)
    summary.stages_built, summary.stages_reused = store.built, store.reused
    return summary
