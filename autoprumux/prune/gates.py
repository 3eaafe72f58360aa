"""Hard-concrete L0 gates for CoFi's five kinds of prunable structure (MECHANICS.md section 2).

One learned log α per prunable unit:

====================  ==========  ============================================================
kind                  shape       multiplies
====================  ==========  ============================================================
``heads``             [L, H]      each head's context vector before the attention output dense
``attention_layers``  [L]         a layer's attention block output (after its dense)
``ffn_dims``          [L, d_ff]   the FFN's intermediate activation
``ffn_layers``        [L]         a layer's FFN block output (after its dense)
``hidden``            [d]         the embedding output and every sub-layer output (all layers)
====================  ==========  ============================================================

Training samples stretched, clamped hard-concrete gates in [0, 1] (differentiable in log α);
evaluation uses deterministic masks: per group (a layer's heads, a layer's FFN dims, the hidden
dims, and each whole-layer gate on its own, as CoFi does) the ``round(sum P(z = 0))`` units with
the lowest score ``sigmoid(log α / β · 0.8)`` are zeroed and the others keep that score as a soft
value in (0, 1]. A whole-layer gate therefore survives when its P(z > 0) >= 1/2. A block whose heads (or FFN dims) are all zero adds nothing, so its layer gate is
reported as zero too: masks always describe the structure that really survives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn

#: Hard-concrete temperature β and stretch limits γ < 0 < 1 < ζ (CoFi / Louizos et al.).
BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1
#: Uniform noise is drawn from U(EPSILON, 1 - EPSILON) to keep its logit finite.
EPSILON = 1e-6
#: log α is clamped to [log 0.01, log 100] after every optimiser step.
LOG_ALPHA_MIN = math.log(0.01)
LOG_ALPHA_MAX = math.log(100.0)
#: Initial log α of gates that start "on" (heads, whole layers, hidden dims).
LOG_ALPHA_ON = 10.0
#: Deterministic masks rank units by sigmoid(log α / β · SCORE_SCALE) (CoFi's constant).
SCORE_SCALE = 0.8
#: Standard deviation of the noise added to initial log α so that ties are broken at random.
INIT_NOISE = 0.01

GATE_KINDS = ("heads", "attention_layers", "ffn_dims", "ffn_layers", "hidden")
#: Kinds whose every gate is a deterministic-mask group of its own.
LAYER_KINDS = ("attention_layers", "ffn_layers")


@dataclass(frozen=True)
class GateMasks:
    """One value per prunable unit: sampled gates, deterministic masks or keep probabilities.

    Shapes: ``heads`` [L, H], ``attention_layers`` [L], ``ffn_dims`` [L, d_ff], ``ffn_layers`` [L],
    ``hidden`` [d]. Values are in [0, 1]; zero means pruned.
    """

    heads: torch.Tensor
    attention_layers: torch.Tensor
    ffn_dims: torch.Tensor
    ffn_layers: torch.Tensor
    hidden: torch.Tensor

    def detach(self) -> GateMasks:
        """The same values, cut from the autograd graph and moved to the CPU."""
        return GateMasks(**{f.name: getattr(self, f.name).detach().cpu() for f in fields(self)})

    def to(self, device: torch.device | str) -> GateMasks:
        return GateMasks(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def attention_multiplier(self, layer: int) -> torch.Tensor:
        """What a layer's attention output is scaled by: layer gate x hidden gates, shape [d]."""
        return self.attention_layers[layer] * self.hidden

    def ffn_multiplier(self, layer: int) -> torch.Tensor:
        """What a layer's FFN output is scaled by: layer gate x hidden gates, shape [d]."""
        return self.ffn_layers[layer] * self.hidden


