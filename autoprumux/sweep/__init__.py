"""The sweep engine: plan a grid of (N, s), run it on Optuna workers, report status, export the table.

Verbs: `plan_sweep` / `format_plan` (no training, torch-free), `run_sweep`, `run_worker`,
`sweep_status` / `format_status`, `open_dashboard` (in `engine`), `export_table` (in `export`),
and `StageStore` (in `store`), the cache that trains each stage once. The engine's verbs are
imported on first use so that planning stays light.
"""

from autoprumux.sweep.plan import PlannedTrial, SweepPlan, format_plan, plan_sweep

_ENGINE = ("run_sweep", "run_worker", "prepare_sweep", "sweep_status", "format_status", "open_dashboard")

__all__ = ["PlannedTrial", "SweepPlan", "format_plan", "plan_sweep", *_ENGINE, "export_table", "StageStore"]


def __getattr__(name: str):
    if name in _ENGINE:
        from autoprumux.sweep import engine

        return getattr(engine, name)
    if name == "export_table":
        from autoprumux.sweep.export import export_table

        return export_table
    if name == "StageStore":
        from autoprumux.sweep.store import StageStore

        return StageStore
    raise AttributeError(f"module 'autoprumux.sweep' has no attribute {name!r}")
