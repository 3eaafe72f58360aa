"""The token-retrieval warm-up and the task fine-tuning stages (MECHANICS.md section 1).

Both follow the stage contract::

    run_<stage>(settings, stage, parent_dir, out_dir, *, device, teacher_dir=None, progress=True) -> dict

and write `out_dir/model/` and `out_dir/stage.json` atomically. The warm-up (N > 1 only) builds a
fresh model with a retrieval head and trains it to recover every instance's tokens from the
demultiplexed states; the fine-tune starts from the warm-up (or a fresh model) and trains the
classifier, optionally keeping the retrieval loss as an auxiliary term.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from autoprumux.models import build_model
from autoprumux.spec import TrainingSettings, settings_to_dict
from autoprumux.train.device import autocast, resolve_device, seed_everything
from autoprumux.train.loop import evaluate_accuracy, model_inputs, train_loop
from autoprumux.train.plan import Stage
from autoprumux.train.stage_io import (
    budget_batches,
    epoch_batches,
    load_parent_model,
    load_stage_data,
    read_stage_metrics,
    steps_per_epoch,
    write_stage,
)

WEIGHT_DECAY_WARMUP = 0.01

#: Modules on top of the encoder: the multiplexed model's "head".
HEAD_PREFIXES = ("demultiplexer.", "bert.pooler.", "classifier.", "retrieval_head.")

# Why `FinetuneSettings.head_lr_scale` exists, and why its default is 1.0: with the [CLS] readout
# at N = 2, the head learning at the encoder's rate kept from-scratch models at chance (tiny
# preset, 8 epochs at 5e-4 after a 1-epoch warm-up: scale 1.0 -> 50%, 0.3 -> 56%, 0.1 -> 73.5%,
# 0.03 -> 65.7%). With the instance_mean readout (the default) the opposite holds: N = 4, 20 epochs
# after a short warm-up, 1.0 -> 68.9% against 0.1 -> 56.2%. For a pretrained backbone the head is
# the only new part, and 0.1 of a 2e-5 fine-tuning rate left it learning at 2e-6.


def finetune_param_groups(model, learning_rate: float, weight_decay: float, head_lr_scale: float) -> list[dict]:
    """AdamW groups for fine-tuning: the head at `learning_rate * head_lr_scale`, the rest at `learning_rate`.

    Matrices get `weight_decay`, biases and LayerNorm weights none.
    """
    groups: dict[tuple[bool, bool], list] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault((name.startswith(HEAD_PREFIXES), parameter.dim() >= 2), []).append(parameter)
    return [
        {
            "params": params,
            "lr": learning_rate * (head_lr_scale if is_head else 1.0),
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (is_head, decays), params in sorted(groups.items())
    ]


def _new_model(settings: TrainingSettings, stage: Stage, data, *, retrieval_head: bool):
    seed_everything(settings.seed)
    return build_model(
        settings.model, data.tokenizer, stage.mux, settings.mux, data.task.num_labels,
        label_names=data.task.label_names, retrieval_head=retrieval_head,
        max_positions=settings.data.max_seq_len,
    )


@torch.no_grad()
def evaluate_retrieval(model, encoded, mux_width: int, batch_size: int, device, seed: int = 0,
                       corrupt=None) -> float:
    """Token-retrieval accuracy (fraction of scored tokens recovered) on `encoded`.

    Deterministic: the random instance chosen at each position (and any corruption) is drawn
    from `seed`. `corrupt(batch) -> (input_ids, targets)` replaces the clean inputs and what is
    scored (pre-training's masked-token accuracy scores the corrupted positions only).
    """
    from autoprumux.data import mux_batches

    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct = total = 0
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for batch in mux_batches(encoded, mux_width, batch_size, shuffle=False):
            batch = batch.to(device)
            input_ids, targets = corrupt(batch) if corrupt is not None else (batch.input_ids, None)
            with autocast(device):
                output = model(
                    input_ids=input_ids, attention_mask=batch.attention_mask,
                    token_type_ids=batch.token_type_ids, retrieval=True, retrieval_targets=targets,
                )
            correct += int((output.retrieval_logits.argmax(-1) == output.retrieval_labels).sum())
            total += output.retrieval_labels.numel()
    model.train(was_training)
    return correct / total if total else float("nan")


def run_warmup(
    settings: TrainingSettings,
    stage: Stage,
    parent_dir: Path | None,
    out_dir: Path,
    *,
    device=None,
    teacher_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Token-retrieval warm-up of a new N-way multiplexed model; returns the stage's metrics.

    Metrics: `retrieval_accuracy` (validation, fraction of tokens), `epochs`, `steps`,
    `duration_s` (seconds) and the per-epoch `history`.
    """
    started = time.perf_counter()
    device = resolve_device(device)
    warmup = settings.warmup
    data = load_stage_data(settings, parent_dir)
    model = _new_model(settings, stage, data, retrieval_head=True)

    def loss_fn(model, batch):
        output = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids,
            retrieval=True, retrieval_fraction=warmup.retrieval_fraction,
        )
        return output.retrieval_loss, {}

    result = train_loop(
        model,
        epoch_batches(data.train, stage.mux, warmup.batch_size, settings.seed),
        loss_fn,
        total_batches=budget_batches(warmup.budget, data.train, stage.mux, warmup.batch_size),
        steps_per_epoch=steps_per_epoch(data.train, stage.mux, warmup.batch_size),
        learning_rate=warmup.learning_rate,
        weight_decay=WEIGHT_DECAY_WARMUP,
        warmup_ratio=warmup.warmup_ratio,
        evaluate=lambda m: evaluate_retrieval(m, data.validation, stage.mux, warmup.batch_size, device, settings.seed),
        stop_at=warmup.retrieval_target,
        seed=settings.seed,
        device=device,
        progress=progress,
        desc=f"warm-up N={stage.mux}",
    )
    metrics = {
        "stage": stage.name,
        "key": stage.key,
        "mux": stage.mux,
        "retrieval_accuracy": result.best_metric,
        "best_epoch": result.best_epoch,
        "budget": str(warmup.budget),
        "retrieval_target": warmup.retrieval_target,
        "steps": result.steps,
        "examples_seen": result.steps * warmup.batch_size * stage.mux,
        "train_examples": len(data.train),
        "duration_s": time.perf_counter() - started,
        "history": result.history,
        "settings": settings_to_dict(warmup),
    }
    write_stage(out_dir, model.cpu(), data.tokenizer, metrics)
    return metrics


