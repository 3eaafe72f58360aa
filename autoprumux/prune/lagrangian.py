"""CoFi's Lagrangian sparsity constraint and the optimiser of gates and multipliers.

The training loss gains ``λ1·(ŝ - t) + λ2·(ŝ - t)²`` where ŝ is the expected sparsity of the
gates and t the current target, which rises linearly from 0 to the final sparsity over a warm-up
and then stays. λ1, λ2 start at 0 and are trained by gradient *ascent* while log α is trained by
descent: their gradients are negated by a hook, so one ordinary optimiser (AdamW, learning rate
`reg_learning_rate`, no weight decay) serves both.
"""

from __future__ import annotations

import torch
from torch import nn

from autoprumux.prune.gates import L0Gates
from autoprumux.prune.size import expected_sparsity, mask_sparsity


def target_sparsity_at(step: int, warmup_steps: int, final_sparsity: float) -> float:
    """The Lagrangian target at optimiser step `step`: linear from 0 to `final_sparsity`, then flat."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return final_sparsity
    return final_sparsity * step / warmup_steps


class LagrangianPenalty(nn.Module):
    """λ1·(ŝ - t) + λ2·(ŝ - t)² with learnable multipliers trained by gradient ascent."""

    def __init__(self) -> None:
        super().__init__()
        self.lambda_1 = nn.Parameter(torch.zeros(()))
        self.lambda_2 = nn.Parameter(torch.zeros(()))
        for parameter in (self.lambda_1, self.lambda_2):
            parameter.register_hook(torch.neg)

    def forward(self, expected_sparsity: torch.Tensor, target: float) -> torch.Tensor:
        gap = expected_sparsity - target
        return self.lambda_1 * gap + self.lambda_2 * gap * gap


def make_reg_optimizer(gates: L0Gates, penalty: LagrangianPenalty, learning_rate: float) -> torch.optim.Optimizer:
    """AdamW over log α (descent) and λ1, λ2 (ascent through their negated gradients)."""
    return torch.optim.AdamW(
        [{"params": list(gates.parameters())}, {"params": list(penalty.parameters())}],
        lr=learning_rate,
        weight_decay=0.0,
    )


class SparsityConstraint:
    """The gates' side of pruning: target schedule, Lagrangian penalty and their optimiser.

    Call `loss()` in every training step and add it to the task loss; call `after_step()` after
    every optimiser step (it clamps log α and advances the schedule).

    The penalty constrains the *expected* sparsity, but what gets deployed is the sparsity of the
    deterministic masks, and the two drift apart once gates settle: a gate pushed to the log α
    floor still has P(z > 0) ≈ 0.047, so pruned whole layers and heads keep counting in the
    expectation. The constraint therefore aims the expected sparsity at
    ``t + (ŝ - s_masks)``, the scheduled target corrected by an exponential moving average
    (`correction_decay` per step) of the observed gap, so that the masks land on the target.
    """

    def __init__(
        self,
        gates: L0Gates,
        target_sparsity: float,
        warmup_steps: int,
        learning_rate: float,
        *,
        correction_decay: float = 0.9,
    ) -> None:
        self.gates = gates
        self.target_sparsity = target_sparsity
        self.warmup_steps = warmup_steps
        self.correction_decay = correction_decay
        device = next(gates.parameters()).device
        self.penalty = LagrangianPenalty().to(device)
        self.optimizer = make_reg_optimizer(gates, self.penalty, learning_rate)
        self.steps = 0
        self.mask_gap = 0.0

    def scheduled_target(self) -> float:
        """The target t of the current step (linear warm-up from 0, then `target_sparsity`)."""
        return target_sparsity_at(self.steps, self.warmup_steps, self.target_sparsity)

    def aimed_target(self) -> float:
        """What the expected sparsity is pushed towards: t corrected by the mask gap, in [0, 1)."""
        return min(max(self.scheduled_target() + self.mask_gap, 0.0), 0.999)

    def loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        """The Lagrangian term of this step and numbers to log."""
        expected = expected_sparsity(self.gates)
        loss = self.penalty(expected, self.aimed_target())
        return loss, {
            "expected_sparsity": float(expected.detach()),
            "target_sparsity": self.scheduled_target(),
            "lagrangian_loss": float(loss.detach()),
            "lambda_1": float(self.penalty.lambda_1.detach()),
            "lambda_2": float(self.penalty.lambda_2.detach()),
        }

    @torch.no_grad()
    def after_step(self, *_) -> None:
        """Clamp log α, advance the schedule and update the expected-vs-mask gap."""
        self.gates.clamp_()
        self.steps += 1
        gap = float(expected_sparsity(self.gates)) - mask_sparsity(self.gates.deterministic(), self.gates)
        self.mask_gap = self.correction_decay * self.mask_gap + (1.0 - self.correction_decay) * gap
