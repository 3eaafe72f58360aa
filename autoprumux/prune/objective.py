"""The pruning loss of one training step: distillation from the teacher plus the Lagrangian term.

    loss = α_layer · layer distillation + α_pred · prediction distillation + α_ce · task CE
           + λ1·(ŝ - t) + λ2·(ŝ - t)²

`PruningObjective` is a `loss_fn(model, batch) -> (loss, logs)` for the shared training loop; the
gated student and the teacher see the same multiplexed batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from autoprumux.prune.distill import LayerDistiller, prediction_distillation_loss
from autoprumux.prune.gated import GatedModel
from autoprumux.prune.lagrangian import SparsityConstraint


@dataclass(frozen=True)
class DistillationWeights:
    """Weights of the loss terms and the prediction-distillation temperature τ."""

    layer: float = 0.9
    prediction: float = 0.1
    cross_entropy: float = 0.0
    temperature: float = 2.0

    @classmethod
    def from_settings(cls, prune_settings) -> DistillationWeights:
        """From an `autoprumux.spec.PruneSettings`."""
        return cls(
            layer=prune_settings.distill_layer_weight,
            prediction=prune_settings.distill_pred_weight,
            cross_entropy=prune_settings.distill_ce_weight,
            temperature=prune_settings.distill_temperature,
        )


def _inputs(batch, labels: bool) -> dict[str, torch.Tensor]:
    inputs = dict(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids
    )
    if labels:
        inputs.update(labels=batch.labels, valid=batch.valid)
    return inputs


class PruningObjective:
    """`loss_fn(model, batch)` of CoFi pruning with distillation (a callable, not a Module).

    `gated` is the student with its gates attached, `teacher` the unpruned model of the same N
    (kept in eval mode, no gradients), `distiller` maps student layers onto teacher layers.
    """

    def __init__(
        self,
        gated: GatedModel,
        teacher: nn.Module,
        constraint: SparsityConstraint,
        distiller: LayerDistiller,
        weights: DistillationWeights,
    ) -> None:
        self.gated = gated
        self.teacher = teacher.eval().requires_grad_(False)
        self.constraint = constraint
        self.distiller = distiller
        self.weights = weights

    def __call__(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        weights = self.weights
        layers = weights.layer > 0
        output = model(**_inputs(batch, weights.cross_entropy > 0), output_hidden_states=layers)
        with torch.no_grad():
            teacher = self.teacher(**_inputs(batch, False), output_hidden_states=layers)
        loss, logs = self.constraint.loss()
        if weights.prediction > 0:
            prediction = prediction_distillation_loss(
                output.logits, teacher.logits, weights.temperature, batch.valid
            )
            loss = loss + weights.prediction * prediction
            logs["prediction_loss"] = float(prediction.detach())
        if layers:
            masks = self.gated.masks
            surviving = ((masks.attention_layers > 0) | (masks.ffn_layers > 0)).tolist()
            layer_loss, _ = self.distiller(output.hidden_states, teacher.hidden_states, surviving)
            loss = loss + weights.layer * layer_loss
            logs["layer_loss"] = float(layer_loss.detach())
        if weights.cross_entropy > 0:
            loss = loss + weights.cross_entropy * output.loss
            logs["task_loss"] = float(output.loss.detach())
        return loss, logs
