"""MUX-PLM checkpoints: conversion into MuxBertForSequenceClassification and their forward pass.

The fixture writes a small random checkpoint in the MUX-PLM layout (names, shapes and config keys
of princeton-nlp's MUX-BERT, as their modeling code defines them), and `reference_logits` states
their classification forward independently of autoprumux's modules.
"""

import json

import pytest
import torch
from torch.nn import functional as F
from transformers import BertConfig, BertModel

from autoprumux.errors import ModelError
from autoprumux.models import build_model, load_model
from autoprumux.models.muxplm import convert_muxplm_state, load_muxplm_model, read_muxplm_state
from autoprumux.models.presets import is_muxplm
from autoprumux.spec import MuxSettings

D, LAYERS, HEADS, FFN, VOCAB, DEMUX = 32, 2, 4, 64, 60, 3


def muxplm_state(config: BertConfig, width: int, demux_layers: int, num_labels: int | None) -> dict:
    """Random tensors under MUX-PLM's names; `demux_module` also under its two sharing parents."""
    torch.manual_seed(1)
    state = {f"bert.{k}": v for k, v in BertModel(config, add_pooling_layer=False).state_dict().items()}
    state["bert.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]  # older files have it
    d = config.hidden_size
    state["instance_embedding"] = torch.randn(width, d)
    demux = {"demux_instance_embedding": torch.randn(width, d)}
    for k in range(1, demux_layers + 1):
        demux[f"dense_{k}.weight"] = torch.randn(d, 2 * d if k == 1 else d) * 0.1
        demux[f"dense_{k}.bias"] = torch.randn(d) * 0.1
        demux[f"layer_norm_{k}.weight"], demux[f"layer_norm_{k}.bias"] = torch.rand(d) + 0.5, torch.randn(d) * 0.1
    for parent in ("demux_module.", "demultiplexer.demux_module.", "retrieval_head.demux_module."):
        state.update({parent + k: v for k, v in demux.items()})
    for head in ("demultiplexer.", "retrieval_head."):
        state[head + "pre_decoder.weight"], state[head + "pre_decoder.bias"] = torch.randn(d, d) * 0.1, torch.randn(d) * 0.1
        state[head + "pre_decoder_layer_norm.weight"] = torch.rand(d) + 0.5
        state[head + "pre_decoder_layer_norm.bias"] = torch.randn(d) * 0.1
    state["retrieval_head.decoder.weight"], state["retrieval_head.decoder.bias"] = torch.randn(VOCAB, d), torch.zeros(VOCAB)
    if num_labels is not None:
        state["classifier.weight"], state["classifier.bias"] = torch.randn(num_labels, d), torch.randn(num_labels)
    return state


@pytest.fixture
def muxplm_checkpoint(tmp_path):
    """`make(width=2, num_labels=None)` -> a folder in the MUX-PLM layout (config.json, pytorch_model.bin, vocab)."""

    def make(width: int = 2, num_labels: int | None = None, name: str = "muxplm"):
        folder = tmp_path / name
        folder.mkdir()
        config = BertConfig(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                            intermediate_size=FFN, max_position_embeddings=64)
        raw = {**config.to_dict(), "architectures": ["MuxedBertForMaskedLM"], "num_instances": width,
               "muxing_variant": "gaussian_hadamard", "demuxing_variant": "index_pos", "gaussian_hadamard_norm": 1,
               "num_hidden_demux_layers": DEMUX, "learn_muxing": 0, "retrieval_percentage": 1.0,
               "retrieval_loss_coeff": 0.1, "task_loss_coeff": 0.9, "binary_hadamard_epsilon": 0}
        (folder / "config.json").write_text(json.dumps(raw))
        torch.save(muxplm_state(config, width, DEMUX, num_labels), folder / "pytorch_model.bin")
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(VOCAB - 5)]
        (folder / "vocab.txt").write_text("\n".join(words) + "\n")
        return folder

    return make


