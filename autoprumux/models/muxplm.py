"""MUX-PLM checkpoints -> `MuxBertForSequenceClassification` (PruMUX starts every N from one).

MUX-PLMs (princeton-nlp's MUX-BERT) are BERT models pre-trained, and optionally fine-tuned, with
multiplexing: `princeton-nlp/muxbert_base_gaussian_hadamard_index_pos_<N>` (pre-trained) and
`princeton-nlp/muxbert_base_<task>_gaussian_hadamard_index_pos_<N>` (fine-tuned), N in {2, 5, 10}.
Their weights, by name (facts from the MUX-PLM / PruMUX modeling code):

- `bert.embeddings.*`, `bert.encoder.layer.*`: transformers' BERT names (old files say gamma/beta);
- `instance_embedding` [N, d]: the multiplexer's slot vectors (`gaussian_hadamard`, frozen);
- `demux_module.demux_instance_embedding` [N, d]: the `index_pos` instance keys;
- `demux_module.dense_1` (2d -> d, key columns first) and `demux_module.dense_k` (d -> d) for
  k = 2..L, with L = `num_hidden_demux_layers`, plus `demux_module.layer_norm_k`;
- `demultiplexer.pre_decoder` (d -> d) and `demultiplexer.pre_decoder_layer_norm`;
- `retrieval_head.*` (pre-training) and `classifier.*` (fine-tuned checkpoints only).
`demux_module` is shared, so its tensors may also sit under `demultiplexer.demux_module.` and
`retrieval_head.demux_module.`.

Their classification forward, which the converted config reproduces (`demux_blocks = residual`,
`mux_embed_pass`, `mux_mask_padding = False`, `mux_token_types = False`, no pooler, `cls`
readout): each instance embedded (word + position + token type 0, LayerNorm, dropout) and
multiplied by its slot vector, the mean over instances; the mixture through the embedding layer once more; the encoder with no attention
mask; at position 0, concat(key_i, h) through dense_1 and GELU, dense_2..dense_{L-1} as residual
Linear-GELU blocks (their `layer_norm_k` are not applied on this path and dense_L feeds only their
retrieval head), then pre_decoder as a residual Linear-GELU-LayerNorm block; dropout, classifier.
They also overwrite each instance's first token with [CLS] (id 101), which BERT tokenizers put
there already.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from autoprumux.errors import ModelError
from autoprumux.models.config import MuxBertConfig
from autoprumux.models.modeling import MuxBertForSequenceClassification

_DEMUX_DENSE = re.compile(r"^(?:demultiplexer\.)?demux_module\.dense_(\d+)\.weight$")


def muxplm_dir(name: str) -> Path:
    """The local folder of MUX-PLM `name`: the folder itself, or the hub snapshot (cached or downloaded)."""
    if Path(name).is_dir():
        return Path(name)
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "*.safetensors", "pytorch_model.bin", "*.txt", "tokenizer*", "special_tokens_map.json"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown repo, no permission: all one line for the user
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(
            f"MUX-PLM {name!r} is not cached and cannot be downloaded ({reason[:160]}); where there is network, run "
            f"`huggingface-cli download {name} --local-dir DIR` and pass --model DIR (model = \"DIR\" in a spec)"
        ) from None


def read_muxplm_state(folder: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors by name (`model.safetensors` or `pytorch_model.bin`; gamma/beta renamed)."""
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(folder / "model.safetensors")
    elif (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ModelError(f"MUX-PLM folder {str(folder)!r} has no model.safetensors or pytorch_model.bin")
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        renamed[re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)] = value
    return renamed


def _demux_tensor(state: dict, name: str) -> torch.Tensor:
    for prefix in ("demux_module.", "demultiplexer.demux_module."):
        if prefix + name in state:
            return state[prefix + name]
    raise ModelError(f"the checkpoint has no demux_module.{name}; expected a MUX-PLM with the index_pos demultiplexer")


def _require(state: dict, name: str) -> torch.Tensor:
    if name not in state:
        raise ModelError(f"the checkpoint has no {name}; expected a MUX-PLM (gaussian_hadamard + index_pos)")
    return state[name]


