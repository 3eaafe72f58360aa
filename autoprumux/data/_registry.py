"""Tasks by name: `load_task` and `list_tasks`, the one place that knows which tasks exist."""

from __future__ import annotations

from pathlib import Path

from autoprumux.data._files import load_files
from autoprumux.data._glue import GLUE_TASKS, load_glue
from autoprumux.data._synthetic import load_synthetic_pairs, load_synthetic_sentiment
from autoprumux.data._types import TaskData
from autoprumux.errors import DataError

_SYNTHETIC = {"synthetic-sentiment": load_synthetic_sentiment, "synthetic-pairs": load_synthetic_pairs}
_GLUE = tuple(f"glue/{task}" for task in GLUE_TASKS)


def list_tasks() -> list[str]:
    """The task names `load_task` accepts (besides a path to a data file or folder)."""
    return [*_SYNTHETIC, "local", *_GLUE]


def _check_size(option: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DataError(f"{option} = {value!r} is invalid; expected a positive integer or None")


def load_task(
    name: str,
    *,
    seed: int = 0,
    path: str | Path | None = None,
    train_size: int | None = None,
    eval_size: int | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
) -> TaskData:
    """Load the task `name`: a built-in name (see `list_tasks`) or an existing data file/folder.

    - `synthetic-sentiment`, `synthetic-pairs`: generated from `seed`; `train_size` (default 8000)
      and `eval_size` (default 1000, for validation and test) set the split sizes.
    - `local` with `path` (a CSV/TSV/JSONL file or a folder with train/dev[/test] files), or the
      path itself as `name`: columns are found by name unless given; sizes cap the splits.
    - `glue/<task>`: from the local GLUE folder `path`, or through `datasets` without one.

    File and GLUE splits do not depend on `seed`. Raises DataError for an unknown task, a missing
    file or column, or GLUE without a path while offline.
    """
    _check_size("train_size", train_size)
    _check_size("eval_size", eval_size)
    columns = dict(text_column=text_column, text_pair_column=text_pair_column, label_column=label_column)
    if name in _SYNTHETIC:
        if path is not None:
            raise DataError(f"task {name!r} is generated and takes no data path (got {str(path)!r}); use task 'local' for files")
        return _SYNTHETIC[name](seed=seed, train_size=train_size, eval_size=eval_size)
    if name == "local":
        if path is None:
            raise DataError("task 'local' needs a data path: --data-path FILE_OR_DIR (CLI) or path in the spec [data] table")
        return load_files(name, path, train_size=train_size, eval_size=eval_size, **columns)
    if name.lower() in _GLUE:
        return load_glue(name.lower(), path=path, train_size=train_size, eval_size=eval_size, **columns)
    if name and Path(name).exists():
        return load_files(name, Path(name), train_size=train_size, eval_size=eval_size, **columns)
    raise DataError(f"unknown task {name!r}; expected one of {', '.join(list_tasks())} or an existing data file/folder")
