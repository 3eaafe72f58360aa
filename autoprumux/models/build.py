"""Building and loading models: a preset or pretrained backbone -> `MuxBertForSequenceClassification`.

>>> model = build_model("tiny", tokenizer, mux_width=2, mux_settings=MuxSettings(), num_labels=2)  # doctest: +SKIP
>>> model = load_model("runs/n2/model")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from transformers import AutoConfig, BertConfig, BertModel
from transformers.utils import logging as hf_logging

from autoprumux.errors import ModelError
from autoprumux.models.config import MuxBertConfig
from autoprumux.models.modeling import MuxBertForSequenceClassification
from autoprumux.models.presets import is_muxplm, resolve_model


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load/save reports and progress bars (library code does not print)."""
    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def _mux_fields(mux_width: int, mux_settings, retrieval_head: bool, tokenizer) -> dict:
    return dict(
        mux_width=mux_width,
        multiplexer=mux_settings.multiplexer,
        demultiplexer=mux_settings.demultiplexer,
        demux_layers=mux_settings.demux_layers,
        readout=mux_settings.readout,
        mux_pooler=mux_settings.pooler,
        mux_norm=float(mux_settings.mux_norm),
        retrieval_head=retrieval_head,
        retrieval_ignore_ids=sorted(set(tokenizer.all_special_ids)) if tokenizer is not None else None,
    )


def _labels(num_labels: int, label_names) -> dict:
    names = list(label_names) if label_names else [f"LABEL_{i}" for i in range(num_labels)]
    return dict(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})


def _pretrained_bert_config(path: str) -> BertConfig:
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"model {path!r} cannot be loaded ({str(exc).splitlines()[0]}); expected a preset, a local "
            "BERT checkpoint directory, or a hub id that is cached or reachable"
        ) from None
    if config.model_type not in ("bert", "muxbert"):
        raise ModelError(
            f"model {path!r} is a {config.model_type!r} model; expected a BERT-family checkpoint (model_type 'bert')"
        )
    return config


def build_model(
    model_name: str,
    tokenizer,
    mux_width: int,
    mux_settings,
    num_labels: int,
    *,
    label_names=None,
    retrieval_head: bool = False,
    max_positions: int | None = None,
) -> MuxBertForSequenceClassification:
    """A new multiplexed classifier for backbone `model_name` (preset, local dir or hub id).

    Presets are built from scratch with `tokenizer`'s vocabulary (seed torch before calling for
    reproducible weights). Pretrained backbones keep their `BertModel` weights; multiplexer,
    demultiplexer, classifier (and retrieval head) are new. A MUX-PLM checkpoint (hub id or local
    folder, `autoprumux.models.muxplm`) brings its multiplexer, demultiplexer and forward pass
    (`mux_settings` do not apply) and must be of width `mux_width`. `mux_settings` is a
    `autoprumux.spec.MuxSettings`. `max_positions` (tokens per instance) is checked against the
    backbone's position table, including the N extra positions of the `index` demultiplexer.
    """
    source = resolve_model(model_name)
    fields = {**_mux_fields(mux_width, mux_settings, retrieval_head, tokenizer), **_labels(num_labels, label_names)}
    if source.is_pretrained and is_muxplm(source.pretrained):  # multiplexing comes from the checkpoint
        from autoprumux.models.muxplm import load_muxplm_model

        model = load_muxplm_model(
            source.pretrained, mux_width, num_labels=num_labels, retrieval_head=retrieval_head,
            retrieval_ignore_ids=fields["retrieval_ignore_ids"], **_labels(num_labels, label_names),
        )
        _check_positions(model.config, model_name, max_positions)
        return model
    if source.is_pretrained:
        base = _pretrained_bert_config(source.pretrained)
        config = MuxBertConfig.from_bert_config(base, **fields)
    else:
        config = MuxBertConfig(
            **source.scratch,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            **fields,
        )
    _check_positions(config, model_name, max_positions)
    model = MuxBertForSequenceClassification(config)
    if source.is_pretrained:
        _load_backbone(model, source.pretrained)
    return model


def _check_positions(config: MuxBertConfig, model_name: str, max_positions: int | None) -> None:
    if max_positions is None:
        return
    extra = config.mux_width if config.mux_width > 1 and config.demultiplexer == "index" else 0
    if max_positions + extra > config.max_position_embeddings:
        raise ModelError(
            f"max_seq_len = {max_positions} (+{extra} index positions) exceeds model {model_name!r}'s "
            f"{config.max_position_embeddings} positions; use a max_seq_len <= {config.max_position_embeddings - extra}"
        )


def _load_backbone(model: MuxBertForSequenceClassification, path: str) -> None:
    try:
        with quiet_transformers():
            if AutoConfig.from_pretrained(path).model_type == "muxbert":
                backbone = MuxBertForSequenceClassification.from_pretrained(path).bert
            else:
                backbone = BertModel.from_pretrained(path, add_pooling_layer=True)
    except OSError as exc:
        raise ModelError(f"weights of model {path!r} cannot be loaded: {str(exc).splitlines()[0]}") from None
    missing, unexpected = model.bert.load_state_dict(backbone.state_dict(), strict=False)
    if missing or unexpected:
        raise ModelError(
            f"model {path!r} does not fit a BERT backbone (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def load_model(path: str | os.PathLike) -> MuxBertForSequenceClassification:
    """Load a saved `MuxBertForSequenceClassification` (a `model/` directory or a run directory)."""
    path = Path(path)
    if (path / "model" / "config.json").is_file():
        path = path / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"{str(path)!r} is not a saved model (no config.json); expected a run's model/ directory")
    try:
        with quiet_transformers():
            return MuxBertForSequenceClassification.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"model {str(path)!r} cannot be loaded: {str(exc).splitlines()[0]}") from None


def build_compact_skeleton(config: MuxBertConfig) -> MuxBertForSequenceClassification:
    """A freshly initialised model with the compacted shapes of `config.compact_*`."""
    return MuxBertForSequenceClassification(config)