def reference_logits(folder, input_ids: torch.Tensor) -> torch.Tensor:
    """Their classification forward on [B, N, T] ids -> [B, N, C] (eval mode), from the raw tensors."""
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    config = BertConfig.from_pretrained(folder)
    bert = BertModel(config, add_pooling_layer=False).eval()
    bert.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("bert.") and "position_ids" not in k})
    batch, width, length = input_ids.shape
    with torch.no_grad():
        embedded = bert.embeddings(input_ids=input_ids.reshape(batch * width, length)).view(batch, width, length, -1)
        mixed = (embedded * state["instance_embedding"][None, :, None, :]).mean(dim=1)
        encoded = bert(inputs_embeds=mixed).last_hidden_state  # embeddings once more, no attention mask
        keys = state["demux_module.demux_instance_embedding"]
        x = torch.cat([keys[None].expand(batch, -1, -1), encoded[:, :1].expand(-1, width, -1)], dim=-1)
        x = F.gelu(F.linear(x, state["demux_module.dense_1.weight"], state["demux_module.dense_1.bias"]))
        for k in range(2, DEMUX):
            x = x + F.gelu(F.linear(x, state[f"demux_module.dense_{k}.weight"], state[f"demux_module.dense_{k}.bias"]))
        top = F.gelu(F.linear(x, state["demultiplexer.pre_decoder.weight"], state["demultiplexer.pre_decoder.bias"]))
        x = x + F.layer_norm(top, (D,), state["demultiplexer.pre_decoder_layer_norm.weight"],
                             state["demultiplexer.pre_decoder_layer_norm.bias"], config.layer_norm_eps)
        return F.linear(x, state["classifier.weight"], state["classifier.bias"])


def inputs(width: int, batch: int = 3, length: int = 10):
    ids = torch.randint(5, VOCAB, (batch, width, length), generator=torch.Generator().manual_seed(0))
    ids[..., 0] = 2
    mask = torch.ones_like(ids)
    mask[0, 1, 6:] = 0  # padding, which MUX-PLM mixes and attends like any token
    return ids * mask, mask


@pytest.mark.parametrize("width", [2, 5])
def test_a_converted_muxplm_computes_their_classification_forward(muxplm_checkpoint, width):
    folder = muxplm_checkpoint(width=width, num_labels=3)
    model = load_muxplm_model(str(folder), width, num_labels=3).eval()
    config = model.config
    assert (config.mux_width, config.demux_layers, config.demux_blocks) == (width, DEMUX, "residual")
    assert config.mux_embed_pass and not (config.mux_mask_padding or config.mux_token_types or config.mux_pooler)
    state = read_muxplm_state(folder)
    assert torch.equal(model.multiplexer.vectors, state["instance_embedding"])
    assert torch.equal(model.demultiplexer.keys, state["demux_module.demux_instance_embedding"])
    assert model.demultiplexer.first.weight.shape == (D, 2 * D) and len(model.demultiplexer.tail.blocks) == DEMUX - 2
    ids, mask = inputs(width)
    types = torch.zeros_like(ids)
    types[..., 5:] = 1  # a pair's second segment, which MUX-PLM embeds as type 0 like the first
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert ours.shape == (3, width, 3)
    assert torch.allclose(ours, reference_logits(folder, ids), atol=1e-5)


def test_conversion_keeps_their_tensors_and_drops_their_retrieval_head(muxplm_checkpoint):
    state = read_muxplm_state(muxplm_checkpoint())
    converted = convert_muxplm_state(state)
    assert not any(k.startswith(("retrieval_head", "demux_module", "instance_embedding")) for k in converted)
    assert torch.equal(converted["demultiplexer.tail.blocks.0.weight"], state["demux_module.dense_2.weight"])
    assert torch.equal(converted["demultiplexer.tail.last.weight"], state["demultiplexer.pre_decoder.weight"])
    assert "classifier.weight" not in converted  # a pre-trained (not fine-tuned) checkpoint has none