def hard_concrete_keep_probability(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z > 0) of hard-concrete gates with parameter log α (differentiable)."""
    q = -GAMMA / (ZETA - GAMMA)
    return 1.0 - torch.sigmoid(BETA * math.log(q / (1.0 - q)) - log_alpha)


def sample_hard_concrete(log_alpha: torch.Tensor) -> torch.Tensor:
    """One draw of stretched, clamped hard-concrete gates in [0, 1] (reparameterised)."""
    u = torch.empty_like(log_alpha).uniform_(EPSILON, 1.0 - EPSILON)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def deterministic_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """Deterministic masks, one group per row of `log_alpha` (a 1-d tensor is one group).

    In each group ``round(sum P(z = 0))`` units with the lowest scores are set to zero; the others
    keep their score ``sigmoid(log α / β · 0.8)``.
    """
    groups = log_alpha.reshape(-1, log_alpha.shape[-1])
    scores = torch.sigmoid(groups / BETA * SCORE_SCALE)
    num_zeros = torch.round((1.0 - hard_concrete_keep_probability(groups)).sum(-1)).long()
    order = torch.argsort(scores, dim=-1)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(groups.shape[-1], device=groups.device).expand_as(order))
    pruned = ranks < num_zeros[:, None]
    return torch.where(pruned, torch.zeros_like(scores), scores).reshape(log_alpha.shape)


def zero_empty_blocks(masks: GateMasks) -> GateMasks:
    """Set a layer gate to zero when all of its heads (or FFN dims) are zero."""
    return GateMasks(
        heads=masks.heads,
        attention_layers=masks.attention_layers * (masks.heads > 0).any(-1).to(masks.heads.dtype),
        ffn_dims=masks.ffn_dims,
        ffn_layers=masks.ffn_layers * (masks.ffn_dims > 0).any(-1).to(masks.ffn_dims.dtype),
        hidden=masks.hidden,
    )


class L0Gates(nn.Module):
    """The learned log α of every prunable unit of a BERT encoder, and the masks they give.

    Parameters
    ----------
    num_layers, num_heads, intermediate_size, hidden_size:
        The dense encoder's shape (L, H, d_ff, d).
    droprate_init:
        Initial drop probability p of FFN dimensions: their log α starts at log((1 - p) / p).
        Heads, whole layers and hidden dims start "on" (log α = 10).

    Attributes
    ----------
    log_alpha: ``nn.ParameterDict`` with one parameter per kind in `GATE_KINDS`.
    """

    def __init__(
        self,
        num_layers: int,
        num_heads: int,
        intermediate_size: int,
        hidden_size: int,
        *,
        droprate_init: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.hidden_size = hidden_size
        self.head_size = hidden_size // num_heads
        ffn_init = math.log(1.0 - droprate_init) - math.log(droprate_init)
        shapes = {
            "heads": ((num_layers, num_heads), LOG_ALPHA_ON),
            "attention_layers": ((num_layers,), LOG_ALPHA_ON),
            "ffn_dims": ((num_layers, intermediate_size), ffn_init),
            "ffn_layers": ((num_layers,), LOG_ALPHA_ON),
            "hidden": ((hidden_size,), LOG_ALPHA_ON),
        }
        self.log_alpha = nn.ParameterDict(
            {kind: nn.Parameter(torch.randn(shape) * INIT_NOISE + init) for kind, (shape, init) in shapes.items()}
        )

    @classmethod
    def from_config(cls, config, *, droprate_init: float = 0.5) -> L0Gates:
        """Gates for the dense encoder described by a (Mux)BertConfig."""
        return cls(
            config.num_hidden_layers,
            config.num_attention_heads,
            config.intermediate_size,
            config.hidden_size,
            droprate_init=droprate_init,
        )

    def _apply(self, function) -> GateMasks:
        return GateMasks(**{kind: function(self.log_alpha[kind]) for kind in GATE_KINDS})

    def keep_probability(self) -> GateMasks:
        """P(z > 0) of every unit (differentiable; used for the expected size)."""
        return self._apply(hard_concrete_keep_probability)

    def sample(self) -> GateMasks:
        """One training-time draw of every gate (differentiable in log α)."""
        return zero_empty_blocks(self._apply(sample_hard_concrete))

    def deterministic(self) -> GateMasks:
        """The evaluation-time masks (see the module docstring)."""
        masks = {}
        for kind in GATE_KINDS:
            log_alpha = self.log_alpha[kind]
            grouped = log_alpha.unsqueeze(-1) if kind in LAYER_KINDS else log_alpha
            masks[kind] = deterministic_gates(grouped).reshape(log_alpha.shape)
        return zero_empty_blocks(GateMasks(**masks))

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp every log α to [log 0.01, log 100]; call after each optimiser step."""
        for parameter in self.log_alpha.values():
            parameter.clamp_(LOG_ALPHA_MIN, LOG_ALPHA_MAX)
