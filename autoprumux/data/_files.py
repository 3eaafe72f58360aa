"""Tasks from local files: CSV, TSV or JSONL, one file or a folder (including the GLUE layout).

A folder holds `train.<ext>`, a validation file (`dev`, `validation`, `valid` or `val`) and
optionally `test.<ext>`; a test file without labels (as in GLUE) gives `test=None`. A single file,
or a folder without a validation file, is split deterministically into train and validation.
TSV files are read as GLUE writes them: tab-separated, quotes are literal characters.

Splits and caps (`train_size`, `eval_size`) do not depend on the run's seed, so runs with
different seeds are evaluated on the same examples.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoprumux.data._types import TaskData, TextSplit
from autoprumux.errors import DataError

EXTENSIONS = (".tsv", ".csv", ".jsonl")
TRAIN_STEMS = ("train",)
VALIDATION_STEMS = ("dev", "validation", "valid", "val")
TEST_STEMS = ("test",)
#: (text, text pair) columns tried in order when none is given; pairs first, so a QNLI file with
#: `question` and `sentence` is read as a pair task.
DEFAULT_TEXT_COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("sentence1", "sentence2"),
    ("question", "sentence"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("sentence", None),
    ("text", None),
)
DEFAULT_LABEL_COLUMNS = ("label",)
VALIDATION_FRACTION = 0.1  # of a single file, when eval_size is not given
_SPLIT_SEED = "autoprumux-split"
_UNLABELLED = {"", "-1"}  # label values of unlabelled test rows (GLUE exports use -1)


@dataclass(frozen=True)
class FileLayout:
    """How to read one kind of folder: file stems per split and column candidates.

    `headerless` names the columns of train/validation files that have no header row (CoLA).
    """

    validation_stems: tuple[str, ...] = VALIDATION_STEMS
    test_stems: tuple[str, ...] = TEST_STEMS
    text_columns: tuple[tuple[str, str | None], ...] = DEFAULT_TEXT_COLUMNS
    label_columns: tuple[str, ...] = DEFAULT_LABEL_COLUMNS
    label_names: tuple[str, ...] | None = None  # fixed order of string labels (GLUE)
    headerless: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Table:
    path: Path
    columns: tuple[str, ...]
    rows: list[dict[str, str]]


def read_table(path: Path, *, headerless: Sequence[str] | None = None) -> _Table:
    """Read a CSV, TSV or JSONL file into string-valued rows."""
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist (expected a .csv, .tsv or .jsonl file)")
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise DataError(f"data file {str(path)!r} has an unsupported extension; expected one of {', '.join(EXTENSIONS)}")
    try:
        if suffix == ".jsonl":
            return _read_jsonl(path)
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",", headerless)
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise DataError(f"data file {str(path)!r} cannot be read: {exc}") from None


def _read_delimited(path: Path, delimiter: str, headerless: Sequence[str] | None) -> _Table:
    csv.field_size_limit(1 << 24)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(newline="", encoding="utf-8") as f:
        lines = [row for row in csv.reader(f, delimiter=delimiter, quoting=quoting) if row]
    if not lines:
        raise DataError(f"data file {str(path)!r} is empty")
    header = lines[0]
    if headerless and len(header) == len(headerless) and not set(header) & set(headerless):
        header, body = list(headerless), lines
    else:
        body = lines[1:]
    rows = [dict(zip(header, row, strict=False)) for row in body]  # short rows lack trailing fields
    return _Table(path, tuple(header), rows)


def _read_jsonl(path: Path) -> _Table:
    columns: dict[str, None] = {}
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise DataError(f"data file {str(path)!r}: every line must be a JSON object, got {line[:60]!r}")
                columns.update(dict.fromkeys(record))
                rows.append({k: "" if v is None else str(v) for k, v in record.items()})
    if not rows:
        raise DataError(f"data file {str(path)!r} is empty")
    return _Table(path, tuple(columns), rows)


def _choose_text_columns(
    table: _Table, layout: FileLayout, text_column: str | None, text_pair_column: str | None
) -> tuple[str, str | None]:
    present = ", ".join(table.columns)
    for given, option in ((text_column, "text_column"), (text_pair_column, "text_pair_column")):
        if given is not None and given not in table.columns:
            raise DataError(f"column {given!r} ({option}) not found in {str(table.path)!r}; columns present: {present}")
    if text_column is not None:
        return text_column, text_pair_column
    for text, pair in layout.text_columns:
        if text in table.columns and (pair is None or pair in table.columns):
            return text, text_pair_column or pair
    tried = ", ".join(t if p is None else f"{t}+{p}" for t, p in layout.text_columns)
    raise DataError(
        f"no text column found in {str(table.path)!r} (tried {tried}); columns present: {present}; "
        "name one with text_column in the spec [data] table"
    )


def _choose_label_column(table: _Table, layout: FileLayout, label_column: str | None) -> str:
    present = ", ".join(table.columns)
    if label_column is not None:
        if label_column not in table.columns:
            raise DataError(
                f"column {label_column!r} (label_column) not found in {str(table.path)!r}; columns present: {present}"
            )
        return label_column
    found = next((c for c in layout.label_columns if c in table.columns), None)
    if found is None:
        raise DataError(
            f"no label column found in {str(table.path)!r} (tried {', '.join(layout.label_columns)}); "
            f"columns present: {present}; name one with label_column in the spec [data] table"
        )
    return found


@dataclass(frozen=True)
class _RawSplit:
    texts: tuple[str, ...]
    text_pairs: tuple[str, ...] | None
    labels: tuple[str, ...]


def _raw_split(table: _Table, text: str, pair: str | None, label: str) -> _RawSplit:
    for column in (text, pair, label):
        if column is not None and column not in table.columns:
            raise DataError(
                f"column {column!r} not found in {str(table.path)!r}; columns present: {', '.join(table.columns)}"
            )
    rows = table.rows
    return _RawSplit(
        texts=tuple(r.get(text, "") for r in rows),
        text_pairs=None if pair is None else tuple(r.get(pair, "") for r in rows),
        labels=tuple(r.get(label, "").strip() for r in rows),
    )


def _label_vocabulary(raw: Sequence[_RawSplit], known: tuple[str, ...] | None) -> tuple[str, ...]:
    """Label names: `known` if given, 0..max for integer labels, else the sorted distinct strings."""
    values = sorted({v for split in raw for v in split.labels})
    if known is not None and set(values) <= set(known) | {str(i) for i in range(len(known))}:
        return known
    if values and all(v.isdigit() for v in values):
        return tuple(str(i) for i in range(max(int(v) for v in values) + 1))
    return tuple(values)


def _encode(raw: _RawSplit, names: tuple[str, ...]) -> TextSplit:
    ids = {name: i for i, name in enumerate(names)}
    for i in range(len(names)):  # integer labels of named classes (a GLUE export from `datasets`) are ids
        ids.setdefault(str(i), i)
    return TextSplit(texts=raw.texts, text_pairs=raw.text_pairs, labels=tuple(ids[v] for v in raw.labels))


def _take(raw: _RawSplit, rows: Sequence[int]) -> _RawSplit:
    return _RawSplit(
        texts=tuple(raw.texts[i] for i in rows),
        text_pairs=None if raw.text_pairs is None else tuple(raw.text_pairs[i] for i in rows),
        labels=tuple(raw.labels[i] for i in rows),
    )


def capped_rows(num_rows: int, cap: int, salt: str) -> list[int]:
    """`cap` of `num_rows` row numbers, a fixed random choice (independent of the run seed), ascending."""
    return sorted(random.Random(f"{_SPLIT_SEED}/{salt}").sample(range(num_rows), cap))


def _subset(raw: _RawSplit | None, cap: int | None, salt: str) -> _RawSplit | None:
    """At most `cap` rows, chosen by `capped_rows` and kept in file order."""
    if raw is None or cap is None or cap >= len(raw.texts):
        return raw
    return _take(raw, capped_rows(len(raw.texts), cap, salt))


def _split_off_validation(raw: _RawSplit, eval_size: int | None, where: Path) -> tuple[_RawSplit, _RawSplit]:
    """A fixed random `eval_size` rows (default VALIDATION_FRACTION) for validation, the rest for train."""
    n = len(raw.texts)
    n_val = eval_size if eval_size is not None else max(1, round(VALIDATION_FRACTION * n))
    if n_val >= n:
        raise DataError(f"{str(where)!r} has {n} examples, too few to split off {n_val} for validation")
    order = list(range(n))
    random.Random(f"{_SPLIT_SEED}/validation").shuffle(order)
    return _take(raw, sorted(order[n_val:])), _take(raw, sorted(order[:n_val]))


def _find_file(folder: Path, stems: Sequence[str]) -> Path | None:
    for stem in stems:
        for ext in EXTENSIONS:
            if (folder / f"{stem}{ext}").is_file():
                return folder / f"{stem}{ext}"
    return None


def _tables(path: Path, layout: FileLayout) -> tuple[_Table, _Table | None, _Table | None]:
    """The train table and, for a folder, the validation and test tables where present."""
    if not path.exists():
        raise DataError(
            f"data path {str(path)!r} does not exist (expected a folder with train/dev files or a .csv, .tsv or .jsonl file)"
        )
    if path.is_file():
        return read_table(path), None, None
    train = _find_file(path, TRAIN_STEMS)
    if train is None:
        names = sorted(p.name for p in path.iterdir())
        present = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "") or "none"
        raise DataError(
            f"data folder {str(path)!r} has no train file (expected train.tsv, train.csv or train.jsonl); files present: {present}"
        )
    val, test = _find_file(path, layout.validation_stems), _find_file(path, layout.test_stems)
    return (
        read_table(train, headerless=layout.headerless),
        None if val is None else read_table(val, headerless=layout.headerless),
        None if test is None else read_table(test, headerless=layout.headerless),
    )


def load_files(
    name: str,
    path: str | Path,
    *,
    layout: FileLayout = FileLayout(),
    train_size: int | None = None,
    eval_size: int | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
) -> TaskData:
    """A task from a data file or folder; columns are chosen from `layout` unless named.

    `train_size` caps the training split and `eval_size` the validation and test splits (a fixed
    random subset, kept in file order). String labels become ids in sorted order (or in the order
    of `layout.label_names`); integer labels 0..K-1 are kept as they are.
    """
    path = Path(path)
    train_table, val_table, test_table = _tables(path, layout)
    text, pair = _choose_text_columns(train_table, layout, text_column, text_pair_column)
    label = _choose_label_column(train_table, layout, label_column)
    train = _raw_split(train_table, text, pair, label)
    if val_table is None:
        train, validation = _split_off_validation(train, eval_size, path)
    else:
        validation = _raw_split(val_table, text, pair, label)
    test = None
    if test_table is not None and label in test_table.columns:
        test = _raw_split(test_table, text, pair, label)
        if set(test.labels) <= _UNLABELLED:
            test = None
    train = _subset(train, train_size, "train")
    validation = _subset(validation, eval_size, "validation")
    test = _subset(test, eval_size, "test")
    for raw, table in ((train, train_table), (validation, val_table or train_table), (test, test_table)):
        if raw is not None and "" in raw.labels:
            raise DataError(f"{str(table.path)!r} has rows with an empty {label!r} label")
    names = _label_vocabulary([s for s in (train, validation, test) if s is not None], layout.label_names)
    return TaskData(
        name=name,
        num_labels=len(names),
        label_names=names,
        is_pair=pair is not None,
        train=_encode(train, names),
        validation=_encode(validation, names),
        test=None if test is None else _encode(test, names),
    )
