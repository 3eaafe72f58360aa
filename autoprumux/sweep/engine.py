"""The sweep verbs behind the CLI: run a sweep, join one as a worker, report status, open the dashboard.

On one machine, with K local worker processes (one GPU each when there are GPUs)::

    autoprumux sweep sweeps/demo.toml --workers 2

On many machines, share a PostgreSQL/MySQL storage and the results folder (e.g. NFS), start the
sweep once and join from every other machine::

    autoprumux sweep sweeps/glue-sst2-bert-base.toml --storage postgresql://u:pw@db/sweeps
    autoprumux worker sweeps/glue-sst2-bert-base.toml --storage postgresql://u:pw@db/sweeps

Running `sweep` again resumes: finished trials are kept, interrupted or failed points run again,
and stage outputs already in `results/<name>/artifacts/` are reused.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from autoprumux import progress as progress_board
from autoprumux.errors import StorageError, SweepNotStarted
from autoprumux.machine import cpu_cores, yield_threads_if_busy
from autoprumux.spec import SweepSpec
from autoprumux.sweep.export import results_frame
from autoprumux.sweep.plan import plan_sweep
from autoprumux.sweep.provenance import write_provenance
from autoprumux.sweep.storage import open_storage, redact_url, sqlite_path, storage_lock
from autoprumux.sweep.store import stage_counts
from autoprumux.sweep.study import (
    check_repeats,
    create_sweep_study,
    load_sweep_study,
    point_state,
    queue_missing_points,
    queue_repeats,
    trials_by_replica,
)
from autoprumux.sweep.worker import (
    Pipeline,
    Reporter,
    WorkerReport,
    _quiet,
    _sigterm_as_interrupt,
    fail_dead_workers_trials,
    work,
)
from autoprumux.table import write_table


def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---------------------------------------------------------------------------------------------
# status


@dataclass(frozen=True)
class SweepStatus:
    """Where a sweep stands, counted per grid point and repeat of one (a retried point counts once)."""

    name: str
    storage: str  # URL, password redacted
    table_path: Path
    started: bool
    points: int  # grid points of the spec plus any other point the study holds, and repeats
    done: int
    running: int
    waiting: int
    failed: int
    not_queued: int
    trials: dict[str, int] = field(default_factory=dict)  # Optuna trials by state
    running_trials: tuple[str, ...] = ()  # one line each: point, worker, stage and progress
    stages_built: int = 0
    stages_reused: int = 0
    repeats: int = 0  # of `points`: repeats of a grid point (`sweep --repeat`)


def sweep_status(spec: SweepSpec) -> SweepStatus:
    """Count the sweep's grid points by state, without changing anything."""
    _quiet_optuna()
    planned = {(t.mux, round(t.sparsity, 6), 0) for t in plan_sweep(spec).trials}
    counts = stage_counts(spec.artifacts_path)
    common = dict(
        name=spec.name,
        storage=redact_url(spec.storage_url),
        table_path=spec.table_path,
        stages_built=counts.built,
        stages_reused=counts.reused,
    )
    not_started = SweepStatus(**common, started=False, points=len(planned), done=0, running=0, waiting=0,
                              failed=0, not_queued=len(planned))
    try:  # reads only: a storage without Optuna's tables is a sweep that has not started
        storage = open_storage(spec.storage_url)
        if spec.name not in optuna.study.get_all_study_names(storage):
            return not_started
    except SweepNotStarted:
        return not_started
    study = load_sweep_study(spec, storage)
    groups = trials_by_replica(study)
    states = Counter(point_state(p, groups.get(p, [])).state for p in planned | set(groups))
    repeats = sum(1 for p in groups if p[2] > 0)
    trials = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    return SweepStatus(
        **common,
        started=True,
        points=sum(states.values()),
        done=states["COMPLETE"],
        running=states["RUNNING"],
        running_trials=tuple(_running_line(t) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))),
        waiting=states["WAITING"],
        failed=states["FAIL"],
        not_queued=states[None],
        trials=dict(trials),
        repeats=repeats,
    )


