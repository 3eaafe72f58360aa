"""The pruning stages of PruMUX: CoFi pruning with distillation, then fine-tuning of the pruned model.

Both follow the stage contract::

    run_<stage>(settings, stage, parent_dir, out_dir, *, device, teacher_dir=None, progress=True) -> dict

`run_prune` starts from the fine-tuned s = 0 model of the same N (`parent_dir`; it is also the
teacher unless `teacher_dir` names another), attaches L0 gates, trains model and gates under the
Lagrangian sparsity constraint with layer and prediction distillation, then compacts the model
and writes the compacted model, `stage.json` and `masks.pt` (the final deterministic masks and
log α). `run_post_finetune` fine-tunes the compacted model on the task, optionally distilling
the teacher's predictions.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from autoprumux.errors import ModelError
from autoprumux.prune import (
    GateMasks,
    L0Gates,
    LayerDistiller,
    SparsityConstraint,
    attach_gates,
    compact_model,
    expected_sparsity,
    mask_sparsity,
    measured_prunable_parameters,
    measured_sparsity,
    prediction_distillation_loss,
    surviving_structure,
    teacher_layer_indices,
)
from autoprumux.prune.objective import DistillationWeights, PruningObjective
from autoprumux.spec import TrainingSettings, settings_to_dict
from autoprumux.train.device import resolve_device, seed_everything
from autoprumux.train.loop import default_param_groups, evaluate_accuracy, model_inputs, train_loop
from autoprumux.train.plan import Stage
from autoprumux.train.stage_io import (
    MODEL_DIR,
    budget_batches,
    epoch_batches,
    load_parent_model,
    load_stage_data,
    steps_per_epoch,
    write_stage,
)

MASKS_FILE = "masks.pt"


def _load_teacher(teacher_dir: Path, mux: int):
    if not (Path(teacher_dir) / MODEL_DIR / "config.json").is_file():
        raise ModelError(f"teacher {str(teacher_dir)!r} holds no model/ (expected an s = 0 run or stage of N = {mux})")
    teacher = load_parent_model(teacher_dir)
    if teacher.config.mux_width != mux:
        raise ModelError(
            f"teacher {str(teacher_dir)!r} has N = {teacher.config.mux_width}; pruning N = {mux} needs a teacher of the same N"
        )
    if teacher.config.is_compact:
        raise ModelError(f"teacher {str(teacher_dir)!r} is a pruned model; expected the unpruned (s = 0) model")
    return teacher


def save_masks(path: Path, masks: GateMasks, gates: L0Gates) -> None:
    """Save the final deterministic masks and the gates' log α (tensors, CPU) to `path`."""
    payload = {
        "masks": {k: v.cpu() for k, v in vars(masks.detach()).items()},
        "log_alpha": {k: v.detach().cpu() for k, v in gates.log_alpha.items()},
    }
    torch.save(payload, path)


def load_masks(path: Path) -> GateMasks:
    """The deterministic masks a prune stage saved (`masks.pt`)."""
    return GateMasks(**torch.load(path, map_location="cpu")["masks"])


