"""The sparsity count, defined once: CoFi's prunable parameters of a BERT encoder.

Prunable parameters are the weights (biases excluded) of every layer's attention Q, K, V, O and
FFN in/out: a layer with ``h`` heads of size ``d_h``, ``f`` FFN dims and hidden size ``d`` holds
``4·d_h·h·d + 2·f·d``. Embeddings, pooler, classifier, multiplexer and demultiplexer are not
counted. Sparsity is the fraction of the dense count that is gone (a fraction in [0, 1]).

The same function serves three uses, so they cannot disagree:

- `expected_size`: the expectation under the gates' keep probabilities (differentiable);
- `mask_size`: the count that deterministic masks leave;
- `measured_sparsity`: the count of a compacted model, read from its actual weight shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from autoprumux.prune.gates import GateMasks, L0Gates


def prunable_parameter_count(heads_per_layer, ffn_dims_per_layer, hidden_size, head_size: int):
    """``sum_l heads_l · 4·d_h · d + sum_l ffn_l · 2 · d``: prunable weights of an encoder.

    Works on plain numbers (a compacted model's shapes) and on tensors (expected counts: per-layer
    expected heads ``P(attn_l) · sum_h P(head_lh)``, expected hidden size ``sum_j P(hid_j)``).
    """
    heads = sum(heads_per_layer) if isinstance(heads_per_layer, Sequence) else heads_per_layer.sum()
    ffn = sum(ffn_dims_per_layer) if isinstance(ffn_dims_per_layer, Sequence) else ffn_dims_per_layer.sum()
    return 4 * head_size * heads * hidden_size + 2 * ffn * hidden_size


def full_prunable_parameter_count(config) -> int:
    """The dense encoder's prunable weights, L·(4·d² + 2·d·d_ff), of a (Mux)BertConfig."""
    layers = config.num_hidden_layers
    head_size = config.hidden_size // config.num_attention_heads
    return prunable_parameter_count(
        [config.num_attention_heads] * layers, [config.intermediate_size] * layers, config.hidden_size, head_size
    )


def _size_of(masks: GateMasks, head_size: int) -> torch.Tensor:
    heads = masks.attention_layers * masks.heads.sum(-1)
    ffn = masks.ffn_layers * masks.ffn_dims.sum(-1)
    return prunable_parameter_count(heads, ffn, masks.hidden.sum(), head_size)


def _dense_size(gates: L0Gates) -> int:
    layers = gates.num_layers
    return prunable_parameter_count(
        [gates.num_heads] * layers, [gates.intermediate_size] * layers, gates.hidden_size, gates.head_size
    )


def expected_size(gates: L0Gates) -> torch.Tensor:
    """E[remaining prunable parameters] under the gates' keep probabilities P(z > 0) (differentiable)."""
    return _size_of(gates.keep_probability(), gates.head_size)


def expected_sparsity(gates: L0Gates) -> torch.Tensor:
    """1 - E[remaining] / dense count: a differentiable fraction in [0, 1]."""
    return 1.0 - expected_size(gates) / _dense_size(gates)


def mask_size(masks: GateMasks, head_size: int) -> int:
    """Prunable parameters that survive `masks` (a unit survives when its value is non-zero)."""
    kept = GateMasks(
        heads=(masks.heads > 0).float(),
        attention_layers=(masks.attention_layers > 0).float(),
        ffn_dims=(masks.ffn_dims > 0).float(),
        ffn_layers=(masks.ffn_layers > 0).float(),
        hidden=(masks.hidden > 0).float(),
    )
    return int(round(float(_size_of(kept, head_size))))


def mask_sparsity(masks: GateMasks, gates: L0Gates) -> float:
    """The sparsity (fraction) that `masks` of `gates` leave."""
    return 1.0 - mask_size(masks, gates.head_size) / _dense_size(gates)


def surviving_structure(model) -> dict:
    """Heads and FFN dims per layer and the hidden size of a (possibly compacted) model.

    Read from the actual weight shapes of ``model.bert`` (or of a bare BertModel): a skipped
    attention block has 0 heads, a skipped FFN block 0 dims.
    """
    bert = getattr(model, "bert", model)
    head_size = model.config.hidden_size // model.config.num_attention_heads
    heads, ffn = [], []
    for layer in bert.encoder.layer:
        query = getattr(getattr(layer.attention, "self", None), "query", None)
        heads.append(0 if query is None else query.weight.shape[0] // head_size)
        dense = getattr(layer.intermediate, "dense", None)
        ffn.append(0 if dense is None else dense.weight.shape[0])
    hidden = bert.embeddings.word_embeddings.weight.shape[1]
    return {
        "heads_per_layer": heads,
        "ffn_dims_per_layer": ffn,
        "hidden_size": hidden,
        "skipped_attention_layers": [i for i, h in enumerate(heads) if h == 0],
        "skipped_ffn_layers": [i for i, f in enumerate(ffn) if f == 0],
    }


def measured_prunable_parameters(model) -> int:
    """Prunable parameters of a model, counted on its actual shapes (see `surviving_structure`)."""
    structure = surviving_structure(model)
    head_size = model.config.hidden_size // model.config.num_attention_heads
    return prunable_parameter_count(
        structure["heads_per_layer"], structure["ffn_dims_per_layer"], structure["hidden_size"], head_size
    )


def measured_sparsity(model) -> float:
    """Sparsity (fraction) of a model relative to the dense encoder of its config's original shape."""
    return 1.0 - measured_prunable_parameters(model) / full_prunable_parameter_count(model.config)