def _running_line(trial: FrozenTrial) -> str:
    attrs = trial.user_attrs
    return (f"trial {trial.number} (N={trial.params.get('mux')}, s={trial.params.get('sparsity', 0):g}) on "
            f"{attrs.get('worker', '?')}: {progress_board.describe(attrs.get('progress'))}")


def _not_found(name: str, storage: str) -> str:
    """Where a sweep that has not started was looked for (a typo in --storage shows here)."""
    db_file = sqlite_path(storage)
    if db_file is not None and not db_file.is_file():
        return f"there is no database file {str(db_file)!r}"
    return f"the storage holds no study named {name!r}"  # or no Optuna tables at all


def _points(status: SweepStatus) -> str:
    """'20 grid points', with how many of them are repeats (another seed of a point) when any are."""
    if not status.repeats:
        return f"{status.points} grid points"
    return f"{status.points} grid points ({status.repeats} of them {'a repeat' if status.repeats == 1 else 'repeats'}: another seed)"


def format_status(status: SweepStatus) -> str:
    """A few readable lines of a `SweepStatus`."""
    head = f"sweep {status.name!r} ({status.storage}): {_points(status)}"
    if not status.started:
        return f"{head}, not started: {_not_found(status.name, status.storage)}\ntable: {status.table_path}"
    trials = ", ".join(f"{n} {s.lower()}" for s, n in sorted(status.trials.items()))
    return "\n".join(
        [
            head,
            f"done {status.done}, running {status.running}, waiting {status.waiting}, "
            f"failed {status.failed}, not queued {status.not_queued}",
            f"trials: {trials or 'none'}",
            *(f"  running {line}" for line in status.running_trials),
            f"stages: {status.stages_built} trained, {status.stages_reused} reused from cache",
            f"table: {status.table_path}",
        ]
    )


# ---------------------------------------------------------------------------------------------
# running


@dataclass(frozen=True)
class SweepSummary:
    """The outcome of `run_sweep`: the final status, the points queued by this run and wall time (s)."""

    status: SweepStatus
    queued: int
    workers: int
    wall_s: float
    worker_exit_codes: tuple[int, ...] = ()

    def __str__(self) -> str:
        s = self.status
        crashed = [c for c in self.worker_exit_codes if c != 0]
        lines = [
            f"sweep {s.name!r}: {s.done}/{_points(s)} done, {s.failed} failed, "
            f"{s.running + s.waiting} left, in {self.wall_s:.0f} s with {self.workers} worker(s)",
            f"stages: {s.stages_built} trained, {s.stages_reused} reused from cache",
            f"table: {s.table_path}",
        ]
        if crashed:
            lines.append(f"{len(crashed)} worker process(es) exited with an error (status {crashed})")
        return "\n".join(lines)


@dataclass(frozen=True)
class LocalWorker:
    """How one local worker process is placed: environment, device and CPU threads."""

    index: int
    device: str | None
    env: dict[str, str]
    threads: int | None


