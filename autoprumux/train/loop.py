"""The one training loop every stage uses, and accuracy evaluation over multiplexed batches.

    result = train_loop(
        model,
        batches=lambda epoch: mux_batches(train, N, 32, shuffle=True, generator=epoch_generator(seed, epoch)),
        steps_per_epoch=num_mux_batches(len(train), N, 32),
        loss_fn=lambda model, batch: (model(**model_inputs(batch)).loss, {}),
        epochs=3, learning_rate=5e-5, evaluate=lambda model: evaluate_accuracy(model, val, N, 64, device),
    )

AdamW with a linear warm-up then linear decay to zero, gradient accumulation, gradient clipping,
mixed precision on CUDA, evaluation after every epoch, and the best epoch's weights restored at the
end. Extra optimizers (pruning gates, Lagrange multipliers) are stepped with the main one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from autoprumux import progress as progress_board
from autoprumux.train.device import autocast, grad_scaler, seed_everything

LossFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class LoopState:
    """Where the loop is: passed to `on_step` after every optimizer step."""

    step: int  # optimizer steps done
    total_steps: int
    epoch: int
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class LoopResult:
    """What a training run did: per-epoch history and the best evaluation (higher is better)."""

    history: list[dict[str, float]]
    best_metric: float | None
    best_epoch: int | None  # 1-based; None without evaluation
    steps: int  # optimizer steps
    duration_s: float


def model_inputs(batch) -> dict[str, torch.Tensor]:
    """The keyword arguments of `MuxBertForSequenceClassification.forward` for a `MuxBatch`."""
    return dict(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        token_type_ids=batch.token_type_ids,
        labels=batch.labels,
        valid=batch.valid,
    )


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling generator of one epoch: a different, reproducible order per (seed, epoch)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def default_param_groups(model: nn.Module, weight_decay: float, learning_rate: float | None = None) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on biases, LayerNorms and 1-d parameters."""
    decay, no_decay = [], []
    for _, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if learning_rate is not None:
        for group in groups:
            group["lr"] = learning_rate
    return [g for g in groups if g["params"]]


