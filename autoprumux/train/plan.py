"""The stage graph of one (N, s) configuration, with content-addressed stage keys (torch-free).

A stage's key is a hash of everything that determines its output: its own settings, the task,
model, seed, data and mux settings, and the key of the stage it starts from. Two trials that need
the same stage output therefore share one key, and a sweep trains it once.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from autoprumux.models.presets import is_muxplm
from autoprumux.spec import TrainingSettings, settings_to_dict

STAGES = ("pretrain", "warmup", "finetune", "prune", "post_finetune")


@dataclass(frozen=True)
class Stage:
    """One stage of one configuration: `key` names its checkpoint, `parent` the one it starts from."""

    name: str
    mux: int
    sparsity: float
    key: str
    parent: str | None


def _stage_key(name: str, mux: int, sparsity: float, parent: str | None, payload: dict) -> str:
    blob = json.dumps(
        {"stage": name, "mux": mux, "sparsity": round(sparsity, 6), "parent": parent, **payload},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
    tag = f"N{mux}" if name in ("pretrain", "warmup", "finetune") else f"N{mux}-s{sparsity:g}"
    return f"{name}-{tag}-{digest}"


def corpus_files(corpus: str | Path) -> list[Path]:
    """The files of a pre-training corpus: the file itself, or every .txt under a folder, sorted."""
    path = Path(corpus)
    return sorted(path.rglob("*.txt")) if path.is_dir() else [path]


@functools.lru_cache(maxsize=8)
def _corpus_digest(files: tuple[tuple[str, int, int], ...]) -> str:
    """Content hash of (path, size, mtime)-stamped files: a plan hashes its corpus once, not per trial."""
    digest = hashlib.sha256()
    for name, _, _ in files:
        digest.update(Path(name).name.encode())
        digest.update(Path(name).read_bytes())
    return digest.hexdigest()[:16]


def data_identity(training: TrainingSettings) -> dict:
    """The data settings that determine a stage's output (`trim_padding` only changes evaluation speed)."""
    return {k: v for k, v in settings_to_dict(training.data).items() if k != "trim_padding"}


def corpus_identity(training: TrainingSettings) -> dict:
    """What the pre-training corpus is, for its stage key: a named corpus by content, else the task's texts."""
    corpus = training.pretrain.corpus
    if corpus is None:
        return {"task_texts": training.task, "data": data_identity(training)}
    stamped = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in corpus_files(corpus))
    return {"corpus": _corpus_digest(stamped), "max_seq_len": training.data.max_seq_len}


def stage_chain(training: TrainingSettings, mux: int, sparsity: float) -> tuple[Stage, ...]:
    """The stages that produce the deployed model of (N = mux, s = sparsity), first to last.

    The backbone is `training.model_for(mux)`. With a pre-training budget, every N starts with
    multiplexed pre-training, keyed by backbone, N, corpus and its settings only (not the task),
    so tasks share it. Otherwise N > 1 starts with a token-retrieval warm-up (unless its budget is
    0). An N > 1 that starts from a MUX-PLM checkpoint needs neither. Every N has a task fine-tune (the
    s = 0 model, also the pruning teacher); s > 0 adds pruning and a post-pruning fine-tune.
    """
    training = training.for_mux(mux)
    chain: list[Stage] = []
    parent: str | None = None
    muxplm = mux > 1 and is_muxplm(training.model)  # pre-trained with multiplexing already
    pretrain = training.pretrain.budget.amount > 0 and not muxplm
    if pretrain:
        payload = {
            "model": training.model,
            "seed": training.seed,
            "mux_settings": settings_to_dict(training.mux) if mux > 1 else None,
            "pretrain": {k: v for k, v in settings_to_dict(training.pretrain).items() if k != "corpus"},
            **corpus_identity(training),
        }
        parent = _stage_key("pretrain", mux, 0.0, None, payload)
        chain.append(Stage(name="pretrain", mux=mux, sparsity=0.0, key=parent, parent=None))
    common = {
        "task": training.task,
        "model": training.model,
        "seed": training.seed,
        "data": data_identity(training),
        "mux_settings": settings_to_dict(training.mux) if mux > 1 else None,
    }

    def add(name: str, stage_sparsity: float, settings: object) -> None:
        nonlocal parent
        key = _stage_key(name, mux, stage_sparsity, parent, {**common, name: settings_to_dict(settings)})
        chain.append(Stage(name=name, mux=mux, sparsity=stage_sparsity, key=key, parent=parent))
        parent = key

    if mux > 1 and training.warmup.budget.amount > 0 and not pretrain and not muxplm:
        add("warmup", 0.0, training.warmup)
    add("finetune", 0.0, training.finetune)
    if sparsity > 0:
        add("prune", sparsity, training.prune)
        add("post_finetune", sparsity, training.post_finetune)
    return tuple(chain)
