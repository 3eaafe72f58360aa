"""Compaction: turn a gated model into a smaller dense model that computes the same thing.

`compact_model(model, gates)` takes the deterministic masks of `gates` and builds a new
`MuxBertForSequenceClassification` whose config carries the surviving structure
(`compact_hidden_size`, `compact_heads`, `compact_intermediate`), through the models package's
compacted-shape constructor, then fills it with sliced weights:

- pruned heads: rows of Q, K, V and columns of the attention output dense go;
- pruned FFN dims: rows of the FFN input dense and columns of its output dense go;
- pruned hidden dims: columns of the embedding tables, entries of every LayerNorm, input columns
  of Q, K, V and FFN-in, output rows of attention-out and FFN-out, the multiplexer vectors and
  the demultiplexer's encoder-state inputs (their `prune_hidden`) and, at N = 1, the pooler's
  input columns go;
- a block whose layer gate is zero (or whose heads / FFN dims are all zero) is skipped, only its
  LayerNorm stays;
- kept soft gate values are folded into the weights they scale: hidden gates into every
  LayerNorm's weight and bias, head gates into the attention output's columns, FFN-dim gates into
  the FFN output's columns, layer gate x hidden gates into the block output's rows and bias.

Because the gated model normalises over the kept hidden dims only (`GatedLayerNorm`), the
compacted model's logits equal the gated model's deterministic-mask logits up to float rounding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from autoprumux.errors import ModelError
from autoprumux.prune.gates import GateMasks, L0Gates


@dataclass(frozen=True)
class PrunedStructure:
    """What survives deterministic masks: kept indices per kind and the soft values to fold.

    `heads[l]` / `ffn_dims[l]` are the kept head / FFN-dim indices of layer l (empty when the block
    is skipped); `hidden` the kept hidden dims. `masks` holds the soft values.
    """

    hidden: torch.LongTensor
    heads: tuple[torch.LongTensor, ...]
    ffn_dims: tuple[torch.LongTensor, ...]
    masks: GateMasks

    @classmethod
    def from_masks(cls, masks: GateMasks) -> PrunedStructure:
        masks = masks.detach()
        hidden = torch.nonzero(masks.hidden > 0, as_tuple=True)[0]
        if hidden.numel() == 0:
            raise ModelError(
                "the pruning masks remove every hidden dimension, so no model is left; use a lower target "
                "sparsity or a smaller prune.reg_learning_rate"
            )
        empty = torch.zeros(0, dtype=torch.long)

        def kept(layer_gates: torch.Tensor, unit_gates: torch.Tensor) -> tuple[torch.LongTensor, ...]:
            return tuple(
                torch.nonzero(units > 0, as_tuple=True)[0] if gate > 0 else empty
                for gate, units in zip(layer_gates, unit_gates, strict=True)
            )

        return cls(
            hidden=hidden,
            heads=kept(masks.attention_layers, masks.heads),
            ffn_dims=kept(masks.ffn_layers, masks.ffn_dims),
            masks=masks,
        )

    def config_fields(self) -> dict:
        """The `compact_*` fields of `MuxBertConfig` that describe this structure."""
        return {
            "compact_hidden_size": int(self.hidden.numel()),
            "compact_heads": [int(h.numel()) for h in self.heads],
            "compact_intermediate": [int(f.numel()) for f in self.ffn_dims],
        }


def _rows(head_indices: torch.LongTensor, head_size: int) -> torch.LongTensor:
    """The Q/K/V output rows (= attention output columns) of the given heads."""
    return (head_indices[:, None] * head_size + torch.arange(head_size)).reshape(-1)


def _layer_norm(state: dict, prefix: str, keep: torch.LongTensor, scale: torch.Tensor) -> dict:
    return {
        f"{prefix}.weight": state[f"{prefix}.weight"][keep] * scale,
        f"{prefix}.bias": state[f"{prefix}.bias"][keep] * scale,
    }


def _attention_state(state: dict, prefix: str, structure: PrunedStructure, layer: int, head_size: int) -> dict:
    masks, hidden = structure.masks, structure.hidden
    out = _layer_norm(state, f"{prefix}.output.LayerNorm", hidden, masks.hidden[hidden])
    heads = structure.heads[layer]
    if heads.numel() == 0:
        return out
    rows = _rows(heads, head_size)
    for name in ("query", "key", "value"):
        out[f"{prefix}.self.{name}.weight"] = state[f"{prefix}.self.{name}.weight"][rows][:, hidden]
        out[f"{prefix}.self.{name}.bias"] = state[f"{prefix}.self.{name}.bias"][rows]
    column_scale = masks.heads[layer][heads].repeat_interleave(head_size)
    row_scale = masks.attention_multiplier(layer)[hidden]
    weight = state[f"{prefix}.output.dense.weight"][hidden][:, rows]
    out[f"{prefix}.output.dense.weight"] = weight * column_scale[None, :] * row_scale[:, None]
    out[f"{prefix}.output.dense.bias"] = state[f"{prefix}.output.dense.bias"][hidden] * row_scale
    return out


def _ffn_state(state: dict, prefix: str, structure: PrunedStructure, layer: int) -> dict:
    masks, hidden = structure.masks, structure.hidden
    out = _layer_norm(state, f"{prefix}.output.LayerNorm", hidden, masks.hidden[hidden])
    dims = structure.ffn_dims[layer]
    if dims.numel() == 0:
        return out
    out[f"{prefix}.intermediate.dense.weight"] = state[f"{prefix}.intermediate.dense.weight"][dims][:, hidden]
    out[f"{prefix}.intermediate.dense.bias"] = state[f"{prefix}.intermediate.dense.bias"][dims]
    row_scale = masks.ffn_multiplier(layer)[hidden]
    weight = state[f"{prefix}.output.dense.weight"][hidden][:, dims]
    out[f"{prefix}.output.dense.weight"] = weight * masks.ffn_dims[layer][dims][None, :] * row_scale[:, None]
    out[f"{prefix}.output.dense.bias"] = state[f"{prefix}.output.dense.bias"][hidden] * row_scale
    return out


def compact_bert_state(state: dict, structure: PrunedStructure, num_layers: int, head_size: int, *, slice_pooler: bool) -> dict:
    """The state dict of a compacted `BertModel`, from a dense one's (transformers' key names)."""
    hidden = structure.hidden
    out = {
        f"embeddings.{name}.weight": state[f"embeddings.{name}.weight"][:, hidden]
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")
    }
    out.update(_layer_norm(state, "embeddings.LayerNorm", hidden, structure.masks.hidden[hidden]))
    for layer in range(num_layers):
        prefix = f"encoder.layer.{layer}"
        out.update(_attention_state(state, f"{prefix}.attention", structure, layer, head_size))
        out.update(_ffn_state(state, prefix, structure, layer))
    if "pooler.dense.weight" in state:
        weight = state["pooler.dense.weight"]
        out["pooler.dense.weight"] = weight[:, hidden] if slice_pooler else weight
        out["pooler.dense.bias"] = state["pooler.dense.bias"]
    return out


def _pruned_copy_state(module: nn.Module | None, keep: torch.LongTensor, prefix: str) -> dict:
    if module is None:
        return {}
    pruned = copy.deepcopy(module)
    pruned.prune_hidden(keep)
    return {f"{prefix}.{k}": v for k, v in pruned.state_dict().items()}


def compact_model(model, gates: L0Gates | GateMasks):
    """A new, smaller `MuxBertForSequenceClassification` equal to `model` gated by `gates`' masks.

    `gates` is an `L0Gates` (its deterministic masks are used) or the `GateMasks` themselves.
    `model` must be dense (not compacted already); it is left unchanged. The result is in eval
    mode, on `model`'s device, and saves/loads like any model of the project.
    """
    from autoprumux.models import build_compact_skeleton

    if model.config.is_compact:
        raise ValueError("compact_model needs a dense model; this one is compacted already")
    masks = gates.deterministic() if isinstance(gates, L0Gates) else gates
    structure = PrunedStructure.from_masks(masks)
    config = copy.deepcopy(model.config)
    for name, value in structure.config_fields().items():
        setattr(config, name, value)
    device = next(model.parameters()).device
    with torch.no_grad():
        source = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        bert_state = {k[len("bert."):]: v for k, v in source.items() if k.startswith("bert.")}
        state = {k: v for k, v in source.items() if not k.startswith(("bert.", "multiplexer.", "demultiplexer."))}
        compact = compact_bert_state(
            bert_state, structure, config.num_hidden_layers, config.head_size, slice_pooler=config.mux_width == 1
        )
        state.update({f"bert.{k}": v for k, v in compact.items()})
        keep = structure.hidden
        state.update(_pruned_copy_state(model.multiplexer, keep.to(device), "multiplexer"))
        state.update(_pruned_copy_state(model.demultiplexer, keep.to(device), "demultiplexer"))
        target = build_compact_skeleton(config)
        target.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True)
    return target.to(device).eval()