def _write_with_masks(out_dir: Path, model, tokenizer, metrics: dict, masks: GateMasks, gates: L0Gates) -> None:
    """`write_stage` plus `masks.pt`, still all-or-nothing: both land in a temporary sibling first."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".prune", dir=out_dir.parent))
    try:
        complete = staging / "stage"
        write_stage(complete, model, tokenizer, metrics)
        save_masks(complete / MASKS_FILE, masks, gates)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(complete, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _prune_metrics(stage: Stage, settings: TrainingSettings, model, gates, masks, result, data, **extra) -> dict:
    return {
        "stage": stage.name,
        "key": stage.key,
        "mux": stage.mux,
        "sparsity_target": stage.sparsity,
        "sparsity": measured_sparsity(model),
        "expected_sparsity": float(expected_sparsity(gates).detach()),
        "mask_sparsity": mask_sparsity(masks, gates),
        "params": model.num_parameters(),
        "prunable_params": measured_prunable_parameters(model),
        "structure": surviving_structure(model),
        "budget": str(settings.prune.budget),
        "steps": result.steps,
        "train_examples": len(data.train),
        "validation_examples": len(data.validation),
        "history": result.history,
        "settings": settings_to_dict(settings.prune),
        **extra,
    }


def run_prune(
    settings: TrainingSettings,
    stage: Stage,
    parent_dir: Path | None,
    out_dir: Path,
    *,
    device=None,
    teacher_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """CoFi-prune the fine-tuned N-way model of `parent_dir` to sparsity `stage.sparsity`.

    Returns (and writes to `out_dir/stage.json`) the metrics: `accuracy` (validation accuracy of
    the compacted model, a fraction), `sparsity` (measured on the compacted model, a fraction),
    `expected_sparsity` and `mask_sparsity` at the end of training, `params`, `prunable_params`,
    `structure` (heads and FFN dims per layer, hidden size, skipped blocks), `teacher_accuracy`,
    `steps`, `duration_s` (seconds) and the per-epoch `history` (gated-model accuracy with
    deterministic masks, losses, expected sparsity).
    """
    started = time.perf_counter()
    device = resolve_device(device)
    prune = settings.prune
    if parent_dir is None:
        raise ModelError("the prune stage needs the fine-tuned s = 0 model to start from")
    teacher_dir = Path(teacher_dir) if teacher_dir is not None else Path(parent_dir)
    teacher = _load_teacher(teacher_dir, stage.mux).to(device)
    data = load_stage_data(settings, parent_dir)
    model = load_parent_model(parent_dir)
    model.drop_retrieval_head()
    if prune.freeze_embeddings:
        model.bert.embeddings.requires_grad_(False)

    # the gates' initial noise and the distiller's projections are drawn here, before the loop
    # seeds: seed now, so the stage does not depend on what its process ran before it
    seed_everything(settings.seed)
    gated = attach_gates(model.to(device), droprate_init=prune.droprate_init)
    per_epoch = steps_per_epoch(data.train, stage.mux, prune.batch_size)
    total_batches = budget_batches(prune.budget, data.train, stage.mux, prune.batch_size, prune.grad_accum)
    if prune.lagrangian_warmup_ratio is not None:  # the target sparsity ramps over a share of the steps
        warmup_steps = math.ceil(prune.lagrangian_warmup_ratio * total_batches / prune.grad_accum)
    else:
        warmup_steps = math.ceil(prune.lagrangian_warmup_epochs * per_epoch / prune.grad_accum)
    constraint = SparsityConstraint(gated.gates, stage.sparsity, warmup_steps, prune.reg_learning_rate)
    distiller = LayerDistiller(model.config.hidden_size, teacher_layer_indices(model.config.num_hidden_layers))
    distiller.to(device)
    objective = PruningObjective(gated, teacher, constraint, distiller, DistillationWeights.from_settings(prune))
    groups = default_param_groups(model, 0.0) + default_param_groups(distiller, 0.0)
    accuracy = lambda m: evaluate_accuracy(  # noqa: E731
        m, data.validation, stage.mux, prune.batch_size, device, trim_padding=settings.data.trim_padding
    )
    teacher_accuracy = accuracy(teacher)

    result = train_loop(
        model,
        epoch_batches(data.train, stage.mux, prune.batch_size, settings.seed),
        objective,
        total_batches=total_batches,
        steps_per_epoch=per_epoch,
        learning_rate=prune.learning_rate,
        param_groups=groups,
        extra_optimizers=[constraint.optimizer],
        grad_accum=prune.grad_accum,
        evaluate=accuracy,
        keep_best=False,  # the gates are not in the model's weights; the last state is the pruned one
        on_step=constraint.after_step,
        seed=settings.seed,
        device=device,
        progress=progress,
        desc=f"prune N={stage.mux} s={stage.sparsity:g}",
    )
    masks = gated.gates.deterministic().detach()
    gated.detach()
    compacted = compact_model(model, masks)
    metrics = _prune_metrics(
        stage, settings, compacted, gated.gates, masks, result, data,
        accuracy=accuracy(compacted),
        teacher_accuracy=teacher_accuracy,
        teacher_dir=str(teacher_dir),
        lagrangian_warmup_steps=warmup_steps,
        duration_s=time.perf_counter() - started,
    )
    _write_with_masks(out_dir, compacted.cpu(), data.tokenizer, metrics, masks, gated.gates)
    return metrics


def run_post_finetune(
    settings: TrainingSettings,
    stage: Stage,
    parent_dir: Path | None,
    out_dir: Path,
    *,
    device=None,
    teacher_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Fine-tune the compacted model of the prune stage (`parent_dir`) on the task.

    With `post_finetune.distill_pred_weight` > 0 the loss adds that weight times the prediction
    distillation from the teacher (`teacher_dir`, the s = 0 model). Metrics: `accuracy` (best
    validation accuracy, a fraction; its weights are saved), `sparsity` (measured), `params`,
    `prunable_params`, `structure`, `steps`, `duration_s`, `history`.
    """
    started = time.perf_counter()
    device = resolve_device(device)
    post = settings.post_finetune
    if parent_dir is None:
        raise ModelError("the post-pruning fine-tune needs the pruned model to start from")
    data = load_stage_data(settings, parent_dir)
    model = load_parent_model(parent_dir)
    teacher = None
    if post.distill_pred_weight > 0:
        if teacher_dir is None:
            raise ModelError("post_finetune.distill_pred_weight > 0 needs the teacher (the s = 0 model of this N)")
        teacher = _load_teacher(Path(teacher_dir), stage.mux).to(device).eval().requires_grad_(False)
    temperature = settings.prune.distill_temperature

    def loss_fn(model, batch):
        output = model(**model_inputs(batch))
        if teacher is None:
            return output.loss, {}
        with torch.no_grad():
            teacher_logits = teacher(**{k: v for k, v in model_inputs(batch).items() if k not in ("labels", "valid")}).logits
        distill = prediction_distillation_loss(output.logits, teacher_logits, temperature, batch.valid)
        logs = {"task_loss": float(output.loss.detach()), "prediction_loss": float(distill.detach())}
        return output.loss + post.distill_pred_weight * distill, logs

    accuracy = lambda m: evaluate_accuracy(  # noqa: E731
        m, data.validation, stage.mux, post.batch_size, device, trim_padding=settings.data.trim_padding
    )
    result = train_loop(
        model,
        epoch_batches(data.train, stage.mux, post.batch_size, settings.seed),
        loss_fn,
        total_batches=budget_batches(post.budget, data.train, stage.mux, post.batch_size),
        steps_per_epoch=steps_per_epoch(data.train, stage.mux, post.batch_size),
        learning_rate=post.learning_rate,
        weight_decay=settings.finetune.weight_decay,
        warmup_ratio=post.warmup_ratio,
        evaluate=accuracy,
        seed=settings.seed,
        device=device,
        progress=progress,
        desc=f"post-prune fine-tune N={stage.mux} s={stage.sparsity:g}",
    )
    metrics = {
        "stage": stage.name,
        "key": stage.key,
        "mux": stage.mux,
        "sparsity_target": stage.sparsity,
        "accuracy": result.best_metric,
        "best_epoch": result.best_epoch,
        "sparsity": measured_sparsity(model),
        "params": model.num_parameters(),
        "prunable_params": measured_prunable_parameters(model),
        "structure": surviving_structure(model),
        "budget": str(post.budget),
        "steps": result.steps,
        "train_examples": len(data.train),
        "validation_examples": len(data.validation),
        "duration_s": time.perf_counter() - started,
        "history": result.history,
        "settings": settings_to_dict(post),
    }
    write_stage(out_dir, model.cpu(), data.tokenizer, metrics)
    return metrics
