"""Demultiplexers: the encoder's mixed states [B, T', d_enc] -> per-instance states (width d).

- `index_pos` (default, MUX-PLMs / PruMUX): a learned key k_i per instance slot; the state of
  instance i at position t is MLP(concat(k_i, h_t)).
- `index` (DataMUX): each instance is prefixed with N positions, the i-th carrying a learned index
  embedding and the others a learned filler; the prefix is multiplexed with the tokens, and after the
  encoder the prefix position i is instance i's key: MLP(concat(h_prefix_i, h_t)).
- `mlp`: one independent MLP per instance slot, applied to h_t.

The MLP is Linear(in -> d), GELU, LayerNorm, then (demux_layers - 1) x [Linear(d -> d), GELU,
LayerNorm] (`plain` blocks), or, with `residual` blocks (MUX-PLM's classification path),
Linear(in -> d), GELU, then (demux_layers - 2) x [x + GELU(Linear(x))], then
x + LayerNorm(GELU(Linear(x))). The concatenations are never materialised: the first Linear's weight is split into its
key columns and its state columns, so the state part is computed once for all N instances.

Three ways to call one:
- `demux(hidden)` -> [B, N, d]: every instance at its first position ([CLS]), the `cls` readout;
- `demux(hidden, mask=m)` with m [B, N, T] -> [B, N, d]: the `instance_mean` readout, every instance
  demultiplexed at every position and averaged over its own real tokens (m = 1). Every slot starts
  with the same [CLS], so position 0 of the mixture is one constant vector and the `cls` readout
  leaves all separation to attention; the mean reads each instance where it is distinguishable;
- `demux(hidden, instance=idx)` with idx [B, T] -> [B, T, d]: at every token position t the state of
  instance idx[b, t], for the token-retrieval objective.

`prune_hidden(keep)` slices what lives in the encoder's hidden space (the state columns of the
first Linear, the `index` prefix embeddings and key columns). Keys of `index_pos` and every output
stay at width d.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _mlp_tail(hidden_size: int, layers: int, eps: float) -> nn.Sequential:
    """GELU, LayerNorm after the first Linear, then (layers - 1) Linear-GELU-LayerNorm blocks."""
    modules: list[nn.Module] = [nn.GELU(), nn.LayerNorm(hidden_size, eps=eps)]
    for _ in range(layers - 1):
        modules += [nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size, eps=eps)]
    return nn.Sequential(*modules)


class ResidualTail(nn.Module):
    """After the first Linear: GELU, (layers - 2) residual Linear-GELU blocks, a residual
    Linear-GELU-LayerNorm block (dropout after each GELU but the last, as MUX-PLM trains it)."""

    def __init__(self, hidden_size: int, layers: int, eps: float, dropout: float = 0.1):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(layers - 2))
        self.last = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(F.gelu(x))
        for block in self.blocks:
            x = x + self.dropout(F.gelu(block(x)))
        return x + self.norm(F.gelu(self.last(x)))


def _tail(blocks: str, hidden_size: int, layers: int, eps: float, dropout: float) -> nn.Module:
    if blocks == "residual":
        return ResidualTail(hidden_size, layers, eps, dropout)
    return _mlp_tail(hidden_size, layers, eps)


def _slice_in_columns(linear: nn.Linear, columns: torch.LongTensor) -> nn.Linear:
    """A copy of `linear` that reads only input `columns`."""
    sliced = nn.Linear(len(columns), linear.out_features, bias=linear.bias is not None)
    sliced = sliced.to(linear.weight.device, linear.weight.dtype)
    sliced.weight.data.copy_(linear.weight.data[:, columns.to(linear.weight.device)])
    if linear.bias is not None:
        sliced.bias.data.copy_(linear.bias.data)
    sliced.weight.requires_grad_(linear.weight.requires_grad)
    return sliced


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of states [B, N, T, d] over the positions where mask [B, N, T] is 1 -> [B, N, d]."""
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(dim=2) / weights.sum(dim=2).clamp_min(1.0)


