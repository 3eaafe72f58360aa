"""What every stage reads and writes: its task data and tokenizer, its parent, its output directory.

A stage's output directory holds `model/` (model and tokenizer, `save_pretrained` format) and
`stage.json` (its metrics). It is written atomically: everything goes to a temporary sibling
directory that is renamed into place at the end, so a crash never leaves a half-written stage.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from autoprumux.errors import ModelError
from autoprumux.models import load_model, quiet_transformers
from autoprumux.spec import TrainingSettings
from autoprumux.train.loop import epoch_generator

MODEL_DIR = "model"
STAGE_FILE = "stage.json"


@dataclass(frozen=True)
class StageData:
    """A task, its tokenizer and its encoded train / validation splits."""

    task: object  # autoprumux.data.TaskData
    tokenizer: PreTrainedTokenizerBase
    train: object  # autoprumux.data.EncodedSplit
    validation: object


def load_task_data(settings: TrainingSettings):
    """The task of `settings` (an `autoprumux.data.TaskData`), as its `[data]` settings select it."""
    from autoprumux.data import load_task

    data = settings.data
    return load_task(
        settings.task, seed=settings.seed, path=data.path, train_size=data.train_size, eval_size=data.eval_size,
        text_column=data.text_column, text_pair_column=data.text_pair_column, label_column=data.label_column,
    )


def load_stage_data(settings: TrainingSettings, parent_dir: Path | None = None) -> StageData:
    """Load the task of `settings`, its tokenizer (the parent's when there is one) and encode it."""
    from autoprumux.data import build_tokenizer, encode_split

    data = settings.data
    task = load_task_data(settings)
    if parent_dir is not None:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(Path(parent_dir) / MODEL_DIR)
    else:
        tokenizer = build_tokenizer(settings.model, task.train)
    return StageData(
        task=task,
        tokenizer=tokenizer,
        train=encode_split(tokenizer, task.train, data.max_seq_len),
        validation=encode_split(tokenizer, task.validation, data.max_seq_len),
    )


def load_parent_model(parent_dir: Path):
    """The model a stage starts from: `parent_dir/model/`."""
    return load_model(Path(parent_dir) / MODEL_DIR)


def epoch_batches(encoded, mux_width: int, batch_size: int, seed: int) -> Callable[[int], Iterator]:
    """`batches(epoch)` for `train_loop`: shuffled multiplexed batches, a new order per epoch."""
    from autoprumux.data import mux_batches

    def batches(epoch: int) -> Iterator:
        return mux_batches(encoded, mux_width, batch_size, shuffle=True, generator=epoch_generator(seed, epoch))

    return batches


def steps_per_epoch(encoded, mux_width: int, batch_size: int) -> int:
    """Batches per epoch of `epoch_batches`."""
    from autoprumux.data import num_mux_batches

    return num_mux_batches(len(encoded), mux_width, batch_size)


def budget_batches(budget, encoded, mux_width: int, batch_size: int, grad_accum: int = 1) -> int:
    """Batches a stage's `StageBudget` allows on `encoded` at this N and batch size."""
    return budget.batches(len(encoded), mux_width, batch_size, grad_accum)


def _atomic_dir(out_dir: Path, fill: Callable[[Path], None]) -> None:
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        fill(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)  # an earlier, incomplete or superseded output of this same stage
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_stage(out_dir: Path, model, tokenizer, metrics: dict) -> None:
    """Write `out_dir/model/` (model + tokenizer) and `out_dir/stage.json`, atomically."""

    def fill(tmp: Path) -> None:
        model_dir = tmp / MODEL_DIR
        with quiet_transformers():
            model.save_pretrained(model_dir)
            tokenizer.save_pretrained(model_dir)
        (tmp / STAGE_FILE).write_text(json.dumps(metrics, indent=2, default=str) + "\n")

    _atomic_dir(out_dir, fill)


def copy_model_dir(source_stage: Path, out_dir: Path) -> Path:
    """Copy a stage's `model/` to `out_dir/model/` atomically; returns the new model directory."""
    target = Path(out_dir) / MODEL_DIR
    _atomic_dir(target, lambda tmp: shutil.copytree(Path(source_stage) / MODEL_DIR, tmp, dirs_exist_ok=True))
    return target


def read_stage_metrics(stage_dir: Path) -> dict:
    """The metrics a finished stage wrote (`stage.json`, or `metrics.json` of a whole run)."""
    for name in (STAGE_FILE, "metrics.json"):
        path = Path(stage_dir) / name
        if path.is_file():
            return json.loads(path.read_text())
    raise ModelError(f"{str(stage_dir)!r} holds no finished stage (no {STAGE_FILE} or metrics.json)")


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write `payload` as JSON to `path` via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

