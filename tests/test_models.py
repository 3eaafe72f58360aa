"""Multiplexers, demultiplexers and MuxBertForSequenceClassification on tiny configs."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from autoprumux.models import (
    Multiplexer,
    MuxBertForSequenceClassification,
    build_compact_skeleton,
    build_demultiplexer,
    build_model,
    load_model,
    slot_vectors,
)
from autoprumux.spec import MuxSettings

B, T = 3, 10
VOCAB, D, LAYERS, LABELS = 40, 32, 2, 3  # the sizes of conftest's tiny config


@pytest.fixture(autouse=True)
def _sizes_match_the_tiny_config(tiny_config):
    config = tiny_config()
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers, config.num_labels) == (VOCAB, D, LAYERS, LABELS)


def inputs(mux_width, batch=B, length=T, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch, mux_width, length), generator=generator)
    ids[..., 0] = 2  # [CLS]
    mask = torch.ones_like(ids)
    mask[0, :, length - 3 :] = 0  # some padding
    ids[mask == 0] = 0
    types = torch.zeros_like(ids)
    types[..., length // 2 :] = 1
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


@pytest.mark.parametrize("demultiplexer", ["index_pos", "index", "mlp"])
@pytest.mark.parametrize("mux_width", [1, 2, 5, 10])
def test_shapes_for_every_width_and_demultiplexer(tiny_model, mux_width, demultiplexer):
    model = tiny_model(mux_width=mux_width, demultiplexer=demultiplexer)
    labels = torch.randint(0, LABELS, (B, mux_width))
    out = model(**inputs(mux_width), labels=labels, output_hidden_states=True)
    assert out.logits.shape == (B, mux_width, LABELS)
    assert torch.isfinite(out.loss)
    prefix = mux_width if mux_width > 1 and demultiplexer == "index" else 0
    assert len(out.hidden_states) == LAYERS + 1
    assert all(h.shape == (B, T + prefix, D) for h in out.hidden_states)
    assert (model.multiplexer is None) == (mux_width == 1) == (model.demultiplexer is None)


@pytest.mark.parametrize("demultiplexer", ["index_pos", "mlp"])
def test_instance_mean_readout_is_permutation_equivariant(tiny_model, demultiplexer):
    # Slots carry their own vectors and keys, so permuting the inputs together with the slot
    # parameters must permute the outputs. (`index` keys are tied to prefix positions, which carry
    # position embeddings, so it has no such symmetry.)
    width = 4
    model = tiny_model(mux_width=width, demultiplexer=demultiplexer, readout="instance_mean")
    batch = inputs(width)
    batch["attention_mask"][1, 2, 5:] = 0  # instances of different lengths
    batch["input_ids"][batch["attention_mask"] == 0] = 0
    logits = model(**batch).logits
    assert logits.shape == (B, width, LABELS)
    order = torch.tensor([2, 0, 3, 1])
    permuted = {k: v[:, order] for k, v in batch.items()}
    with torch.no_grad():
        model.multiplexer.vectors.copy_(model.multiplexer.vectors[order])
        if demultiplexer == "index_pos":
            model.demultiplexer.keys.copy_(model.demultiplexer.keys[order])
        else:
            model.demultiplexer.firsts = torch.nn.ModuleList(model.demultiplexer.firsts[i] for i in order)
            model.demultiplexer.tails = torch.nn.ModuleList(model.demultiplexer.tails[i] for i in order)
    assert torch.allclose(model(**permuted).logits, logits[:, order], atol=1e-5)


def test_instance_mean_readout_reads_every_real_token_and_no_padding(tiny_model):
    model = tiny_model(mux_width=2, readout="instance_mean")
    cls_model = tiny_model(mux_width=2, readout="cls")
    batch = inputs(2)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["input_ids"][1, 1, 4] = 7 if batch["input_ids"][1, 1, 4] != 7 else 8  # a later real token
    padded = {k: v.clone() for k, v in batch.items()}
    padded["input_ids"][0, 0, -1] = 9  # under the padding mask
    assert not torch.allclose(model(**changed).logits[1, 1], model(**batch).logits[1, 1])
    assert torch.allclose(model(**padded).logits, model(**batch).logits, atol=1e-6)
    assert model.config.readout == "instance_mean" and cls_model.config.readout == "cls"


def test_instance_mean_readout_flops_count_the_demultiplexer_at_every_position(tiny_model):
    from autoprumux.bench import count_flops

    cls_flops = count_flops(tiny_model(mux_width=2, readout="cls"), T)
    mean_flops = count_flops(tiny_model(mux_width=2, readout="instance_mean"), T)
    # Each extra position costs the first layer's state part once (D x D) and the 2 tail blocks
    # (D x D each) once per instance; FLOPs are per example, so per sequence / N.
    width = 2
    per_position = 2.0 * (D * D + width * 2 * D * D)
    assert mean_flops - cls_flops == pytest.approx(per_position * (T - 1) / width, rel=1e-6)


def test_n1_equals_bert_for_sequence_classification(tiny_model):
    model = tiny_model(mux_width=1)
    bert_config = BertConfig(**{k: v for k, v in model.config.to_dict().items() if k in BertConfig.__dataclass_fields__})
    reference = BertForSequenceClassification(bert_config).eval()
    assert type(reference.config) is BertConfig and reference.config.num_labels == LABELS
    assert not reference.load_state_dict(model.state_dict(), strict=False).missing_keys
    batch = inputs(1)
    ours = model(**batch).logits[:, 0]
    theirs = reference(**{k: v[:, 0] for k, v in batch.items()}).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    # [B, T] inputs are accepted at N = 1 and give the same logits
    assert torch.allclose(model(**{k: v[:, 0] for k, v in batch.items()}).logits[:, 0], theirs, atol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(mux_width=2),
        dict(mux_width=3, multiplexer="learned", demultiplexer="index"),
        dict(mux_width=2, multiplexer="binary_hadamard", demultiplexer="mlp"),
    ],
)
def test_save_load_round_trip_gives_identical_logits(tiny_model, tmp_path, overrides):
    model = tiny_model(**overrides)
    batch = inputs(overrides["mux_width"])
    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path).eval()
    assert loaded.config.mux_width == overrides["mux_width"]
    assert torch.equal(loaded.multiplexer.vectors, model.multiplexer.vectors)
    # from_pretrained's memory layout may change float rounding, never more
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mux_width, demultiplexer", [(1, "index_pos"), (2, "index_pos"), (3, "index"), (2, "mlp")])
def test_compacted_config_builds_runs_and_round_trips(tiny_config, tmp_path, mux_width, demultiplexer):
    config = tiny_config(
        mux_width=mux_width, demultiplexer=demultiplexer,
        compact_heads=[2, 0], compact_intermediate=[0, 16], compact_hidden_size=24,
    )
    torch.manual_seed(0)
    model = build_compact_skeleton(config).eval()
    layer0, layer1 = model.bert.encoder.layer
    assert layer0.attention.self.query.weight.shape == (2 * 8, 24)
    assert layer0.attention.output.dense.weight.shape == (24, 2 * 8)
    assert not hasattr(layer1.attention, "self") and not hasattr(layer0.intermediate, "dense")
    assert layer1.intermediate.dense.weight.shape == (16, 24)
    assert model.bert.embeddings.word_embeddings.weight.shape == (VOCAB, 24)
    # Q, K, V of 2 heads (3 x 16 x 24) + O (16 x 24) in layer 0, FFN in/out (2 x 16 x 24) in layer 1
    assert model.prunable_parameter_count() == 4 * 16 * 24 + 2 * 16 * 24
    batch = inputs(mux_width)
    logits = model(**batch).logits
    assert logits.shape == (B, mux_width, LABELS)
    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path).eval()
    assert loaded.config.compact_heads == [2, 0]
    torch.testing.assert_close(loaded(**batch).logits, logits, rtol=0, atol=1e-6)


def test_skipped_blocks_add_nothing_but_their_layernorm(tiny_config):
    config = tiny_config(compact_heads=[0, 0], compact_intermediate=[0, 0])
    model = build_compact_skeleton(config).eval()
    x = torch.randn(2, 5, D)
    layer = model.bert.encoder.layer[0]
    expected = layer.output.LayerNorm(layer.attention.output.LayerNorm(x))
    assert torch.allclose(layer(x, None), expected)


def test_slot_vectors_are_reproducible_and_rms_normalised():
    a = slot_vectors("gaussian_hadamard", 4, 64, norm=1.0, seed=0)
    assert torch.equal(a, slot_vectors("gaussian_hadamard", 4, 64, norm=1.0, seed=0))
    assert not torch.equal(a, slot_vectors("gaussian_hadamard", 4, 64, norm=1.0, seed=1))
    assert torch.allclose(a.pow(2).mean(dim=-1).sqrt(), torch.ones(4))
    signs = slot_vectors("binary_hadamard", 3, 16, norm=2.0, seed=0)
    assert set(signs.unique().tolist()) == {-2.0, 2.0}


def test_fixed_vectors_are_buffers_and_learned_ones_parameters():
    fixed = Multiplexer("gaussian_hadamard", 2, 8)
    learned = Multiplexer("learned", 2, 8)
    assert "vectors" in dict(fixed.named_buffers()) and not list(fixed.parameters())
    assert torch.equal(dict(learned.named_parameters())["vectors"], fixed.vectors)


def test_multiplexer_is_the_mean_of_slot_products():
    mux = Multiplexer("gaussian_hadamard", 3, 8)
    e = torch.randn(2, 3, 5, 8)
    expected = sum(e[:, i] * mux.vectors[i] for i in range(3)) / 3
    assert torch.allclose(mux(e), expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["index_pos", "index", "mlp"])
def test_prune_hidden_matches_zeroed_dimensions(kind):
    torch.manual_seed(0)
    width, d, keep = 3, 16, torch.tensor([0, 2, 3, 7, 8, 11, 15])
    demux = build_demultiplexer(kind, width, d, d, layers=2).eval()
    mux = Multiplexer("gaussian_hadamard", width, d)
    hidden = torch.randn(2, width + 6, d)
    dropped = torch.ones(d, dtype=torch.bool)
    dropped[keep] = False
    hidden[..., dropped] = 0.0
    instance = torch.randint(0, width, (2, 6 if kind == "index" else width + 6))
    before = demux(hidden), demux(hidden, instance=instance)
    embedded = torch.randn(2, width, 4, d)
    mixed = mux(embedded)[..., keep]
    demux.prune_hidden(keep)
    mux.prune_hidden(keep)
    after = demux(hidden[..., keep]), demux(hidden[..., keep], instance=instance)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(before, after, strict=True))
    assert torch.allclose(mux(embedded[..., keep]), mixed, atol=1e-6)
    if kind == "index":
        assert demux.prefix_embeddings().shape == (width, width, len(keep))


def test_loss_ignores_invalid_slots(tiny_model):
    model = tiny_model(mux_width=2)
    batch = inputs(2)
    labels = torch.zeros(B, 2, dtype=torch.long)
    valid = torch.ones(B, 2, dtype=torch.bool)
    valid[-1, 1] = False
    changed = labels.clone()
    changed[-1, 1] = 2
    assert torch.equal(model(**batch, labels=labels, valid=valid).loss, model(**batch, labels=changed, valid=valid).loss)
    assert not torch.equal(model(**batch, labels=labels).loss, model(**batch, labels=changed).loss)


def test_retrieval_scores_only_real_tokens(tiny_model):
    model = tiny_model(mux_width=2, retrieval_head=True, retrieval_ignore_ids=[0, 2])
    batch = inputs(2)
    out = model(**batch, retrieval=True)
    assert out.retrieval_logits.shape == (out.retrieval_labels.numel(), VOCAB)
    assert not torch.isin(out.retrieval_labels, torch.tensor([0, 2])).any()
    # every position but [CLS], minus padding of the instance chosen there
    assert B * (T - 1) - 3 * 2 <= out.retrieval_labels.numel() <= B * (T - 1)
    assert torch.isfinite(out.retrieval_loss)
    nothing = model(**batch, retrieval=True, retrieval_fraction=0.0)
    assert nothing.retrieval_labels.numel() == 0 and nothing.retrieval_loss == 0
    half = model(**batch, retrieval=True, retrieval_fraction=0.5).retrieval_labels.numel()
    assert 0 < half < out.retrieval_labels.numel()
    model.drop_retrieval_head()
    with pytest.raises(ValueError):
        model(**batch, retrieval=True)


def test_build_from_pretrained_minilm_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, BertModel

    from autoprumux.models.presets import minilm_path

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = build_model("minilm", tokenizer, 2, MuxSettings(), num_labels=2).eval()
    reference = BertModel.from_pretrained(path)
    assert torch.equal(model.bert.encoder.layer[5].output.dense.weight, reference.encoder.layer[5].output.dense.weight)
    assert model.config.mux_width == 2 and model.config.hidden_size == 384
    encoded = tokenizer(["a fine day", "not a fine day"], padding="max_length", max_length=8, return_tensors="pt")
    out = model(input_ids=encoded["input_ids"][None], attention_mask=encoded["attention_mask"][None])
    assert out.logits.shape == (1, 2, 2)


def test_from_scratch_preset_uses_the_tokenizer_vocabulary():
    from autoprumux.data import build_tokenizer, load_task

    task = load_task("synthetic-sentiment", seed=0, train_size=50, eval_size=10)
    tokenizer = build_tokenizer("tiny", task.train)
    model = build_model("tiny", tokenizer, 4, MuxSettings(demultiplexer="mlp"), num_labels=2, retrieval_head=True)
    assert isinstance(model, MuxBertForSequenceClassification)
    assert model.config.vocab_size == len(tokenizer)
    assert model.retrieval_head is not None and model.config.demultiplexer == "mlp"
    assert set(model.config.retrieval_ignore_ids) == set(tokenizer.all_special_ids)


def test_too_long_sequences_for_the_index_prefix_are_a_model_error():
    from autoprumux.data import build_tokenizer, load_task
    from autoprumux.errors import ModelError

    task = load_task("synthetic-sentiment", seed=0, train_size=20, eval_size=10)
    tokenizer = build_tokenizer("tiny", task.train)
    with pytest.raises(ModelError, match="max_seq_len"):
        build_model("tiny", tokenizer, 10, MuxSettings(demultiplexer="index"), num_labels=2, max_positions=125)


@pytest.mark.parametrize("pooler", [True, False])
def test_the_pooler_at_n_above_1_is_a_setting_saved_in_the_config(tmp_path, pooler):
    from autoprumux.models import MuxBertConfig, MuxBertForSequenceClassification, load_model

    torch.manual_seed(0)
    config = MuxBertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=16, mux_width=2, mux_pooler=pooler, readout="instance_mean")
    model = MuxBertForSequenceClassification(config).eval()
    ids = torch.randint(5, 40, (3, 2, 7))
    before = model(input_ids=ids).logits
    with torch.no_grad():
        model.bert.pooler.dense.weight.mul_(2.0)
    assert torch.allclose(model(input_ids=ids).logits, before) != pooler  # the pooler matters iff it is on
    model.save_pretrained(tmp_path / "m")
    assert load_model(tmp_path / "m").config.mux_pooler == pooler