def demux_layer_count(state: dict) -> int:
    """L, their `num_hidden_demux_layers`: the highest k of `demux_module.dense_k`."""
    layers = [int(m.group(1)) for key in state if (m := _DEMUX_DENSE.match(key))]
    if not layers or max(layers) < 2:
        raise ModelError("the checkpoint's demux_module has no dense_2; expected a MUX-PLM with >= 2 demux layers")
    return max(layers)


def convert_muxplm_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their tensors under this project's names (what a `MuxBertForSequenceClassification` loads)."""
    layers = demux_layer_count(state)
    out = {k: v for k, v in state.items() if k.startswith(("bert.embeddings.", "bert.encoder.", "bert.pooler."))}
    for buffer in ("position_ids", "token_type_ids"):  # index buffers that older files saved
        out.pop(f"bert.embeddings.{buffer}", None)
    out["multiplexer.vectors"] = _require(state, "instance_embedding")
    out["demultiplexer.keys"] = _demux_tensor(state, "demux_instance_embedding")
    for part in ("weight", "bias"):
        out[f"demultiplexer.first.{part}"] = _demux_tensor(state, f"dense_1.{part}")
        for k in range(2, layers):
            out[f"demultiplexer.tail.blocks.{k - 2}.{part}"] = _demux_tensor(state, f"dense_{k}.{part}")
        out[f"demultiplexer.tail.last.{part}"] = _require(state, f"demultiplexer.pre_decoder.{part}")
        out[f"demultiplexer.tail.norm.{part}"] = _require(state, f"demultiplexer.pre_decoder_layer_norm.{part}")
        if f"classifier.{part}" in state:
            out[f"classifier.{part}"] = state[f"classifier.{part}"]
    return out


def muxplm_config(folder: Path, state: dict, **fields) -> MuxBertConfig:
    """A `MuxBertConfig` with the checkpoint's BERT sizes and MUX-PLM's multiplexing, plus `fields`."""
    from transformers import BertConfig

    from autoprumux.models.build import quiet_transformers

    with quiet_transformers():
        bert = BertConfig.from_pretrained(folder)
    vectors = _require(state, "instance_embedding")
    mux = dict(
        mux_width=int(vectors.shape[0]), multiplexer="gaussian_hadamard", demultiplexer="index_pos",
        demux_layers=demux_layer_count(state), demux_blocks="residual", mux_embed_pass=True, mux_mask_padding=False,
        mux_token_types=False, mux_pooler=False, readout="cls",
    )
    return MuxBertConfig.from_bert_config(bert, **{**mux, **fields})


def load_muxplm_model(name: str, mux_width: int, **fields) -> MuxBertForSequenceClassification:
    """MUX-PLM `name` (hub id or local folder) as a `MuxBertForSequenceClassification` of width N.

    `fields` are further config fields (labels, retrieval head, special ids). The classifier comes
    from the checkpoint when it has one of the right size, else it is new; their retrieval head is
    not carried over. A checkpoint of another N than `mux_width` is a user error.
    """
    folder = muxplm_dir(name)
    state = read_muxplm_state(folder)
    config = muxplm_config(folder, state, **fields)
    if config.mux_width != mux_width:
        suggestion = re.sub(r"_\d+$", f"_{mux_width}", name)
        raise ModelError(
            f"model {name!r} is a MUX-PLM of N = {config.mux_width}; this run has N = {mux_width} (use the "
            f"checkpoint of that N, e.g. {suggestion!r})"
        )
    converted = convert_muxplm_state(state)
    model = MuxBertForSequenceClassification(config)
    if tuple(converted.get("classifier.weight", torch.empty(0, 0)).shape) != tuple(model.classifier.weight.shape):
        converted = {k: v for k, v in converted.items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(converted, strict=False)
    missing = [k for k in missing if not k.startswith(("bert.pooler.", "classifier.", "retrieval_head."))]
    if missing or unexpected:
        raise ModelError(f"model {name!r} does not fit MuxBert (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model