def local_workers(count: int, device: str | None = None, gpus: int | None = None) -> list[LocalWorker]:
    """Placement of `count` local workers: one GPU each (round robin) when there are GPUs and
    `device` is None or "cuda", else CPU threads split evenly (at least one each).

    `gpus` defaults to `torch.cuda.device_count()`.
    """
    if gpus is None:
        gpus = 0
        if device is None or device == "cuda":
            import torch

            gpus = torch.cuda.device_count()
    if gpus > 0 and device in (None, "cuda"):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(gpus)]
        return [
            LocalWorker(i, "cuda", {"CUDA_VISIBLE_DEVICES": ids[i % len(ids)]}, None) for i in range(count)
        ]
    threads = max(1, cpu_cores() // count)
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return [LocalWorker(i, device, dict(env), threads) for i in range(count)]


def _local_worker_main(spec: SweepSpec, placement: LocalWorker, pipeline: Pipeline | None) -> None:
    def report(message: str) -> None:
        print(f"[worker {placement.index}] {message}", flush=True)

    os.environ.update(placement.env)  # before torch is imported in this fresh process
    try:
        if placement.threads is not None:
            import torch

            torch.set_num_threads(placement.threads)
        summary = run_worker(spec, device=placement.device, progress=report, pipeline=pipeline)
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the group; the parent reports it
        return
    report(str(summary))


def _run_local_workers(
    spec: SweepSpec, count: int, device: str | None, pipeline: Pipeline | None, report: Reporter
) -> tuple[int, ...]:
    context = multiprocessing.get_context("spawn")
    placements = local_workers(count, device)
    processes = [
        context.Process(
            target=_local_worker_main, args=(spec, p, pipeline), name=f"autoprumux-worker-{p.index}"
        )
        for p in placements
    ]
    for process, placement in zip(processes, placements, strict=True):
        process.start()
        where = placement.env.get("CUDA_VISIBLE_DEVICES")
        report(
            f"worker {placement.index} started (pid {process.pid}, "
            + (f"GPU {where})" if where else f"{placement.threads} CPU thread(s))")
        )
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:  # a Ctrl-C sent to this process alone must reach them too
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        for process in processes:  # give them time to requeue their trials
            process.join(timeout=30)
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()
        raise
    return tuple(p.exitcode or 0 for p in processes)


def _warn_if_busy(report: Reporter) -> None:
    reason = yield_threads_if_busy()  # local worker processes inherit the setting
    if reason:
        report(f"warning: {reason}: trials will train slower, and throughputs measured now are flagged "
               "(`sweep --remeasure` on a quiet machine measures them again)")


def prepare_sweep(
    spec: SweepSpec, repeats: tuple[tuple[int, float], ...] = ()
) -> tuple[optuna.Study, object, list[tuple[int, float, int]]]:
    """Create or load the sweep's study, fail dead workers' trials, queue unfinished grid points
    and one more training of each point in `repeats` (`queue_repeats`).

    Returns the study, its storage and the (N, s, repeat) queued now. This is the only place that queues.
    """
    _quiet_optuna()
    with storage_lock(spec.storage_url):  # sweeps started together create and queue once
        storage = open_storage(spec.storage_url, spec.workers, create=True)
        study = create_sweep_study(spec, storage)
        fail_dead_workers_trials(study)
        plan = plan_sweep(spec)
        queued = queue_missing_points(study, plan) + queue_repeats(study, plan, list(repeats))
    return study, storage, queued


def run_sweep(
    spec: SweepSpec,
    *,
    workers: int = 1,
    device: str | None = None,
    progress: Reporter | None = None,
    pipeline: Pipeline | None = None,
    repeats: tuple[tuple[int, float], ...] = (),
) -> SweepSummary:
    """Run or resume a sweep: create/load its study, queue the unfinished grid points and one more
    training of each point in `repeats` (with the next seed), work them off.

    `workers` > 1 starts that many local worker processes (see `local_workers`); 1 works in this
    process. `pipeline` replaces `autoprumux.train.pipeline.train_configuration` (same signature;
    for custom pipelines and tests; it must be picklable when `workers` > 1). Returns when no
    point is waiting or running; the table is exported after every finished trial and at the end,
    when `results/<name>/README.md` (how the table was produced, `sweep.provenance`) is rewritten too.
    """
    report = progress or _quiet
    start = time.monotonic()
    check_repeats(plan_sweep(spec), list(repeats))  # before anything is created or queued
    if not sweep_status(spec).started:  # say so before anything trains: a mistyped --storage lands here
        report(
            f"starting a NEW sweep {spec.name!r}: {_not_found(spec.name, redact_url(spec.storage_url))}, "
            "so it is created there and every grid point runs from the start"
        )
    _warn_if_busy(report)
    study, storage, queued = prepare_sweep(spec, repeats)
    before = sweep_status(spec)
    report(
        f"sweep {spec.name!r}: {_points(before)}, {before.done} already done, "
        f"{len(queued)} queued now; storage {before.storage}"
    )
    exit_codes: tuple[int, ...] = ()
    try:
        if before.running + before.waiting == 0:
            pass  # everything is done (or failed for good in this run): nothing to start
        elif workers == 1:
            summary: WorkerReport = work(spec, study, storage, device=device, pipeline=pipeline, report=report)
            report(str(summary))
        else:
            with _sigterm_as_interrupt():
                exit_codes = _run_local_workers(spec, workers, device, pipeline, report)
    finally:
        frame = results_frame(spec, study)
        write_table(frame, spec.table_path)
    status = sweep_status(spec)
    write_provenance(spec, frame, stages_built=status.stages_built, stages_reused=status.stages_reused)
    return SweepSummary(
        status=status,
        queued=len(queued),
        workers=workers,
        wall_s=time.monotonic() - start,
        worker_exit_codes=exit_codes,
    )


def remeasure_sweep(
    spec: SweepSpec, *, rounds: int = 3, device: str | None = None, progress: Reporter | None = None
) -> Path:
    """Re-measure every finished trial's throughput side by side (`sweep.remeasure`); rewrite the table.

    Returns the table's path. Trains nothing; the sweep must exist.
    """
    from autoprumux.sweep.remeasure import remeasure

    report = progress or _quiet
    _quiet_optuna()
    status = sweep_status(spec)
    if not status.started:
        raise StorageError(f"sweep {spec.name!r} has not started in {status.storage}; run it before --remeasure")
    study = load_sweep_study(spec, open_storage(spec.storage_url))
    path = remeasure(spec, results_frame(spec, study), rounds=rounds, device=device, report=report)
    frame = results_frame(spec, study)
    write_table(frame, spec.table_path)
    write_provenance(spec, frame, stages_built=status.stages_built, stages_reused=status.stages_reused)
    report(f"re-measured throughputs: {path}; table: {spec.table_path}")
    return spec.table_path


def run_worker(
    spec: SweepSpec,
    *,
    device: str | None = None,
    progress: Reporter | None = None,
    pipeline: Pipeline | None = None,
    wait_s: float = 0.0,
) -> WorkerReport:
    """Join a sweep (started by `run_sweep`) and work until nothing is left to do.

    A worker may start before the sweep exists (a job array launching the sweep and its workers
    together): it waits up to `wait_s` seconds for the sweep's study to appear, then raises
    `SweepNotStarted`.
    """
    _quiet_optuna()
    report = progress or _quiet
    _warn_if_busy(report)
    deadline, said = time.monotonic() + wait_s, False
    while True:
        try:
            storage = open_storage(spec.storage_url, spec.workers)
            study = load_sweep_study(spec, storage)
            break
        except SweepNotStarted:
            if time.monotonic() >= deadline:
                raise
            if not said:
                report(f"waiting up to {wait_s:.0f} s for sweep {spec.name!r} to start in {redact_url(spec.storage_url)}")
                said = True
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    return work(spec, study, storage, device=device, pipeline=pipeline, report=report)


# ---------------------------------------------------------------------------------------------
# dashboard


def open_dashboard(
    spec: SweepSpec, *, host: str = "127.0.0.1", port: int = 8080, report: Reporter | None = None
) -> None:
    """Serve optuna-dashboard on the sweep's storage (blocks until interrupted), reporting its URL."""
    _quiet_optuna()
    import optuna_dashboard

    storage = open_storage(spec.storage_url)
    load_sweep_study(spec, storage)  # a clear error when the sweep does not exist
    (report or _quiet)(
        f"optuna-dashboard for sweep {spec.name!r} ({redact_url(spec.storage_url)}): http://{host}:{port}/ "
        "(Ctrl-C stops it)"
    )
    optuna_dashboard.run_server(storage, host=host, port=port)
