"""The stage graph of one (N, s) configuration, with content-addressed stage keys (torch-free).

A stage's key is a hash of everything that determines its output: its own settings, the task,
model, seed, data and mux settings, and the key of the stage it starts from. Two trials that need
the same stage output therefore share one key, and a sweep trains it once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from autoprumux.spec import TrainingSettings, settings_to_dict

STAGES = ("warmup", "finetune", "prune", "post_finetune")


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
    tag = f"N{mux}" if name in ("warmup", "finetune") else f"N{mux}-s{sparsity:g}"
    return f"{name}-{tag}-{digest}"


def stage_chain(training: TrainingSettings, mux: int, sparsity: float) -> tuple[Stage, ...]:
    """The stages that produce the deployed model of (N = mux, s = sparsity), first to last.

    N > 1 starts with a token-retrieval warm-up (unless its epochs are 0); every N has a task
    fine-tune (the s = 0 model, also the pruning teacher); s > 0 adds pruning and a post-pruning
    fine-tune.
    """
    common = {
        "task": training.task,
        "model": training.model,
        "seed": training.seed,
        "data": settings_to_dict(training.data),
        "mux_settings": settings_to_dict(training.mux) if mux > 1 else None,
    }
    chain: list[Stage] = []
    parent: str | None = None

    def add(name: str, stage_sparsity: float, settings: object) -> None:
        nonlocal parent
        key = _stage_key(name, mux, stage_sparsity, parent, {**common, name: settings_to_dict(settings)})
        chain.append(Stage(name=name, mux=mux, sparsity=stage_sparsity, key=key, parent=parent))
        parent = key

    if mux > 1 and training.warmup.epochs > 0:
        add("warmup", 0.0, training.warmup)
    add("finetune", 0.0, training.finetune)
    if sparsity > 0:
        add("prune", sparsity, training.prune)
        add("post_finetune", sparsity, training.post_finetune)
    return tuple(chain)