def test_build_model_takes_a_muxplm_folder_and_the_saved_model_reloads_exactly(muxplm_checkpoint, tmp_path):
    folder = muxplm_checkpoint()
    assert is_muxplm(str(folder)) and is_muxplm("princeton-nlp/muxbert_base_gaussian_hadamard_index_pos_2")
    assert not is_muxplm("bert-base-uncased")
    model = build_model(str(folder), None, 2, MuxSettings(readout="instance_mean"), num_labels=2).eval()
    assert model.config.readout == "cls"  # the checkpoint's forward, not the spec's [mux]
    model.save_pretrained(tmp_path / "saved")
    again = load_model(tmp_path / "saved")
    assert torch.equal(again.multiplexer.vectors, read_muxplm_state(folder)["instance_embedding"])
    ids, mask = inputs(2)
    with torch.no_grad():
        before, after = model(input_ids=ids, attention_mask=mask).logits, again(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(before, after, atol=1e-6)


def test_a_muxplm_of_another_width_is_a_one_line_error(muxplm_checkpoint):
    folder = muxplm_checkpoint(width=2)
    with pytest.raises(ModelError, match=r"is a MUX-PLM of N = 2; this run has N = 5"):
        load_muxplm_model(str(folder), 5, num_labels=2)


def test_an_unreachable_hub_id_says_how_to_use_a_local_folder(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelError) as error:
        load_muxplm_model("princeton-nlp/muxbert_base_gaussian_hadamard_index_pos_2", 2, num_labels=2)
    message = str(error.value)
    assert "\n" not in message and "huggingface-cli download princeton-nlp/muxbert_base_gaussian_hadamard_index_pos_2" in message
    assert "--model DIR" in message


def test_a_spec_starts_each_n_from_its_models_entry_without_a_warmup(muxplm_checkpoint, tmp_path, capsys):
    from autoprumux.cli import main
    from autoprumux.spec import load_spec
    from autoprumux.train.plan import stage_chain

    folder = muxplm_checkpoint(width=2)
    spec = tmp_path / "muxplm.toml"
    spec.write_text(
        f'name = "muxplm"\ntask = "synthetic-sentiment"\nmodel = "tiny"\n[models]\n2 = "{folder}"\n'
        "[data]\neval_size = 24\nmax_seq_len = 16\n[finetune]\nsteps = 2\nbatch_size = 4\n"
        "[prune]\nsteps = 2\nbatch_size = 4\nlagrangian_warmup_ratio = 0.5\n[post_finetune]\nsteps = 1\nbatch_size = 4\n"
        '[bench]\nbatch_size = 2\nseq_len = 16\nwarmup = 1\nrepeats = 2\nthreads = 1\ndtype = "bf16"\n'
    )
    training = load_spec(spec).training
    assert training.model_for(2) == str(folder) and training.model_for(1) == "tiny"
    assert [s.name for s in stage_chain(training, 2, 0.5)] == ["finetune", "prune", "post_finetune"]
    assert [s.name for s in stage_chain(training, 1, 0.0)] == ["finetune"]
    out = tmp_path / "run"
    status = main(["train", "--spec", str(spec), "--task", "synthetic-sentiment", "--mux", "2", "--sparsity", "0.5",
                   "--out", str(out), "--train-examples", "32"])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == str(folder) and metrics["dtype"] == "bf16" and metrics["throughput"] > 0
    assert [s["name"] for s in metrics["stages"]] == ["finetune", "prune", "post_finetune"]
    model = load_model(out / "model")
    assert model.config.is_compact and model.config.demux_blocks == "residual" and model.config.mux_embed_pass


def test_a_models_table_is_checked_when_the_spec_loads():
    from autoprumux.errors import SpecError
    from autoprumux.spec import spec_from_dict

    with pytest.raises(SpecError, match=r"models.two = 'two' is invalid; expected an integer >= 1"):
        spec_from_dict({"name": "x", "models": {"two": "tiny"}})
    with pytest.raises(SpecError, match=r"models = 'tiny' is invalid"):
        spec_from_dict({"name": "x", "models": "tiny"})
