"""Distillation from the unpruned teacher of the same N: predictions and hidden layers (CoFi).

- `prediction_distillation_loss`: KL(softmax(teacher / τ) ‖ softmax(student / τ)) · τ², averaged
  over the valid instance slots.
- `LayerDistiller`: the student's layer outputs, through a learned d -> d linear map, regressed
  (MSE) onto a subset of teacher layers (`teacher_layer_indices`: 4 evenly spaced layers, every
  3rd of 12). Each teacher layer is matched to the surviving student layer that fits it best, the
  matched student layers kept in increasing order: teacher layers are visited from the last one
  down, each taking the best-fitting surviving student layer below the previous match.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def prediction_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher ‖ student) of temperature-softened predictions times τ², mean over valid slots.

    Logits are [..., num_labels] (e.g. [B, N, C]); `valid` (same leading shape) marks real slots.
    """
    classes = student_logits.shape[-1]
    student = F.log_softmax(student_logits.reshape(-1, classes).float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.reshape(-1, classes).float() / temperature, dim=-1)
    per_slot = F.kl_div(student, teacher, reduction="none", log_target=True).sum(-1) * temperature**2
    if valid is None:
        return per_slot.mean()
    weights = valid.reshape(-1).to(per_slot.dtype)
    return (per_slot * weights).sum() / weights.sum().clamp_min(1.0)


def teacher_layer_indices(num_layers: int, count: int = 4) -> list[int]:
    """1-based indices of the teacher layers distilled: `count` evenly spaced, ending at the last.

    12 layers -> [3, 6, 9, 12] (CoFi's choice); 2 layers -> [1, 2].
    """
    count = min(count, num_layers)
    return sorted({round((i + 1) * num_layers / count) for i in range(count)})


class LayerDistiller(nn.Module):
    """Layer distillation: a learned linear map d -> d and CoFi's order-preserving layer matching.

    The map starts as the identity, so an unpruned student starts at zero loss.
    """

    def __init__(self, hidden_size: int, teacher_layers: Sequence[int]) -> None:
        super().__init__()
        self.teacher_layers = list(teacher_layers)
        self.transform = nn.Linear(hidden_size, hidden_size)
        with torch.no_grad():
            self.transform.weight.copy_(torch.eye(hidden_size))
            self.transform.bias.zero_()

    def forward(
        self,
        student_hidden: Sequence[torch.Tensor],
        teacher_hidden: Sequence[torch.Tensor],
        surviving: Sequence[bool] | None = None,
    ) -> tuple[torch.Tensor, list[int]]:
        """The layer loss and the matched student layer (1-based) of each teacher layer.

        `student_hidden` / `teacher_hidden` are the models' `hidden_states` (embedding output
        first, then every layer's output, each [B, T', d]); `surviving[l]` says whether student
        layer l + 1 still computes something (a teacher layer with no candidate left adds nothing).
        """
        student_layers = [self.transform(h.float()) for h in student_hidden[1:]]
        losses = torch.stack(
            [
                torch.stack([F.mse_loss(s, teacher_hidden[t].float()) for s in student_layers])
                for t in self.teacher_layers
            ]
        )  # [teacher layers, student layers]
        fit = losses.detach()
        alive = list(surviving) if surviving is not None else [True] * len(student_layers)
        matches: list[int] = []
        total = losses.new_zeros(())
        upper = len(student_layers)  # matches must stay below the previous (later) one
        for row in range(len(self.teacher_layers) - 1, -1, -1):
            candidates = [i for i in range(upper) if alive[i]]
            if not candidates:
                continue
            best = min(candidates, key=lambda i: float(fit[row, i]))
            total = total + losses[row, best]
            matches.append(best + 1)
            upper = best
        return total, matches[::-1]
