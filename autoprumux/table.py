"""The results-table schema: one row per trial, defined once here and imported everywhere.

Fractions are fractions (accuracy 0.912, sparsity 0.7), never percent. Throughput is examples per
second: original inputs classified per second, so one sequence carrying N multiplexed inputs
counts N. This module imports pandas only, so the torch-free `meta` and `plots` can use it.

>>> from autoprumux.table import COLUMNS
>>> COLUMNS["throughput"].unit
'examples/s'
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from autoprumux.errors import TableError


@dataclass(frozen=True)
class Column:
    """One column of the results table: its pandas dtype kind, unit and meaning."""

    name: str
    kind: str  # "int", "float", "str"
    unit: str
    description: str


def _columns(*cols: Column) -> dict[str, Column]:
    return {c.name: c for c in cols}


COLUMNS: dict[str, Column] = _columns(
    Column("sweep", "str", "", "sweep name (spec `name`)"),
    Column("task", "str", "", "task name, e.g. synthetic-sentiment or glue/sst2"),
    Column("model", "str", "", "backbone: preset (tiny, minilm), hub id or local path"),
    Column("mux", "int", "inputs/sequence", "multiplexing width N"),
    Column("sparsity_target", "float", "fraction", "target sparsity s of CoFi pruning"),
    Column("sparsity", "float", "fraction", "sparsity measured on the compacted model"),
    Column("accuracy", "float", "fraction", "validation accuracy in [0, 1]"),
    Column("eval_examples", "int", "examples", "validation examples the accuracy was measured on"),
    Column("num_labels", "int", "classes", "number of labels of the task (chance accuracy is about 1/num_labels)"),
    Column("retrieval_accuracy", "float", "fraction", "token retrieval reached before task training (N > 1)"),
    Column("throughput", "float", "examples/s", "median inference throughput"),
    Column("throughput_spread", "float", "examples/s", "interquartile range of throughput"),
    Column("throughput_at_trial", "float", "examples/s", "throughput measured when the trial ended, kept "
           "when `sweep --remeasure` replaced `throughput` (empty otherwise)"),
    Column("throughput_busy", "int", "", "1 when the throughput measurement says the machine was busy "
           "(spread over 25% of the median, or a CPU load above the cores)"),
    Column("flops_per_example", "float", "FLOPs", "analytic forward FLOPs per original input"),
    Column("batch_size", "int", "sequences", "benchmark batch of multiplexed sequences"),
    Column("seq_len", "int", "tokens", "benchmark sequence length"),
    Column("params", "int", "parameters", "parameters of the deployed (compacted) model"),
    Column("device", "str", "", "device kind the throughput was measured on: cpu or cuda"),
    Column("dtype", "str", "", "numeric type the throughput was measured in: fp32, bf16 or fp16"),
    Column("hardware", "str", "", "hardware fingerprint (device name, CPU, threads, torch)"),
    Column("seed", "int", "", "random seed of the trial"),
    Column("status", "str", "", "COMPLETE, FAIL, RUNNING, WAITING or PRUNED"),
    Column("duration_s", "float", "s", "wall time of the trial, stages reused from cache excluded"),
    Column("trial_number", "int", "", "Optuna trial number"),
    Column("started_at", "str", "ISO 8601", "trial start time (UTC)"),
    Column("finished_at", "str", "ISO 8601", "trial end time (UTC)"),
    Column("checkpoint", "str", "path", "directory of the deployed model"),
    Column("code_version", "str", "", "git commit (or package version) that produced the row"),
)


def family_of(mux: int, sparsity: float) -> str:
    """The family of a configuration, as the `family` column of a sweep's table holds it:
    baseline (N = 1, s = 0), mux-only (s = 0), prune-only (N = 1) or prumux (both)."""
    if mux == 1:
        return "baseline" if sparsity == 0 else "prune-only"
    return "mux-only" if sparsity == 0 else "prumux"


#: Columns every table written by `autoprumux sweep` carries.
SWEEP_COLUMNS: tuple[str, ...] = tuple(COLUMNS)

#: Columns a user-supplied table needs for `fit` / `recommend` / `plot`.
MINIMAL_COLUMNS: tuple[str, ...] = ("mux", "sparsity", "accuracy", "throughput")

#: The status of a trial that finished successfully.
FINISHED = "COMPLETE"


def _coerce(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    frame = frame.copy()
    for name, col in COLUMNS.items():
        if name not in frame.columns:
            continue
        if col.kind in ("int", "float"):
            numeric = pd.to_numeric(frame[name], errors="coerce")
            bad = numeric.isna() & frame[name].notna()
            if bad.any():
                value = frame.loc[bad, name].iloc[0]
                raise TableError(
                    f"{source}: column {name!r} must hold numbers ({col.unit or col.kind}); got {value!r}"
                )
            if col.kind == "int":
                fractional = numeric.notna() & (numeric != numeric.round())
                if fractional.any():
                    value = float(numeric[fractional].iloc[0])
                    raise TableError(f"{source}: column {name!r} must hold integers ({col.unit or col.kind}); got {value:g}")
            frame[name] = numeric.astype("Int64") if col.kind == "int" and not numeric.isna().any() else numeric
        else:
            frame[name] = frame[name].astype("string")
    return frame


def validate_table(
    frame: pd.DataFrame,
    required: Sequence[str] = MINIMAL_COLUMNS,
    source: str = "results table",
) -> pd.DataFrame:
    """Check a results table and return it with the schema's types.

    Raises `TableError` when the table has no rows, lacks a required column, or has a missing
    (NaN) value in a required column of a finished row. Accuracy and sparsity must be fractions
    in [0, 1], mux an integer >= 1 and throughput positive.
    """
    if frame.empty:
        raise TableError(f"{source}: the table has no rows")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise TableError(
            f"{source}: missing required column(s) {', '.join(missing)}; a table needs at least "
            f"{', '.join(required)}"
        )
    frame = _coerce(frame, source)
    rows = finished_rows(frame)
    for name in required:
        nan = rows[name].isna()
        if nan.any():
            raise TableError(
                f"{source}: column {name!r} is empty (NaN) in {int(nan.sum())} finished row(s), "
                f"first at row {int(rows.index[nan][0])}"
            )
    _check_range(rows, "accuracy", 0.0, 1.0, source)
    _check_range(rows, "sparsity", 0.0, 1.0, source)  # measured: 1 = every prunable weight removed
    _check_range(rows, "sparsity_target", 0.0, 1.0, source, upper_open=True)
    if "mux" in rows and (rows["mux"].dropna() < 1).any():
        raise TableError(f"{source}: column 'mux' must hold integers >= 1; got {rows['mux'].min()}")
    if "throughput" in rows and (rows["throughput"].dropna() <= 0).any():
        raise TableError(f"{source}: column 'throughput' must be positive examples/s")
    return frame


def _check_range(rows, name, low, high, source, upper_open=False):
    if name not in rows:
        return
    values = rows[name].dropna()
    bad = (values < low) | ((values >= high) if upper_open else (values > high))
    if bad.any():
        accepted = f"[{low:g}, {high:g})" if upper_open else f"[{low:g}, {high:g}]"
        raise TableError(
            f"{source}: column {name!r} must be a fraction in {accepted}; got {float(values[bad].iloc[0])!r}"
        )


def finished_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of finished trials (all rows when the table has no `status` column)."""
    if "status" not in frame.columns:
        return frame
    status = frame["status"].astype("string").fillna(FINISHED).str.upper()
    return frame[status == FINISHED]


