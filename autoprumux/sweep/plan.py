"""The grid of a sweep and the stage outputs each trial depends on (what `sweep --dry-run` prints)."""

from __future__ import annotations

from dataclasses import dataclass

from autoprumux.spec import SweepSpec
from autoprumux.table import family_of
from autoprumux.train.plan import STAGES, Stage, stage_chain


@dataclass(frozen=True)
class PlannedTrial:
    """One grid point: its family and the chain of stages that produces its model."""

    mux: int
    sparsity: float
    family: str
    stages: tuple[Stage, ...]

    @property
    def final_stage(self) -> Stage:
        return self.stages[-1]


@dataclass(frozen=True)
class SweepPlan:
    """All trials of a sweep, ordered so that every s = 0 point precedes the pruned points of its N."""

    spec: SweepSpec
    trials: tuple[PlannedTrial, ...]

    @property
    def unique_stages(self) -> dict[str, Stage]:
        return {s.key: s for t in self.trials for s in t.stages}

    @property
    def stage_runs_without_reuse(self) -> int:
        return sum(len(t.stages) for t in self.trials)


def grid_points(spec: SweepSpec) -> list[tuple[int, float]]:
    """Every (N, s) of the grid, the baseline (1, 0) included: all s = 0 points first (every pruned
    point starts from its N's), and within one sparsity the widest N first, because it trains
    longest and parallel workers then finish together."""
    mux = sorted(set(spec.grid.mux) | {1}, reverse=True)
    sparsity = sorted(set(spec.grid.sparsity) | {0.0})
    return [(n, s) for s in sparsity for n in mux]


def plan_sweep(spec: SweepSpec) -> SweepPlan:
    """Plan a sweep without training anything."""
    trials = tuple(
        PlannedTrial(mux=n, sparsity=s, family=family_of(n, s), stages=stage_chain(spec.training, n, s))
        for n, s in grid_points(spec)
    )
    return SweepPlan(spec=spec, trials=trials)


def format_plan(plan: SweepPlan) -> str:
    """A readable table of the plan: trial, family, the stages it needs and which are shared."""
    spec = plan.spec
    lines = [
        f"sweep {spec.name!r}: task {spec.training.task}, model {spec.training.model}, "
        f"{len(plan.trials)} trials, storage {spec.storage_url}",
        f"{'#':>3}  {'N':>3}  {'s':>5}  {'family':<10}  stages (-> = starts from)",
    ]
    for i, trial in enumerate(plan.trials):
        chain = " -> ".join(s.key for s in trial.stages)
        lines.append(f"{i:>3}  {trial.mux:>3}  {trial.sparsity:>5.2f}  {trial.family:<10}  {chain}")
    lines.extend(format_budgets(plan))
    unique = len(plan.unique_stages)
    total = plan.stage_runs_without_reuse
    lines.append(
        f"{unique} distinct stage trainings ({total} without reuse, {total - unique} saved); "
        f"table: {spec.table_path}"
    )
    return "\n".join(lines)


def format_budgets(plan: SweepPlan) -> list[str]:
    """One line per stage kind: its length as the spec gives it, and in optimizer steps per N.

    Steps are shown when the spec fixes the training-split size (`[data] train_size`); a budget in
    epochs shrinks with N (each multiplexed batch carries N examples), one in steps does not.
    """
    training = plan.spec.training
    train_size = training.data.train_size
    widths: dict[str, list[int]] = {}
    for trial in plan.trials:
        for stage in trial.stages:
            if trial.mux not in widths.setdefault(stage.name, []):
                widths[stage.name].append(trial.mux)
    lines = ["stage lengths:"]
    for name, muxes in sorted(widths.items(), key=lambda item: STAGES.index(item[0])):
        settings = getattr(training, name)
        line = f"  {name:<14} {settings.budget}"
        if name in ("pretrain", "warmup") and settings.retrieval_target is not None:
            line += f" at most, stopping at retrieval accuracy {settings.retrieval_target:g}"
            line += " (N > 1)" if name == "pretrain" else ""
        if train_size is not None:
            steps = ", ".join(
                f"N={n}: {settings.budget.steps(train_size, n, settings.batch_size, getattr(settings, 'grad_accum', 1)):,}"
                for n in sorted(muxes)
            )
            line += f" = optimizer steps {steps}"
        lines.append(line)
    return lines