def run_finetune(
    settings: TrainingSettings,
    stage: Stage,
    parent_dir: Path | None,
    out_dir: Path,
    *,
    device=None,
    teacher_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Task fine-tuning of the N-way model (from the warm-up when there is one); returns its metrics.

    Metrics: `accuracy` (best validation accuracy, a fraction; its weights are the ones saved),
    `best_epoch`, `params`, `prunable_params`, `steps`, `duration_s` and the per-epoch `history`.
    The saved model carries no retrieval head.
    """
    started = time.perf_counter()
    device = resolve_device(device)
    finetune = settings.finetune
    coeff = finetune.retrieval_loss_coeff if stage.mux > 1 else 0.0
    data = load_stage_data(settings, parent_dir)
    seed_everything(settings.seed)  # a new classifier or retrieval head is drawn before the loop seeds
    if parent_dir is not None:
        model = load_parent_model(parent_dir)
        if read_stage_metrics(parent_dir).get("stage") == "pretrain":  # task-free: give it this task's classifier
            model.reset_classifier(data.task.num_labels, data.task.label_names)
    else:
        model = _new_model(settings, stage, data, retrieval_head=coeff > 0)
    if coeff > 0 and model.retrieval_head is None:
        model.add_retrieval_head()
    elif coeff == 0:
        model.drop_retrieval_head()

    def loss_fn(model, batch):
        output = model(**model_inputs(batch), retrieval=coeff > 0)
        if coeff == 0:
            return output.loss, {}
        logs = {"task_loss": float(output.loss.detach()), "retrieval_loss": float(output.retrieval_loss.detach())}
        return output.loss + coeff * output.retrieval_loss, logs

    head_lr_scale = finetune.head_lr_scale if stage.mux > 1 else 1.0
    result = train_loop(
        model,
        epoch_batches(data.train, stage.mux, finetune.batch_size, settings.seed),
        loss_fn,
        total_batches=budget_batches(finetune.budget, data.train, stage.mux, finetune.batch_size, finetune.grad_accum),
        steps_per_epoch=steps_per_epoch(data.train, stage.mux, finetune.batch_size),
        learning_rate=finetune.learning_rate,
        param_groups=finetune_param_groups(model, finetune.learning_rate, finetune.weight_decay, head_lr_scale),
        grad_accum=finetune.grad_accum,
        warmup_ratio=finetune.warmup_ratio,
        evaluate=lambda m: evaluate_accuracy(
            m, data.validation, stage.mux, finetune.batch_size, device, trim_padding=settings.data.trim_padding
        ),
        seed=settings.seed,
        device=device,
        progress=progress,
        desc=f"fine-tune N={stage.mux}",
    )
    model.drop_retrieval_head()
    metrics = {
        "stage": stage.name,
        "key": stage.key,
        "mux": stage.mux,
        "accuracy": result.best_metric,
        "best_epoch": result.best_epoch,
        "budget": str(finetune.budget),
        "steps": result.steps,
        "train_examples": len(data.train),
        "validation_examples": len(data.validation),
        "params": model.num_parameters(),
        "prunable_params": model.prunable_parameter_count(),
        "duration_s": time.perf_counter() - started,
        "history": result.history,
        "settings": settings_to_dict(finetune),
    }
    write_stage(out_dir, model.cpu(), data.tokenizer, metrics)
    return metrics
