"""Score recommenders against generated ground truth (`surfaces.Case`): regret, violations, coverage.

A method maps (results, candidate grid, floor, confidence) to the index of its pick in the grid.
regret = 1 - true throughput of the pick / best true throughput whose true accuracy meets the
floor; a pick under the floor is a violation and counts as regret 1. `regret_clear` measures
against the best configuration clearing the floor by `CLEAR_MARGIN` (half a point) instead: the
exact oracle is often a configuration a hair above the floor, which no measurement with a
standard error of 0.3-1 point can certify. The floor is the table's
baseline accuracy minus the budget, as `recommend` computes it. Coverage is the share of the
grid's unmeasured configurations whose true accuracy is at least the one-sided lower bound.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from autoprumux.machine import package_versions
from autoprumux.meta.budget import DEFAULT_CONFIDENCE, accuracy_floor
from autoprumux.meta.optimizer import few_dof_widening
from autoprumux.meta.results import Results, results_from_frame
from autoprumux.meta.surfaces import Case
from autoprumux.table import write_atomically

BUDGETS = (0.01, 0.02, 0.03, 0.05)
COVERAGE_LEVELS = (0.9, 0.8, 0.5)

#: (results, grid, floor, confidence) -> row index of the pick in `grid`
Method = Callable[[Results, pd.DataFrame, float, float], int]


#: margin of the "clear" oracle: the best configuration at least this far above the floor
CLEAR_MARGIN = 0.005
#: the packages whose numerics the replays depend on (a change of version can move a fit)
PACKAGES = ("numpy", "scipy", "scikit-learn", "pandas", "optuna")


def environment() -> str:
    """One line naming Python and the versions of `PACKAGES`, for a benchmark's output."""
    return package_versions(PACKAGES)


def write_csv(frame: pd.DataFrame, folder: str | os.PathLike | None, name: str) -> None:
    """Write a benchmark's `frame` to `folder`/`name` atomically (the folder made if need be);
    nothing when `folder` is None (a run without --out)."""
    if folder is not None:
        write_atomically(Path(folder) / name, lambda tmp: frame.to_csv(tmp, index=False))


def regret_of(case: Case, floor: float, pick: int, margin: float = 0.0) -> tuple[float, bool]:
    """(regret, violation) of picking grid row `pick` under `floor`, against the best
    configuration whose true accuracy clears the floor by `margin` (a pick faster than that one
    has regret 0)."""
    grid = case.grid
    within = grid["accuracy"] >= floor + margin - 1e-12
    if not within.any():
        return 0.0, False
    best = grid.loc[within, "throughput"].max()
    if grid.loc[pick, "accuracy"] < floor - 1e-12:
        return 1.0, True
    return max(float(1.0 - grid.loc[pick, "throughput"] / best), 0.0), False


def measured_mask(case: Case) -> np.ndarray:
    """Which grid rows were measured in the case's table."""
    keys = set(zip(case.table["mux"].astype(int), case.table["sparsity_target"].round(6), strict=True))
    return np.array([(int(m), round(s, 6)) in keys for m, s in zip(case.grid["mux"], case.grid["sparsity"], strict=True)])


def coverage(case: Case, mean: np.ndarray, std: np.ndarray, levels: Sequence[float] = COVERAGE_LEVELS,
             target=None) -> dict:  # fmt: skip
    """Share of unmeasured grid points whose true accuracy is >= mean - z(level) * std, per level
    (with the accuracy `target` model, its std widened at each level as `recommend` does:
    `optimizer.few_dof_widening`). Collapsed points (true accuracy at chance) are left out: no
    smooth bound is meant for them."""
    held = ~measured_mask(case) & (case.grid["accuracy"].to_numpy() > case.surface.chance + 1e-9)
    truth = case.grid["accuracy"].to_numpy()[held]
    out = {}
    for level in levels:
        widening = 1.0 if target is None else few_dof_widening(target, level)
        low = mean[held] - NormalDist().inv_cdf(level) * widening * std[held]
        out[level] = float(np.mean(truth >= low)) if held.any() else np.nan
    return out


def replay(cases: Sequence[Case], methods: dict[str, Method], budgets=BUDGETS, confidence=DEFAULT_CONFIDENCE) -> pd.DataFrame:
    """One row per (case, budget, method): pick, regret, violation."""
    records = []
    for case in cases:
        results = results_from_frame(case.table, source=case.name)
        grid = case.grid
        for budget in budgets:
            floor = accuracy_floor(results.baseline_accuracy, budget)
            for name, method in methods.items():
                pick = method(results, grid, floor, confidence)
                regret, violation = regret_of(case, floor, pick)
                records.append(
                    {"case": case.name, "family": case.name.split("-")[0], "budget": budget, "method": name,
                     "pick_mux": int(grid.loc[pick, "mux"]), "pick_sparsity": float(grid.loc[pick, "sparsity"]),
                     "regret": regret, "violation": violation,
                     "regret_clear": regret_of(case, floor, pick, CLEAR_MARGIN)[0]}
                )  # fmt: skip
    return pd.DataFrame(records)


def baseline_index(grid: pd.DataFrame) -> int:
    """The grid row of N = 1, s = 0 (what a recommender keeps when nothing is feasible)."""
    return int(np.flatnonzero((grid["mux"] == 1) & (grid["sparsity"] == 0))[0])


def grid_index(grid: pd.DataFrame, mux: int, sparsity: float) -> int:
    """The grid row of (mux, sparsity)."""
    hit = (grid["mux"] == mux) & np.isclose(grid["sparsity"], sparsity, atol=1e-6)
    return int(np.flatnonzero(hit)[0])