def read_table(path: str | os.PathLike, required: Sequence[str] = MINIMAL_COLUMNS) -> pd.DataFrame:
    """Read and validate a results table (CSV, or Parquet by extension)."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"results table {str(path)!r} does not exist (expected a CSV or Parquet file)")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            # text columns stay text: a commit hash such as 9922e10 would otherwise parse as a float
            frame = pd.read_csv(path, dtype={c.name: str for c in COLUMNS.values() if c.kind == "str"})
    except pd.errors.EmptyDataError:
        raise TableError(f"results table {str(path)!r} is empty: no header and no rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise TableError(f"results table {str(path)!r} cannot be read as CSV/Parquet: {exc}") from None
    return validate_table(frame, required=required, source=str(path))


def write_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(tmp)` with a temporary file's path in `path`'s folder, then rename it to `path`:
    readers see the old file or the new one, never half of one. The one atomic writer of files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table atomically: a temporary file in the same folder, then a rename."""
    ordered = [c for c in COLUMNS if c in frame.columns] + [c for c in frame.columns if c not in COLUMNS]
    frame = frame[ordered]
    if Path(path).suffix == ".parquet":
        return write_atomically(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return write_atomically(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file (UTF-8) atomically, like `write_table`."""
    return write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def rows_to_frame(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """Build a table from row dicts, keeping schema columns first and coercing their types."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    return _coerce(frame, "rows")


def append_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, object]]) -> Path:
    """Append rows to the table at `path` (creating it), rewriting it atomically."""
    path = Path(path)
    new = rows_to_frame(rows)
    if path.is_file():
        old = pd.read_csv(path) if path.suffix != ".parquet" else pd.read_parquet(path)
        new = pd.concat([old, new], ignore_index=True)
    return write_table(new, path)


def is_missing(value: object) -> bool:
    """True for None and NaN, the two ways a cell can be empty."""
    return value is None or (isinstance(value, float) and math.isnan(value))