def linear_schedule(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Learning-rate multiplier: 0 -> 1 over `warmup_steps`, then 1 -> 0 at `total_steps`."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return multiplier


def train_loop(
    model: nn.Module,
    batches: Callable[[int], Iterable[Any]],
    loss_fn: LossFn,
    *,
    steps_per_epoch: int,
    epochs: float | None = None,
    total_batches: int | None = None,
    learning_rate: float,
    weight_decay: float = 0.0,
    param_groups: list[dict] | None = None,
    extra_optimizers: Sequence[torch.optim.Optimizer] = (),
    grad_accum: int = 1,
    warmup_ratio: float = 0.0,
    max_grad_norm: float | None = 1.0,
    evaluate: Callable[[nn.Module], float] | None = None,
    keep_best: bool = True,
    stop_at: float | None = None,
    on_step: Callable[[LoopState], None] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    desc: str = "train",
) -> LoopResult:
    """Train `model` in place and return its history.

    `batches(epoch)` yields the batches of epoch `epoch` (0-based), already on `device` or with a
    `.to(device)`; `steps_per_epoch` is how many it yields. The run lasts `total_batches` batches
    (from a `StageBudget`), or `epochs` epochs, which may be fractional (the last epoch is cut
    short); the learning-rate schedule spans that length. `loss_fn(model, batch)` returns the loss to minimise and a dict of numbers
    to log. `param_groups` (default: `default_param_groups`) go to one AdamW whose learning rates
    follow the linear schedule; `extra_optimizers` step alongside it on their own rates. One
    optimizer step happens every `grad_accum` batches. `evaluate(model)` (higher is better) runs in
    eval mode after each epoch; with `keep_best` the best epoch's weights are restored at the end.
    With `stop_at`, training ends after the first evaluation that reaches it (the length is a cap).
    """
    if (epochs is None) == (total_batches is None):
        raise TypeError("train_loop needs exactly one of epochs and total_batches")
    device = torch.device(device)
    started = time.perf_counter()
    seed_everything(seed)
    model.to(device).train()
    groups = param_groups if param_groups is not None else default_param_groups(model, weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=learning_rate)
    if total_batches is None:
        total_batches = math.ceil(epochs * steps_per_epoch)
    total_steps = max(1, math.ceil(total_batches / grad_accum))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(round(warmup_ratio * total_steps), total_steps)
    )
    scaler = grad_scaler(device)
    optimizers = [optimizer, *extra_optimizers]
    clipped = [p for g in optimizer.param_groups for p in g["params"]]

    history: list[dict[str, float]] = []
    best_metric: float | None = None
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    done = step = 0
    bar = tqdm(total=total_batches, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    for epoch in range(max(1, math.ceil(total_batches / max(1, steps_per_epoch)))):  # epochs = 0: evaluate only
        sums: dict[str, float] = {}
        count = 0
        for batch in batches(epoch):
            if done >= total_batches:
                break
            batch = batch.to(device) if hasattr(batch, "to") else batch
            with autocast(device):
                loss, logs = loss_fn(model, batch)
            scaler.scale(loss / grad_accum).backward()
            done += 1
            count += 1
            for key, value in {"loss": float(loss.detach()), **logs}.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            if done % grad_accum == 0 or done == total_batches:
                step += 1
                _optimizer_step(optimizers, scaler, clipped, max_grad_norm)
                scheduler.step()
                if on_step is not None:
                    on_step(LoopState(step=step, total_steps=total_steps, epoch=epoch, logs=logs))
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
            progress_board.update(desc, done, total_batches)
        record = {"epoch": epoch + 1, **{k: v / max(1, count) for k, v in sums.items()}}
        if evaluate is not None:
            model.eval()
            with torch.no_grad():
                metric = float(evaluate(model))
            model.train()
            record["metric"] = metric
            if best_metric is None or metric > best_metric:
                best_metric, best_epoch = metric, epoch + 1
                if keep_best:
                    best_state = _cpu_copy(model.state_dict())
            bar.set_postfix(loss=f"{record.get('loss', 0):.4f}", metric=f"{metric:.4f}")
        history.append(record)
        if done >= total_batches or (stop_at is not None and record.get("metric", -math.inf) >= stop_at):
            break
    bar.close()
    if keep_best and best_state is not None and best_epoch != len(history):
        model.load_state_dict(best_state)
    model.eval()
    return LoopResult(
        history=history, best_metric=best_metric, best_epoch=best_epoch, steps=step,
        duration_s=time.perf_counter() - started,
    )


def _optimizer_step(optimizers, scaler, clipped, max_grad_norm) -> None:
    if max_grad_norm is not None and clipped:
        scaler.unscale_(optimizers[0])
        torch.nn.utils.clip_grad_norm_(clipped, max_grad_norm)
    for opt in optimizers:
        scaler.step(opt)
    scaler.update()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in copy.copy(state).items()}


@torch.no_grad()
def predict_labels(model: nn.Module, encoded, mux_width: int, batch_size: int, device, *,
                   trim_padding: bool = True) -> torch.Tensor:
    """Predicted label ids [M] of every example of `encoded` (an `EncodedSplit`), in split order.

    Examples are multiplexed N = `mux_width` at a time in split order; filler copies that complete
    the last group are ignored, so every example is predicted exactly once. With `trim_padding`,
    each batch is cut to its longest real example (`MuxBatch.trimmed`).
    """
    from autoprumux.data import mux_batches

    device = torch.device(device)
    was_training = model.training
    model.eval()
    predictions = torch.full((len(encoded),), -1, dtype=torch.long)
    for batch in mux_batches(encoded, mux_width, batch_size, shuffle=False):
        batch = (batch.trimmed() if trim_padding else batch).to(device)
        with autocast(device):
            logits = model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids
            ).logits
        predicted = logits.argmax(dim=-1)[batch.valid].cpu()
        predictions[batch.index[batch.valid].cpu()] = predicted
    model.train(was_training)
    return predictions


def evaluate_accuracy(model: nn.Module, encoded, mux_width: int, batch_size: int, device, *,
                      trim_padding: bool = True) -> float:
    """Accuracy (a fraction in [0, 1]) on `encoded`, scoring every example exactly once."""
    if len(encoded) == 0:
        return float("nan")
    predictions = predict_labels(model, encoded, mux_width, batch_size, device, trim_padding=trim_padding)
    return float((predictions == encoded.labels).float().mean())