class Demultiplexer(nn.Module):
    """Base class: `prefix_length` extra positions the model must prepend (0 unless `index`)."""

    prefix_length: int = 0

    def prefix_embeddings(self) -> torch.Tensor | None:
        """[N, prefix_length, d_enc] word-level embeddings prepended to each instance, or None."""
        return None

    def forward(
        self, hidden: torch.Tensor, instance: torch.LongTensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def prune_hidden(self, keep: torch.LongTensor) -> None:
        raise NotImplementedError


class _KeyedDemultiplexer(Demultiplexer):
    """Shared by `index_pos` and `index`: MLP(concat(key_i, h_t)) with a split first Linear.

    `self.first` has in_features = key_size + d_enc, key columns first.
    """

    def __init__(self, mux_width: int, key_size: int, encoder_size: int, hidden_size: int, layers: int, eps: float,
                 blocks: str = "plain", dropout: float = 0.1):
        super().__init__()
        self.mux_width = mux_width
        self.key_size = key_size
        self.first = nn.Linear(key_size + encoder_size, hidden_size)
        self.tail = _tail(blocks, hidden_size, layers, eps, dropout)

    def _keys(self, hidden: torch.Tensor) -> torch.Tensor:
        """Instance keys: [N, key_size] or [B, N, key_size]."""
        raise NotImplementedError

    def _tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """The instance token positions of the encoder output, [B, T, d_enc]."""
        return hidden[:, self.prefix_length :]

    def forward(
        self, hidden: torch.Tensor, instance: torch.LongTensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        weight_key = self.first.weight[:, : self.key_size]
        weight_state = self.first.weight[:, self.key_size :]
        key_part = F.linear(self._keys(hidden), weight_key, self.first.bias)  # [N, d] or [B, N, d]
        if key_part.dim() == 2:
            key_part = key_part.unsqueeze(0).expand(hidden.shape[0], -1, -1)
        tokens = self._tokens(hidden)
        if mask is not None:  # instance_mean readout
            state_part = F.linear(tokens, weight_state)  # [B, T, d]
            return masked_mean(self.tail(key_part.unsqueeze(2) + state_part.unsqueeze(1)), mask)
        if instance is None:  # cls readout: every instance at its first position
            state_part = F.linear(tokens[:, 0], weight_state)  # [B, d]
            return self.tail(key_part + state_part.unsqueeze(1))  # [B, N, d]
        state_part = F.linear(tokens, weight_state)  # [B, T, d]
        chosen_keys = key_part.gather(1, instance.unsqueeze(-1).expand(-1, -1, key_part.shape[-1]))
        return self.tail(chosen_keys + state_part)  # [B, T, d]


class IndexPosDemultiplexer(_KeyedDemultiplexer):
    """`index_pos`: a learned key per slot (width d) concatenated with each position's state."""

    def __init__(self, mux_width: int, encoder_size: int, hidden_size: int, layers: int, eps: float, **tail):
        super().__init__(mux_width, hidden_size, encoder_size, hidden_size, layers, eps, **tail)
        self.keys = nn.Parameter(torch.zeros(mux_width, hidden_size))

    def _keys(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.keys.to(hidden.dtype)

    @torch.no_grad()
    def prune_hidden(self, keep: torch.LongTensor) -> None:
        """Keep the key columns and the state columns `keep` of the first Linear."""
        key_columns = torch.arange(self.key_size, device=keep.device)
        self.first = _slice_in_columns(self.first, torch.cat([key_columns, self.key_size + keep]))


class IndexDemultiplexer(_KeyedDemultiplexer):
    """`index` (DataMUX): N prefix positions per instance; prefix output i is instance i's key.

    `index_embeddings` has N + 1 rows: the N index embeddings and, last, the filler.
    """

    def __init__(self, mux_width: int, encoder_size: int, hidden_size: int, layers: int, eps: float, **tail):
        super().__init__(mux_width, encoder_size, encoder_size, hidden_size, layers, eps, **tail)
        self.prefix_length = mux_width
        self.index_embeddings = nn.Embedding(mux_width + 1, encoder_size)

    def prefix_embeddings(self) -> torch.Tensor:
        ids = torch.full((self.mux_width, self.mux_width), self.mux_width, dtype=torch.long)
        ids[range(self.mux_width), range(self.mux_width)] = torch.arange(self.mux_width)
        return self.index_embeddings(ids.to(self.index_embeddings.weight.device))

    def _keys(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, : self.prefix_length]

    @torch.no_grad()
    def prune_hidden(self, keep: torch.LongTensor) -> None:
        """Keep hidden dims `keep` of the index embeddings and of both input halves of the first Linear."""
        old = self.key_size
        self.first = _slice_in_columns(self.first, torch.cat([keep, old + keep]))
        self.key_size = len(keep)
        embedding = nn.Embedding(self.mux_width + 1, len(keep)).to(self.index_embeddings.weight.device)
        embedding.weight.data.copy_(self.index_embeddings.weight.data[:, keep.to(embedding.weight.device)])
        self.index_embeddings = embedding


class MlpDemultiplexer(Demultiplexer):
    """`mlp`: one MLP per instance slot applied to the encoder state."""

    def __init__(self, mux_width: int, encoder_size: int, hidden_size: int, layers: int, eps: float,
                 blocks: str = "plain", dropout: float = 0.1):
        super().__init__()
        self.mux_width = mux_width
        self.firsts = nn.ModuleList(nn.Linear(encoder_size, hidden_size) for _ in range(mux_width))
        self.tails = nn.ModuleList(_tail(blocks, hidden_size, layers, eps, dropout) for _ in range(mux_width))

    def forward(
        self, hidden: torch.Tensor, instance: torch.LongTensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        every_position = instance is not None or mask is not None
        source = hidden if every_position else hidden[:, 0]  # [B, T, d_enc] or [B, d_enc]
        states = torch.stack([tail(first(source)) for first, tail in zip(self.firsts, self.tails, strict=True)], dim=1)
        if mask is not None:
            return masked_mean(states, mask)  # [B, N, d]
        if instance is None:
            return states  # [B, N, d]
        index = instance[:, None, :, None].expand(-1, 1, -1, states.shape[-1])
        return states.gather(1, index).squeeze(1)  # [B, T, d]

    @torch.no_grad()
    def prune_hidden(self, keep: torch.LongTensor) -> None:
        """Keep input columns `keep` of every slot's first Linear."""
        self.firsts = nn.ModuleList(_slice_in_columns(first, keep) for first in self.firsts)


DEMULTIPLEXERS = {
    "index_pos": IndexPosDemultiplexer,
    "index": IndexDemultiplexer,
    "mlp": MlpDemultiplexer,
}


def build_demultiplexer(
    kind: str, mux_width: int, encoder_size: int, hidden_size: int, layers: int, eps: float = 1e-12,
    blocks: str = "plain", dropout: float = 0.1,
) -> Demultiplexer:
    """The demultiplexer `kind` for N = `mux_width` reading states of width `encoder_size`, with
    `plain` or `residual` blocks after its first Linear."""
    return DEMULTIPLEXERS[kind](mux_width, encoder_size, hidden_size, layers, eps, blocks=blocks, dropout=dropout)
