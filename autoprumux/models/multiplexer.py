"""Multiplexers: N embedded instances [B, N, T, d] -> one mixed sequence [B, T, d].

Every multiplexer gives instance slot i a vector v_i in R^d and computes
``x = (1/N) * sum_i (e_i * v_i)`` (element-wise product, then the mean over instances),
MECHANICS.md section 1. They differ only in where v_i comes from:

- `gaussian_hadamard` (default): a fixed Gaussian vector, rescaled to root-mean-square `mux_norm`;
- `binary_hadamard`: fixed random signs times `mux_norm`;
- `learned`: initialised like `gaussian_hadamard`, then trained.

Scale: the vectors have RMS `mux_norm` (L2 norm `mux_norm * sqrt(d)`), not unit L2 norm. The
embeddings entering the multiplexer come out of BERT's LayerNorm with RMS about 1; unit-L2 vectors
would shrink them by sqrt(d) (11x at d = 128) below the scale the encoder's first residual and
LayerNorm expect. With RMS-1 vectors a multiplexed sequence keeps the usual embedding scale; on
synthetic-sentiment (tiny preset, N = 2, same seed and settings) it reached 69.4% validation
accuracy against 65.9% with unit-L2 vectors (`mux_norm = 1 / sqrt(d)` reproduces those).

The vectors are derived from `seed` so that a config always reproduces them; they are stored as
a buffer (fixed) or a parameter (learned) and saved with the model.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import initialization as init


def slot_vectors(kind: str, mux_width: int, hidden_size: int, *, norm: float, seed: int) -> torch.Tensor:
    """The N slot vectors [N, d] of multiplexer `kind`, each with root-mean-square `norm`."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if kind == "binary_hadamard":
        signs = torch.randint(0, 2, (mux_width, hidden_size), generator=generator, device="cpu")
        return (signs.float() * 2 - 1) * norm
    gaussian = torch.randn(mux_width, hidden_size, generator=generator, device="cpu")
    return gaussian / gaussian.norm(dim=-1, keepdim=True) * (norm * math.sqrt(hidden_size))


class Multiplexer(nn.Module):
    """Mixes N instances into one sequence with per-slot vectors: mean_i(e_i * v_i).

    Args:
        kind: `gaussian_hadamard`, `binary_hadamard` or `learned`.
        mux_width: N.
        hidden_size: d of the embeddings it mixes (the encoder's, possibly compacted).
        norm: root-mean-square of each slot vector.
        seed: seed of the vectors.
    """

    def __init__(self, kind: str, mux_width: int, hidden_size: int, *, norm: float = 1.0, seed: int = 0):
        super().__init__()
        self.kind = kind
        self.mux_width = mux_width
        self.norm = norm
        self.seed = seed
        vectors = self.initial_vectors(hidden_size)
        if kind == "learned":
            self.vectors = nn.Parameter(vectors)
        else:
            self.register_buffer("vectors", vectors)

    def initial_vectors(self, hidden_size: int) -> torch.Tensor:
        """The vectors [N, hidden_size] this multiplexer starts from (deterministic in `seed`)."""
        base = "gaussian_hadamard" if self.kind == "learned" else self.kind
        return slot_vectors(base, self.mux_width, hidden_size, norm=self.norm, seed=self.seed)

    def reset_vectors(self) -> None:
        """Re-derive the vectors from the seed (used when a model is built from scratch)."""
        fresh = self.initial_vectors(self.vectors.shape[-1]).to(self.vectors.device, self.vectors.dtype)
        init.copy_(self.vectors, fresh)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[B, N, T, d] embedded instances -> [B, T, d] mixed sequence."""
        return (embeddings * self.vectors[:, None, :].to(embeddings.dtype)).mean(dim=1)

    @torch.no_grad()
    def prune_hidden(self, keep: torch.LongTensor) -> None:
        """Keep only hidden dimensions `keep` of the slot vectors (CoFi hidden-dimension pruning)."""
        kept = self.vectors[:, keep.to(self.vectors.device)].clone()
        if isinstance(self.vectors, nn.Parameter):
            self.vectors = nn.Parameter(kept, requires_grad=self.vectors.requires_grad)
        else:
            self.vectors = kept

    def extra_repr(self) -> str:
        return f"kind={self.kind}, mux_width={self.mux_width}, hidden_size={self.vectors.shape[-1]}, norm={self.norm}"
