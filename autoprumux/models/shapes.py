"""Compacted shapes: give a transformers `BertModel` the per-layer sizes a pruned model keeps.

`compact_bert_(bert, config)` replaces, in place, the Linear/LayerNorm/Embedding modules of a
freshly built `BertModel` by ones of the shapes named in `config.compact_*` (see `MuxBertConfig`),
and fully pruned blocks by `SkippedAttention` / `NormOnlyOutput`, which add nothing and keep the
block's LayerNorm. The result is still transformers' `BertModel` with its own layer code, so
`save_pretrained` / `from_pretrained` of a compacted `MuxBertForSequenceClassification` just work,
and `prune/compact.py` can build this skeleton and copy sliced weights into it.
"""

from __future__ import annotations

import torch
from torch import nn

from autoprumux.models.config import MuxBertConfig


class NormOnlyOutput(nn.Module):
    """Stands for `BertSelfOutput` / `BertOutput` of a removed block: LayerNorm(input_tensor)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, hidden_states: torch.Tensor | None, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(input_tensor)


class SkippedAttention(nn.Module):
    """Stands for a removed `BertAttention`: returns (LayerNorm(hidden_states), None)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.output = NormOnlyOutput(hidden_size, eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask=None, **kwargs):
        return self.output(None, hidden_states), None


def _linear(in_features: int, out_features: int) -> nn.Linear:
    return nn.Linear(in_features, out_features)


def _resize_embeddings(embeddings: nn.Module, hidden: int, eps: float) -> None:
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        old: nn.Embedding = getattr(embeddings, name)
        setattr(embeddings, name, nn.Embedding(old.num_embeddings, hidden, padding_idx=old.padding_idx))
    embeddings.LayerNorm = nn.LayerNorm(hidden, eps=eps)


def _compact_attention(layer: nn.Module, heads: int, head_size: int, hidden: int, eps: float) -> None:
    if heads == 0:
        layer.attention = SkippedAttention(hidden, eps)
        return
    self_attention = layer.attention.self
    width = heads * head_size
    self_attention.query = _linear(hidden, width)
    self_attention.key = _linear(hidden, width)
    self_attention.value = _linear(hidden, width)
    self_attention.num_attention_heads = heads
    self_attention.all_head_size = width
    layer.attention.output.dense = _linear(width, hidden)
    layer.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)


def _compact_ffn(layer: nn.Module, intermediate: int, hidden: int, eps: float) -> None:
    if intermediate == 0:
        layer.intermediate = nn.Identity()
        layer.output = NormOnlyOutput(hidden, eps)
        return
    layer.intermediate.dense = _linear(hidden, intermediate)
    layer.output.dense = _linear(intermediate, hidden)
    layer.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)


def check_compact_config(config: MuxBertConfig) -> None:
    """Raise ValueError when the `compact_*` fields do not fit the config's layers and sizes."""
    layers = config.num_hidden_layers
    for name, values, upper in (
        ("compact_heads", config.compact_heads, config.num_attention_heads),
        ("compact_intermediate", config.compact_intermediate, config.intermediate_size),
    ):
        if values is None:
            continue
        if len(values) != layers or any(not 0 <= v <= upper for v in values):
            raise ValueError(f"{name} = {values!r} must list {layers} integers in [0, {upper}]")
    hidden = config.compact_hidden_size
    if hidden is not None and not 1 <= hidden <= config.hidden_size:
        raise ValueError(f"compact_hidden_size = {hidden!r} must be in [1, {config.hidden_size}]")


def compact_bert_(bert: nn.Module, config: MuxBertConfig) -> None:
    """Give `bert` (a `BertModel` built from `config`) the compacted shapes of `config`, in place.

    New modules are uninitialised in the sense that their values are whatever `nn.Linear` starts
    with; callers either run the model's weight initialisation or copy weights in.
    """
    check_compact_config(config)
    hidden = config.encoder_hidden_size
    eps = config.layer_norm_eps
    if config.compact_hidden_size is not None:
        _resize_embeddings(bert.embeddings, hidden, eps)
    for index, layer in enumerate(bert.encoder.layer):
        heads = config.num_attention_heads if config.compact_heads is None else config.compact_heads[index]
        ffn = config.intermediate_size if config.compact_intermediate is None else config.compact_intermediate[index]
        if heads != config.num_attention_heads or config.compact_hidden_size is not None:
            _compact_attention(layer, heads, config.head_size, hidden, eps)
        if ffn != config.intermediate_size or config.compact_hidden_size is not None:
            _compact_ffn(layer, ffn, hidden, eps)
    if bert.pooler is not None and config.mux_width == 1 and config.compact_hidden_size is not None:
        # At N = 1 the pooler reads the encoder state directly; at N > 1 it reads the demultiplexer's.
        bert.pooler.dense = _linear(hidden, config.hidden_size)
