"""GLUE classification tasks (`glue/<task>`): from a local GLUE folder, or through `datasets`.

With a path, the task's folder as the GLUE download writes it (`SST-2/train.tsv`, `dev.tsv`,
MNLI's `dev_matched.tsv`, CoLA without a header row) is read by the local-file loader with that
task's column names; a folder exported from `datasets` (columns `sentence`, `premise`, ...) works
too. Without a path, `datasets.load_dataset` fetches it, which needs the network or its cache.
GLUE test splits carry no labels, so `test` is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autoprumux.data._files import DEFAULT_TEXT_COLUMNS, FileLayout, capped_rows, load_files
from autoprumux.data._types import TaskData, TextSplit
from autoprumux.errors import DataError

HUB_ID = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: its `datasets` config and columns, and its original TSV columns."""

    subset: str
    text: str  # column in `datasets`
    text_pair: str | None
    label_names: tuple[str, ...]
    tsv_text: str  # columns in the original GLUE TSV files
    tsv_text_pair: str | None
    tsv_label: str = "label"
    validation: str = "validation"  # split name in `datasets` and stem of the local file
    validation_file: str = "dev"
    headerless: tuple[str, ...] | None = None


GLUE_TASKS: dict[str, GlueTask] = {
    "sst2": GlueTask("sst2", "sentence", None, ("negative", "positive"), "sentence", None),
    "cola": GlueTask(
        "cola", "sentence", None, ("unacceptable", "acceptable"), "sentence", None,
        headerless=("source", "label", "original_label", "sentence"),
    ),
    "mrpc": GlueTask(
        "mrpc", "sentence1", "sentence2", ("not_equivalent", "equivalent"), "#1 String", "#2 String", "Quality"
    ),
    "qqp": GlueTask(
        "qqp", "question1", "question2", ("not_duplicate", "duplicate"), "question1", "question2", "is_duplicate"
    ),
    "mnli": GlueTask(
        "mnli", "premise", "hypothesis", ("entailment", "neutral", "contradiction"), "sentence1", "sentence2",
        "gold_label", validation="validation_matched", validation_file="dev_matched",
    ),
    "qnli": GlueTask("qnli", "question", "sentence", ("entailment", "not_entailment"), "question", "sentence"),
    "rte": GlueTask("rte", "sentence1", "sentence2", ("entailment", "not_entailment"), "sentence1", "sentence2"),
}  # fmt: skip


def _layout(task: GlueTask) -> FileLayout:
    return FileLayout(
        validation_stems=(task.validation_file, task.validation, "dev", "validation"),
        test_stems=(task.validation_file.replace("dev", "test"), "test"),
        text_columns=((task.tsv_text, task.tsv_text_pair), (task.text, task.text_pair), *DEFAULT_TEXT_COLUMNS),
        label_columns=(task.tsv_label, "label"),
        label_names=task.label_names,
        headerless=task.headerless,
    )


def _hub_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]  # connection, offline mode, not found, hub HTTP errors
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def _from_datasets(task: GlueTask, train_size: int | None, eval_size: int | None) -> dict[str, TextSplit]:
    import datasets

    try:
        dataset = datasets.load_dataset(HUB_ID, task.subset)
    except _hub_errors() as exc:
        raise DataError(
            f"cannot load GLUE {task.subset!r} through datasets ({type(exc).__name__}: offline?); download GLUE and "
            "point at the task's folder with --data-path DIR (CLI) or path = DIR in the spec [data] table"
        ) from None

    def split(name: str, cap: int | None) -> TextSplit:
        rows = dataset[name]
        if cap is not None and cap < len(rows):
            rows = rows.select(capped_rows(len(rows), cap, name))
        return TextSplit(
            texts=tuple(rows[task.text]),
            text_pairs=None if task.text_pair is None else tuple(rows[task.text_pair]),
            labels=tuple(int(y) for y in rows["label"]),
        )

    return {"train": split("train", train_size), "validation": split(task.validation, eval_size)}


def load_glue(
    name: str,
    *,
    path: str | Path | None = None,
    train_size: int | None = None,
    eval_size: int | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
) -> TaskData:
    """The GLUE task `name` (`glue/sst2`, ...) from the folder `path`, or from `datasets` without one.

    `train_size` caps the training split and `eval_size` the validation split, each with a fixed
    random subset (see `load_files`).
    """
    task = GLUE_TASKS[name.split("/", 1)[1]]
    if path is not None:
        return load_files(
            name, path, layout=_layout(task), train_size=train_size, eval_size=eval_size,
            text_column=text_column, text_pair_column=text_pair_column, label_column=label_column,
        )  # fmt: skip
    splits = _from_datasets(task, train_size, eval_size)
    return TaskData(
        name=name,
        num_labels=len(task.label_names),
        label_names=task.label_names,
        is_pair=task.text_pair is not None,
        test=None,
        **splits,
    )
