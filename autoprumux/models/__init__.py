"""Data-multiplexed BERT classifiers on transformers' `BertModel`.

- `MuxBertConfig`: BertConfig + mux width, multiplexer, demultiplexer and compacted structure;
- `MuxBertForSequenceClassification`: embeddings -> multiplexer -> encoder -> demultiplexer ->
  classifier, N inputs per encoder pass;
- `build_model` / `load_model`: from a preset or pretrained backbone / from a saved directory;
- `load_muxplm_model`: a MUX-PLM checkpoint (princeton-nlp's MUX-BERT) converted, with its forward;
- `build_compact_skeleton`: an untrained model with the per-layer shapes of a pruned config, for
  `prune/compact.py` to copy sliced weights into.

Names load lazily, so `autoprumux.models.presets` (which the torch-free spec validation uses)
does not import torch or transformers. Importing `modeling` registers the model with transformers'
Auto classes.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "autoprumux.models.build": ("build_compact_skeleton", "build_model", "load_model", "quiet_transformers"),
    "autoprumux.models.config": ("MuxBertConfig",),
    "autoprumux.models.demultiplexer": ("DEMULTIPLEXERS", "Demultiplexer", "build_demultiplexer"),
    "autoprumux.models.modeling": (
        "MuxBertForSequenceClassification", "MuxClassifierOutput", "RetrievalHead", "classification_loss",
    ),
    "autoprumux.models.multiplexer": ("Multiplexer", "slot_vectors"),
    "autoprumux.models.muxplm": ("convert_muxplm_state", "load_muxplm_model"),
    "autoprumux.models.shapes": ("NormOnlyOutput", "SkippedAttention", "check_compact_config"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'autoprumux.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
