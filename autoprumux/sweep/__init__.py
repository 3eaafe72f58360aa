"""The sweep engine: plan a grid of (N, s), run it on Optuna workers, report status, export the table."""

from autoprumux.sweep.plan import PlannedTrial, SweepPlan, format_plan, plan_sweep

__all__ = ["PlannedTrial", "SweepPlan", "format_plan", "plan_sweep"]
