"""The sweep's Optuna study: create or load it, queue the grid, claim waiting trials exactly once.

One study per sweep (named after the spec), two objectives maximised: validation accuracy
(fraction) and throughput (examples/s), so optuna-dashboard draws the Pareto front. Each grid
point is a trial whose params are `mux` and `sparsity`. Only `autoprumux sweep` queues points
(`queue_missing_points`), and only points that have no finished, running or waiting trial, so
running it again never duplicates or reruns work; workers only claim (`claim_next_trial`).
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from dataclasses import dataclass

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from autoprumux.errors import SpecError, StorageError, SweepNotStarted
from autoprumux.spec import SweepSpec, TrainingSettings, settings_to_dict
from autoprumux.sweep.plan import SweepPlan
from autoprumux.sweep.storage import redact_url

OBJECTIVES = ("accuracy", "throughput")
ATTR_TRAINING = "autoprumux.training"  # study user attr: the training settings every trial uses
ATTR_QUEUED = "autoprumux.queued"  # study user attr: [[mux, sparsity], ...] ever queued
DISTRIBUTIONS = {"mux": IntDistribution(1, 1024), "sparsity": FloatDistribution(0.0, 1.0)}

Point = tuple[int, float]


def point_of(trial: FrozenTrial) -> Point | None:
    """The (N, s) grid point of a trial (None for a trial not made by autoprumux)."""
    if "mux" not in trial.params or "sparsity" not in trial.params:
        return None
    return int(trial.params["mux"]), round(float(trial.params["sparsity"]), 6)


def _training_fingerprint(spec: SweepSpec) -> dict:
    return json.loads(json.dumps(settings_to_dict(spec.training), default=str))


def _with_defaults(stored: dict, defaults: dict) -> dict:
    """`stored` with the settings it predates filled in at their defaults (what those trials ran with)."""
    filled = dict(stored)
    for key, value in defaults.items():
        if key not in filled:
            filled[key] = value
        elif isinstance(filled[key], dict) and isinstance(value, dict):
            filled[key] = _with_defaults(filled[key], value)
    return filled


def _first_difference(old: object, new: object, where: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
    return f"{where}: {old!r} in the study, {new!r} in the spec"


def _check_training(spec: SweepSpec, study: optuna.Study, url: str) -> None:
    stored = study.user_attrs.get(ATTR_TRAINING)
    current = _training_fingerprint(spec)
    if stored is not None:  # a study made before a setting existed resumes when that setting is at its default
        stored = _with_defaults(stored, json.loads(json.dumps(settings_to_dict(TrainingSettings()), default=str)))
    if stored is not None and stored != current:
        raise SpecError(
            f"spec {spec.source or spec.name!r} does not match sweep {spec.name!r} in {redact_url(url)} "
            f"({_first_difference(stored, current)}); give the spec a new name or storage to start another sweep"
        )


def create_sweep_study(spec: SweepSpec, storage) -> optuna.Study:
    """Create the sweep's study, or load it when it exists and was made with the same settings."""
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        directions=["maximize"] * len(OBJECTIVES),
        sampler=optuna.samplers.RandomSampler(),
        load_if_exists=True,
    )
    if len(study.directions) != len(OBJECTIVES):
        raise StorageError(
            f"study {spec.name!r} in {redact_url(storage.url)} is not an autoprumux sweep "
            f"(it has {len(study.directions)} objective(s), a sweep has {len(OBJECTIVES)})"
        )
    _check_training(spec, study, storage.url)
    if ATTR_TRAINING not in study.user_attrs:
        study.set_user_attr(ATTR_TRAINING, _training_fingerprint(spec))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(OBJECTIVES))
    return study


def load_sweep_study(spec: SweepSpec, storage) -> optuna.Study:
    """Load an existing sweep's study (for workers, status and the dashboard)."""
    try:
        study = optuna.load_study(
            study_name=spec.name, storage=storage, sampler=optuna.samplers.RandomSampler()
        )
    except KeyError:
        raise SweepNotStarted(
            f"no sweep named {spec.name!r} in {redact_url(storage.url)}; start it with "
            f"`autoprumux sweep {spec.source or 'SPEC'} --storage URL`"
        ) from None
    _check_training(spec, study, storage.url)
    return study


