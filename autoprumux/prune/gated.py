"""Apply L0 gates to transformers' own BERT modules with hooks, without re-implementing BERT.

`GatedModel(model, gates)` attaches, for every layer ``l`` of ``model.bert`` (or of a bare
`BertModel`):

- a forward pre-hook on ``attention.output.dense`` that scales each head's context slice by its
  head gate;
- forward hooks on ``attention.output.dense`` and ``output.dense`` that scale the block output
  (bias included) by the layer gate times the hidden gates;
- a forward hook on ``intermediate`` that scales the FFN activation by the FFN-dim gates;
- `GatedLayerNorm` in place of the embeddings' and every block's ``LayerNorm``: it normalises
  over the kept hidden dims only and multiplies its output by the hidden gates, so pruned hidden
  dims are exactly zero everywhere and the compacted model computes the same thing. It shares the
  original parameters under the same names, so state dicts do not change.

A forward pre-hook on the top model draws the gates once per forward pass: sampled while the
model is in training mode, deterministic masks in eval mode (or `fixed_masks` when set).
`detach()` restores the plain model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autoprumux.prune.gates import GateMasks, L0Gates


class _GateState:
    """The masks of the current forward pass, shared by all hooks (a plain object, not a Module)."""

    def __init__(self) -> None:
        self.masks: GateMasks | None = None
        self.kept_hidden: torch.LongTensor | None = None  # indices of the non-zero hidden gates

    def set(self, masks: GateMasks | None) -> None:
        self.masks = masks
        self.kept_hidden = None if masks is None else torch.nonzero(masks.hidden, as_tuple=True)[0]


class GatedLayerNorm(nn.LayerNorm):
    """A LayerNorm over the kept hidden dims only, whose output is scaled by the hidden gates.

    Shares ``weight`` and ``bias`` with the LayerNorm it replaces. Without masks it is the plain
    LayerNorm.
    """

    def __init__(self, base: nn.LayerNorm, state: _GateState) -> None:
        super().__init__(base.normalized_shape, eps=base.eps, device="meta")
        self.weight = base.weight
        self.bias = base.bias
        self._state = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks, kept = self._state.masks, self._state.kept_hidden
        if masks is None:
            return super().forward(x)
        hidden = masks.hidden
        if kept.numel() == hidden.numel():
            normed = super().forward(x)
            return normed * hidden.to(normed.dtype)
        normed = F.layer_norm(
            x.index_select(-1, kept), (kept.numel(),), self.weight[kept], self.bias[kept], self.eps
        )
        scaled = normed * hidden[kept].to(normed.dtype)  # under autocast, layer_norm returns fp32
        return scaled.new_zeros((*x.shape[:-1], hidden.numel())).index_copy(-1, kept, scaled)


def _bert_of(model: nn.Module) -> nn.Module:
    return getattr(model, "bert", model)


def gated_layer_norm_paths(bert: nn.Module) -> list[tuple[nn.Module, str]]:
    """(parent module, attribute name) of every LayerNorm a hidden gate applies to."""
    paths = [(bert.embeddings, "LayerNorm")]
    for layer in bert.encoder.layer:
        paths += [(layer.attention.output, "LayerNorm"), (layer.output, "LayerNorm")]
    return paths


class GatedModel:
    """Attach L0 gates to a MuxBert classifier (or a bare BertModel); a context manager.

    >>> gated = GatedModel(model, L0Gates.from_config(model.config)).attach()   # doctest: +SKIP
    >>> logits = model(**batch).logits   # gated forward
    >>> gated.detach()                   # the plain model again
    """

    def __init__(self, model: nn.Module, gates: L0Gates) -> None:
        self.model = model
        self.gates = gates
        self.fixed_masks: GateMasks | None = None
        self._state = _GateState()
        self._handles: list = []
        self._replaced: list[tuple[nn.Module, str, nn.Module]] = []

    @property
    def masks(self) -> GateMasks | None:
        """The masks used by the latest forward pass (None before the first one)."""
        return self._state.masks

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> GatedModel:
        if self.attached:
            return self
        bert = _bert_of(self.model)
        self._handles.append(self.model.register_forward_pre_hook(self._draw_masks))
        for index, layer in enumerate(bert.encoder.layer):
            self._hook_layer(index, layer)
        for parent, name in gated_layer_norm_paths(bert):
            original = getattr(parent, name)
            setattr(parent, name, GatedLayerNorm(original, self._state))
            self._replaced.append((parent, name, original))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        for parent, name, original in self._replaced:
            setattr(parent, name, original)
        self._handles, self._replaced = [], []
        self._state.set(None)

    def __enter__(self) -> GatedModel:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def current_masks(self) -> GateMasks:
        """Masks for a forward pass now: fixed, sampled (training mode) or deterministic (eval)."""
        if self.fixed_masks is not None:
            return self.fixed_masks
        return self.gates.sample() if self.model.training else self.gates.deterministic()

    def _draw_masks(self, module, args, kwargs=None):
        device = next(self.model.parameters()).device
        self._state.set(self.current_masks().to(device))

    def _hook_layer(self, index: int, layer: nn.Module) -> None:
        state = self._state
        head_size = self.gates.head_size

        def scale_heads(module, args):
            context = args[0]
            heads = state.masks.heads[index].to(context.dtype)
            shaped = context.view(*context.shape[:-1], heads.numel(), head_size) * heads[:, None]
            return (shaped.view(context.shape), *args[1:])

        def scale_attention(module, args, output):
            return output * state.masks.attention_multiplier(index).to(output.dtype)

        def scale_ffn_dims(module, args, output):
            return output * state.masks.ffn_dims[index].to(output.dtype)

        def scale_ffn(module, args, output):
            return output * state.masks.ffn_multiplier(index).to(output.dtype)

        dense = layer.attention.output.dense
        self._handles += [
            dense.register_forward_pre_hook(scale_heads),
            dense.register_forward_hook(scale_attention),
            layer.intermediate.register_forward_hook(scale_ffn_dims),
            layer.output.dense.register_forward_hook(scale_ffn),
        ]


def attach_gates(model: nn.Module, gates: L0Gates | None = None, *, droprate_init: float = 0.5) -> GatedModel:
    """Create gates for `model`'s dense encoder (unless given) and attach them; returns the `GatedModel`."""
    if gates is None:
        gates = L0Gates.from_config(model.config, droprate_init=droprate_init)
        gates.to(next(model.parameters()).device)
    return GatedModel(model, gates).attach()
