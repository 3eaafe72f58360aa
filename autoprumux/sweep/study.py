"""The sweep's Optuna study: create or load it, queue the grid, claim waiting trials exactly once.

One study per sweep (named after the spec), two objectives maximised: validation accuracy
(fraction) and throughput (examples/s), so optuna-dashboard draws the Pareto front. Each grid
point is a trial whose params are `mux` and `sparsity`. Only `autoprumux sweep` queues points
(`queue_missing_points`), and only points that have no finished, running or waiting trial, so
running it again never duplicates or reruns work; workers only claim (`claim_next_trial`).

A grid point can also be trained again with another seed (`sweep --repeat`, `queue_repeats`):
repeat r of a point is a trial with the user attribute `ATTR_REPEAT` = r that trains with the
spec's seed + r. A trial's `Replica` is (N, s, r), r = 0 for the grid's own; each replica is
done once, as each point was before repeats existed.
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
ATTR_QUEUED = "autoprumux.queued"  # study user attr: [[mux, sparsity], ...] ever queued ([mux, s, r] for a repeat)
ATTR_REPEAT = "autoprumux.repeat"  # trial user attr: r of a repeat (absent on the grid's own trials)
DISTRIBUTIONS = {"mux": IntDistribution(1, 1024), "sparsity": FloatDistribution(0.0, 1.0)}

Point = tuple[int, float]
Replica = tuple[int, float, int]  # (N, s, r): repeat r of a grid point trains with the spec's seed + r


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


def repeat_of(trial: FrozenTrial) -> int:
    """r of a trial: 0 for the grid's own training of its point, r >= 1 for its r-th repeat."""
    return int(trial.user_attrs.get(ATTR_REPEAT, 0))


def seed_of(spec: SweepSpec, trial: FrozenTrial) -> int:
    """The training seed of a trial: the spec's, plus r for repeat r of its point."""
    return spec.training.seed + repeat_of(trial)


def replica_of(trial: FrozenTrial) -> Replica | None:
    """(N, s, r) of a trial (None for a trial not made by autoprumux)."""
    point = point_of(trial)
    return None if point is None else (*point, repeat_of(trial))


def trials_by_replica(study: optuna.Study) -> dict[Replica, list[FrozenTrial]]:
    """Every autoprumux trial of the study grouped by (N, s, r), in trial-number order."""
    groups: dict[Replica, list[FrozenTrial]] = defaultdict(list)
    for trial in study.get_trials(deepcopy=False):
        replica = replica_of(trial)
        if replica is not None:
            groups[replica].append(trial)
    return dict(groups)


@dataclass(frozen=True)
class PointState:
    """Where one replica of a grid point stands: COMPLETE, RUNNING, WAITING, FAIL, or None (never queued)."""

    point: Replica
    state: str | None
    trials: tuple[FrozenTrial, ...]


_PRIORITY = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL)


def point_state(point: Replica, trials: list[FrozenTrial]) -> PointState:
    """A point is done when any of its trials completed; else running, waiting, failed."""
    for state in _PRIORITY:
        if any(t.state == state for t in trials):
            return PointState(point, state.name, tuple(trials))
    return PointState(point, None, tuple(trials))


def queue_missing_points(study: optuna.Study, plan: SweepPlan) -> list[Replica]:
    """Queue (as WAITING trials) every planned point with no complete, running or waiting trial,
    and every repeat queued before whose trials all failed.

    Failed points are queued again: running a sweep again retries what failed. Returns the
    replicas queued, in plan order (s = 0 first, so teachers are trained before they are needed).
    """
    groups = trials_by_replica(study)
    families = {(t.mux, round(t.sparsity, 6)): t.family for t in plan.trials}
    wanted = [(*point, 0) for point in families] + sorted(r for r in groups if r[2] > 0)
    queued = [
        replica for replica in wanted
        if point_state(replica, groups.get(replica, [])).state in (None, TrialState.FAIL.name)
    ]  # fmt: skip
    _queue(study, queued, families)
    return queued


def queue_repeats(study: optuna.Study, plan: SweepPlan, points: list[Point]) -> list[Replica]:
    """Queue one more training of each grid point in `points` (a point twice: two more), each the
    next repeat of its point (r = 1 + the highest r its trials have), so it trains with the next
    seed. Raises SpecError for a point that is not in the grid (`check_repeats`)."""
    check_repeats(plan, points)
    families = {(t.mux, round(t.sparsity, 6)): t.family for t in plan.trials}
    highest = defaultdict(int)
    for mux, sparsity, r in trials_by_replica(study):
        highest[(mux, sparsity)] = max(highest[(mux, sparsity)], r)
    queued = []
    for mux, sparsity in points:
        point = (mux, round(sparsity, 6))
        highest[point] += 1
        queued.append((*point, highest[point]))
    _queue(study, queued, families)
    return queued


def check_repeats(plan: SweepPlan, points: list[Point]) -> None:
    """SpecError unless every point of `points` is a point of the plan's grid."""
    grid = {(t.mux, round(t.sparsity, 6)) for t in plan.trials}
    for mux, sparsity in points:
        if (mux, round(sparsity, 6)) not in grid:
            mux_values = ",".join(str(n) for n in sorted({n for n, _ in grid}))
            sparsities = ",".join(f"{v:g}" for v in sorted({v for _, v in grid}))
            raise SpecError(
                f"--repeat {mux},{sparsity:g} is not a point of the grid of sweep {plan.spec.name!r} (N in {mux_values}; "
                f"s in {sparsities}); add it to the spec's [grid] to train it a first time"
            )


def _queue(study: optuna.Study, replicas: list[Replica], families: dict[Point, str]) -> None:
    for mux, sparsity, r in replicas:
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params={"mux": mux, "sparsity": sparsity},
                distributions=dict(DISTRIBUTIONS),
                user_attrs={"family": families.get((mux, sparsity)), **({ATTR_REPEAT: r} if r else {})},
            )
        )
    if replicas:
        history = study.user_attrs.get(ATTR_QUEUED, [])
        study.set_user_attr(ATTR_QUEUED, history + [[m, s, r] if r else [m, s] for m, s, r in replicas])


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


def duplicate_of(study: optuna.Study, number: int, replica: Replica) -> FrozenTrial | None:
    """Another trial that already covers trial `number`'s replica: complete, or running and older."""
    for other in trials_by_replica(study).get(replica, []):
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
