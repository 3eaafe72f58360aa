"""Data-multiplexed BERT classifiers on transformers' `BertModel`.

- `MuxBertConfig`: BertConfig + mux width, multiplexer, demultiplexer and compacted structure;
- `MuxBertForSequenceClassification`: embeddings -> multiplexer -> encoder -> demultiplexer ->
  classifier, N inputs per encoder pass;
- `build_model` / `load_model`: from a preset or pretrained backbone / from a saved directory;
- `build_compact_skeleton`: an untrained model with the per-layer shapes of a pruned config, for
  `prune/compact.py` to copy sliced weights into.
"""

from transformers import AutoConfig, AutoModelForSequenceClassification

from autoprumux.models.build import build_model, load_model, quiet_transformers
from autoprumux.models.config import MuxBertConfig
from autoprumux.models.demultiplexer import DEMULTIPLEXERS, Demultiplexer, build_demultiplexer
from autoprumux.models.modeling import (
    MuxBertForSequenceClassification,
    MuxClassifierOutput,
    RetrievalHead,
    classification_loss,
)
from autoprumux.models.multiplexer import Multiplexer, slot_vectors
from autoprumux.models.shapes import NormOnlyOutput, SkippedAttention, check_compact_config


def build_compact_skeleton(config: MuxBertConfig) -> MuxBertForSequenceClassification:
    """A freshly initialised model with the compacted shapes of `config.compact_*`."""
    return MuxBertForSequenceClassification(config)


try:  # registration makes AutoModelForSequenceClassification.from_pretrained work on saved models
    AutoConfig.register("muxbert", MuxBertConfig)
    AutoModelForSequenceClassification.register(MuxBertConfig, MuxBertForSequenceClassification)
except ValueError:  # already registered (module reloaded)
    pass

__all__ = [
    "DEMULTIPLEXERS",
    "Demultiplexer",
    "Multiplexer",
    "MuxBertConfig",
    "MuxBertForSequenceClassification",
    "MuxClassifierOutput",
    "NormOnlyOutput",
    "RetrievalHead",
    "SkippedAttention",
    "build_compact_skeleton",
    "build_demultiplexer",
    "build_model",
    "check_compact_config",
    "classification_loss",
    "load_model",
    "quiet_transformers",
    "slot_vectors",
]