def trials_by_point(study: optuna.Study) -> dict[Point, list[FrozenTrial]]:
    """Every autoprumux trial of the study grouped by grid point, in trial-number order."""
    groups: dict[Point, list[FrozenTrial]] = defaultdict(list)
    for trial in study.get_trials(deepcopy=False):
        point = point_of(trial)
        if point is not None:
            groups[point].append(trial)
    return dict(groups)


@dataclass(frozen=True)
class PointState:
    """Where one grid point stands: COMPLETE, RUNNING, WAITING, FAIL, or None (never queued)."""

    point: Point
    state: str | None
    trials: tuple[FrozenTrial, ...]


_PRIORITY = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL)


def point_state(point: Point, trials: list[FrozenTrial]) -> PointState:
    """A point is done when any of its trials completed; else running, waiting, failed."""
    for state in _PRIORITY:
        if any(t.state == state for t in trials):
            return PointState(point, state.name, tuple(trials))
    return PointState(point, None, tuple(trials))


def queue_missing_points(study: optuna.Study, plan: SweepPlan) -> list[Point]:
    """Queue (as WAITING trials) every planned point with no complete, running or waiting trial.

    Failed points are queued again: running a sweep again retries what failed. Returns the
    points queued, in plan order (s = 0 first, so teachers are trained before they are needed).
    """
    groups = trials_by_point(study)
    queued: list[Point] = []
    for planned in plan.trials:
        point = (planned.mux, round(planned.sparsity, 6))
        if point_state(point, groups.get(point, [])).state in (None, TrialState.FAIL.name):
            study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.WAITING,
                    params={"mux": point[0], "sparsity": point[1]},
                    distributions=dict(DISTRIBUTIONS),
                    user_attrs={"family": planned.family},
                )
            )
            queued.append(point)
    if queued:
        history = study.user_attrs.get(ATTR_QUEUED, [])
        study.set_user_attr(ATTR_QUEUED, history + [list(p) for p in queued])
    return queued


def claim_next_trial(study: optuna.Study, storage) -> optuna.Trial | None:
    """Atomically move a waiting trial to RUNNING for this process, or None if none waits.

    Trials are tried in plan order (s = 0 first, so the teachers of pruned points come first;
    then the widest N first, as it trains longest; then by age). Unlike `study.ask()`, this never creates a new trial. The heartbeat is
    recorded *before* the claim so that a worker killed right after claiming still leaves a trial
    that goes stale.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
    def plan_order(trial: FrozenTrial) -> tuple:
        mux, sparsity = point_of(trial) or (0, 0.0)
        return sparsity, -mux, trial.number

    for frozen in sorted(waiting, key=plan_order):
        trial_id = frozen._trial_id
        if storage.get_heartbeat_interval() is not None:
            storage.record_heartbeat(trial_id)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def duplicate_of(study: optuna.Study, number: int, point: Point) -> FrozenTrial | None:
    """Another trial that already covers trial `number`'s grid point: complete, or running and older."""
    for other in trials_by_point(study).get(point, []):
        if other.number == number:
            continue
        if other.state == TrialState.COMPLETE or (other.state == TrialState.RUNNING and other.number < number):
            return other
    return None


def requeue(study: optuna.Study, failed: FrozenTrial) -> None:
    """Queue a new WAITING copy of an interrupted trial that points back at it.

    An interrupt (Ctrl-C, SIGTERM) is not a failure of the point: unlike a heartbeat retry, the
    copy keeps the retry history it had, so interrupts never use up `max_retries`.
    """
    system_attrs = {"failed_trial": failed.number, **failed.system_attrs}
    system_attrs["retry_history"] = list(failed.system_attrs.get("retry_history", []))
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=failed.params,
            distributions=failed.distributions,
            user_attrs=failed.user_attrs,
            system_attrs=system_attrs,
        )
    )


def retried_from(trial: FrozenTrial) -> int | None:
    """The number of the first trial that this one retries (None for an original trial)."""
    return trial.system_attrs.get("failed_trial")
