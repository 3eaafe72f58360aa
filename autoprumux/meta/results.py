"""A results table as the performance models see it: finished rows, grid points and the baseline.

A grid point (configuration) is identified by `(mux, sparsity_target)` when the table records a
target, else by `(mux, sparsity)`; repeats (seeds) of one point are averaged. The models use the
*measured* `sparsity` as their feature, the identity is only used to group rows. A measured
sparsity of 1 (the pruning removed the whole encoder) is modelled at `MAX_FEATURE_SPARSITY`,
since the models' feature -log(1 - s) is infinite at 1.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from autoprumux.errors import TableError
from autoprumux.meta.collapse import chance_accuracy, collapsed
from autoprumux.table import MINIMAL_COLUMNS, finished_rows, read_table, validate_table

DEFAULT_PATTERN = "results/*/trials.csv"

#: The modelled quantities: accuracy (fraction) and throughput (examples/s, modelled as its log).
TARGETS = ("accuracy", "throughput")
#: Largest sparsity the models see (-log(1 - s) = 4.6); a fully pruned encoder sits there.
MAX_FEATURE_SPARSITY = 0.99


def mux_sparsity_features(X: np.ndarray) -> np.ndarray:
    """`[mux, sparsity]` -> `[log N, -log(1 - s)]`, the coordinates every performance model works
    in (numpy only, so the array form of saved models can use it without scikit-learn)."""
    return np.column_stack([np.log(X[:, 0]), -np.log1p(-X[:, 1])])


@dataclass(frozen=True)
class Results:
    """Finished rows of one results table plus what the optimizer needs from it.

    `rows` keeps the table's columns and adds `config_sparsity` (the grid identity of each row).
    `configurations` has one row per grid point: mux, sparsity (identity), feature_sparsity (mean
    measured sparsity), accuracy (fraction, the mean of its repeats), accuracy_variance and
    accuracy_se (the binomial variance and standard error of that mean, which repeats on one dev
    set do not shrink; NaN when the table has no `eval_examples`), throughput (examples/s), repeats and collapsed
    (accuracy at chance, see `collapse.py`; `chance` is that level).
    """

    rows: pd.DataFrame
    configurations: pd.DataFrame
    baseline_accuracy: float
    baseline_throughput: float | None
    source: str
    baseline_from: str  # "table" or "override"
    chance: float = 0.5

    @property
    def collapsed_rows(self) -> np.ndarray:
        """Which rows belong to a collapsed configuration."""
        bad = self.configurations[self.configurations["collapsed"]]
        keys = set(zip(bad["mux"].astype(float), bad["sparsity"], strict=True))
        pairs = zip(self.rows["mux"], self.rows["config_sparsity"], strict=True)
        return np.array([k in keys for k in pairs], dtype=bool)

    @property
    def seed_variance(self) -> float:
        """The variance a training seed adds to an accuracy, pooled over the configurations
        measured more than once (one-way analysis of variance: the spread of repeats around
        their configuration's mean); NaN when no configuration was. Repeats are evaluated on one
        dev set, so their spread holds no binomial error: this is the part that averaging over
        repeats removes."""
        total, dof = self._repeat_spread()
        return total / dof if dof > 0 else float("nan")

    @property
    def seed_variance_dof(self) -> int:
        """Degrees of freedom of `seed_variance`: repeats beyond the first of each configuration
        that is not collapsed."""
        return self._repeat_spread()[1]

    def _repeat_spread(self) -> tuple[float, int]:
        trained = self.rows[~self.collapsed_rows]
        by_config = trained.groupby(["mux", "config_sparsity"])["accuracy"]
        spread = (trained["accuracy"] - by_config.transform("mean")) ** 2
        return float(spread.sum()), int((by_config.size() - 1).sum())

    def accuracy_data(self, seed_variance: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
        """What the accuracy models are fitted on: one row per configuration that is not
        collapsed, as features [mux, mean measured sparsity], the mean accuracy of its repeats,
        the variance of that mean as far as the table knows it, and those configurations.

        The variance is the binomial one (from `eval_examples`; repeats on one dev set share it,
        so it counts once however many there are) plus a training seed's variance (`seed_variance`,
        by default the table's own, `Results.seed_variance`) / repeats. A model adds the noise
        beyond it that it fits (with one measurement per configuration, all of the training-seed
        noise). NaN where neither part is known."""
        configs = self.configurations[~self.configurations["collapsed"]].reset_index(drop=True)
        X = configs[["mux", "feature_sparsity"]].to_numpy(dtype=float)
        binomial = configs["accuracy_variance"].to_numpy(float)
        seed = self.seed_variance if seed_variance is None else seed_variance
        if np.isfinite(seed):
            binomial = np.nan_to_num(binomial) + seed / configs["repeats"].to_numpy(float)
        return X, configs["accuracy"].to_numpy(float), binomial, configs

    @property
    def flops(self) -> np.ndarray | None:
        """Each row's FLOPs per example, or None unless every row records a positive one."""
        if "flops_per_example" not in self.rows.columns:
            return None
        flops = pd.to_numeric(self.rows["flops_per_example"], errors="coerce").to_numpy(float)
        return flops if np.all(np.isfinite(flops) & (flops > 0)) else None

    @property
    def features(self) -> np.ndarray:
        """Model inputs of every row: columns [mux, measured sparsity]."""
        return self.rows[["mux", "sparsity"]].to_numpy(dtype=float)

    @property
    def fingerprint(self) -> str:
        """A hash of the modelled values, so saved models can be matched to their table."""
        data = self.rows[["mux", "sparsity", "config_sparsity", "accuracy", "throughput"]]
        return hashlib.sha256(data.to_numpy(dtype=float).round(12).tobytes()).hexdigest()[:16]

    @property
    def devices(self) -> list[str]:
        """Distinct `device`/`hardware` values of the rows (throughputs are comparable only within one)."""
        cols = [c for c in ("device", "hardware") if c in self.rows.columns]
        if not cols:
            return []
        keys = self.rows[cols].astype("string").fillna("").agg(" / ".join, axis=1)
        return sorted(set(keys))


def default_table_path(root: str | os.PathLike = ".") -> Path:
    """The newest `results/*/trials.csv` under `root` (by modification time)."""
    candidates = sorted(Path(root).glob(DEFAULT_PATTERN), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise TableError(
            f"no results table given and none found at {DEFAULT_PATTERN} under {str(Path(root).resolve())!r}; "
            "pass --results TABLE (a CSV with columns mux, sparsity, accuracy, throughput)"
        )
    return candidates[-1]


def load_results(path: str | os.PathLike | None = None, baseline_accuracy: float | None = None) -> Results:
    """Read a results table (default: `default_table_path()`) into `Results`.

    `baseline_accuracy` (a fraction) overrides or supplies the N = 1, s = 0 accuracy. Raises
    `TableError` for a missing or malformed table, no finished rows, fewer than two distinct
    configurations, or no baseline.
    """
    path = Path(path) if path is not None else default_table_path()
    frame = read_table(path, required=MINIMAL_COLUMNS)
    return results_from_frame(frame, source=str(path), baseline_accuracy=baseline_accuracy)


def results_from_frame(
    frame: pd.DataFrame, source: str = "results table", baseline_accuracy: float | None = None
) -> Results:
    """Like `load_results` for a table already in memory."""
    frame = validate_table(frame, required=MINIMAL_COLUMNS, source=source)
    rows = finished_rows(frame).copy()
    if rows.empty:
        raise TableError(f"{source}: no finished rows (status COMPLETE) to model")
    rows["mux"] = rows["mux"].astype(float)
    rows["sparsity"] = rows["sparsity"].astype(float).clip(upper=MAX_FEATURE_SPARSITY)
    identity = rows["sparsity_target"] if "sparsity_target" in rows.columns else rows["sparsity"]
    rows["config_sparsity"] = identity.fillna(rows["sparsity"]).astype(float).round(6)
    rows = rows.reset_index(drop=True)
    configurations = _group_configurations(rows)
    if len(configurations) < 2:
        raise TableError(
            f"{source}: only {len(configurations)} distinct (mux, sparsity) configuration; "
            "at least 2 are needed to fit the performance models"
        )
    base = configurations[(configurations["mux"] == 1) & (configurations["sparsity"] == 0)]
    if baseline_accuracy is not None:
        if not 0.0 < baseline_accuracy <= 1.0:
            raise TableError(f"baseline accuracy {baseline_accuracy!r} must be a fraction in (0, 1]")
        accuracy, baseline_from = float(baseline_accuracy), "override"
    elif base.empty:
        raise TableError(
            f"{source}: no baseline row (mux = 1, sparsity = 0) among the finished rows; "
            "add one or pass --baseline-accuracy 0.91"
        )
    else:
        accuracy, baseline_from = float(base["accuracy"].iloc[0]), "table"
    throughput = None if base.empty else float(base["throughput"].iloc[0])
    labels = pd.to_numeric(rows["num_labels"], errors="coerce").median() if "num_labels" in rows.columns else None
    chance = chance_accuracy(labels, configurations["accuracy"])
    configurations = mark_collapsed(configurations, chance, accuracy)
    return Results(rows, configurations, accuracy, throughput, source, baseline_from, chance)


def mark_collapsed(configurations: pd.DataFrame, chance: float, baseline: float) -> pd.DataFrame:
    """`configurations` with the boolean column `collapsed` (accuracy at chance)."""
    flags = collapsed(configurations["accuracy"], configurations["accuracy_se"], chance, baseline)
    return configurations.assign(collapsed=flags)


def measurement_variance(accuracy: pd.Series, eval_examples: pd.Series) -> pd.Series:
    """Sampling variance of each accuracy (fraction) measured on `eval_examples` examples.

    Binomial, with the add-one-per-class smoothing p' = (k + 1) / (n + 2), so that a perfect or
    zero score still has a variance; NaN where the number of examples is unknown.
    """
    n = pd.to_numeric(eval_examples, errors="coerce").astype(float)
    n = n.where(n > 0)
    smoothed = (accuracy * n + 1.0) / (n + 2.0)
    return smoothed * (1.0 - smoothed) / (n + 2.0)


def _group_configurations(rows: pd.DataFrame) -> pd.DataFrame:
    eval_examples = rows["eval_examples"] if "eval_examples" in rows.columns else pd.Series(np.nan, rows.index)
    rows = rows.assign(_variance=measurement_variance(rows["accuracy"], eval_examples))
    grouped = rows.groupby(["mux", "config_sparsity"], sort=True)
    configurations = grouped.agg(
        feature_sparsity=("sparsity", "mean"),
        accuracy=("accuracy", "mean"),
        # repeats share one dev set, so the mean of k keeps its sampling error: the mean of their
        # variances (not divided by k); unknown if any repeat's is
        accuracy_variance=("_variance", lambda v: v.sum(min_count=len(v)) / len(v)),
        throughput=("throughput", "mean"),
        repeats=("accuracy", "size"),
    ).reset_index()
    configurations.insert(configurations.columns.get_loc("accuracy_variance") + 1, "accuracy_se",
                          np.sqrt(configurations["accuracy_variance"]))  # fmt: skip
    configurations = configurations.rename(columns={"config_sparsity": "sparsity"})
    configurations["mux"] = configurations["mux"].astype(int)
    return configurations


def subset_results(results: Results, keep: pd.Series | np.ndarray) -> Results:
    """The same table restricted to the rows where `keep` is true (baseline kept as it was)."""
    rows = results.rows[np.asarray(keep, dtype=bool)].reset_index(drop=True)
    return Results(
        rows,
        mark_collapsed(_group_configurations(rows), results.chance, results.baseline_accuracy),
        results.baseline_accuracy,
        results.baseline_throughput,
        results.source,
        results.baseline_from,
        results.chance,
    )
