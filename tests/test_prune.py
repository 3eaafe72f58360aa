"""CoFi pruning: hard-concrete gates, the sparsity count, gated hooks, Lagrangian, distillation, compaction."""

import math

import pytest
import torch

from autoprumux.models import MuxBertConfig, MuxBertForSequenceClassification, load_model
from autoprumux.prune import (
    GatedModel,
    GateMasks,
    L0Gates,
    LayerDistiller,
    SparsityConstraint,
    attach_gates,
    compact_model,
    expected_size,
    expected_sparsity,
    full_prunable_parameter_count,
    mask_size,
    mask_sparsity,
    measured_prunable_parameters,
    measured_sparsity,
    prediction_distillation_loss,
    surviving_structure,
    target_sparsity_at,
    teacher_layer_indices,
)
from autoprumux.prune.gates import (
    BETA,
    GATE_KINDS,
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    hard_concrete_keep_probability,
    sample_hard_concrete,
)

TINY = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, num_labels=3)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def make_model(mux_width=1, seed=0, **overrides):
    torch.manual_seed(seed)
    config = MuxBertConfig(**{**TINY, "mux_width": mux_width, **overrides})
    return MuxBertForSequenceClassification(config).eval()


def inputs(mux_width, batch=3, length=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, TINY["vocab_size"], (batch, mux_width, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, :, -3:] = 0
    ids[mask == 0] = 0
    types = torch.zeros_like(ids)
    types[..., length // 2 :] = 1
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def random_gates(config, seed=0, *, kill_attention=None, kill_ffn=None):
    """Gates with spread-out log α (some units pruned, soft values in between), optionally whole blocks off."""
    gates = L0Gates.from_config(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in gates.log_alpha.values():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 3 + 1.5)
        if kill_attention is not None:
            gates.log_alpha["attention_layers"][kill_attention] = LOG_ALPHA_MIN
        if kill_ffn is not None:
            gates.log_alpha["ffn_layers"][kill_ffn] = LOG_ALPHA_MIN
    return gates


# -- hard-concrete gates -----------------------------------------------------------------------


def test_keep_probability_matches_sampled_frequency():
    torch.manual_seed(0)
    log_alpha = torch.tensor([-3.0, -1.0, 0.0, 1.5, 4.0])
    draws = sample_hard_concrete(log_alpha.expand(40_000, -1))
    assert draws.min() >= 0 and draws.max() <= 1
    assert torch.allclose((draws > 0).float().mean(0), hard_concrete_keep_probability(log_alpha), atol=0.01)


def test_gates_start_on_and_ffn_dims_at_the_drop_rate():
    gates = L0Gates(2, 4, 64, 32, droprate_init=0.3)
    assert torch.allclose(gates.log_alpha["ffn_dims"].mean(), torch.tensor(math.log(0.7 / 0.3)), atol=0.01)
    for kind in ("heads", "attention_layers", "ffn_layers", "hidden"):
        assert gates.log_alpha[kind].min() > 9
    gates.clamp_()
    assert all(p.max() <= LOG_ALPHA_MAX + 1e-6 and p.min() >= LOG_ALPHA_MIN - 1e-6 for p in gates.log_alpha.values())


def test_deterministic_masks_zero_the_expected_number_of_lowest_scores():
    gates = random_gates(MuxBertConfig(**TINY), seed=3)
    masks = gates.deterministic()
    probability = gates.keep_probability().detach()
    for kind in ("ffn_dims", "heads"):
        for layer in range(2):
            log_alpha = gates.log_alpha[kind][layer].detach()
            values = getattr(masks, kind)[layer]
            zeros = round(float((1 - getattr(probability, kind)[layer]).sum()))
            assert int((values == 0).sum()) == zeros
            kept = values > 0
            if zeros and kept.any():
                assert log_alpha[~kept].max() <= log_alpha[kept].min()
            assert torch.allclose(values[kept], torch.sigmoid(log_alpha[kept] / BETA * 0.8))
    hidden_zeros = round(float((1 - probability.hidden).sum()))
    assert int((masks.hidden == 0).sum()) == hidden_zeros
    # whole-layer gates are groups of one: a layer stays when P(z > 0) >= 1/2
    alive = probability.attention_layers.detach() >= 0.5
    assert torch.equal(masks.attention_layers > 0, alive & (masks.heads > 0).any(-1))


def test_sampling_in_training_and_deterministic_in_eval():
    model = make_model()
    with GatedModel(model, L0Gates.from_config(model.config)) as gated:
        model.train()
        torch.manual_seed(0)
        model(**inputs(1))
        first = gated.masks.ffn_dims.clone()
        model(**inputs(1))
        assert not torch.equal(first, gated.masks.ffn_dims)
        assert first.requires_grad
        model.eval()
        model(**inputs(1))
        a = gated.masks.ffn_dims.clone()
        model(**inputs(1))
        assert torch.equal(a, gated.masks.ffn_dims)


# -- the sparsity count ------------------------------------------------------------------------


def test_expected_size_is_the_cofi_formula():
    config = MuxBertConfig(**TINY)
    gates = random_gates(config, seed=1)
    p = gates.keep_probability().detach()
    d_h = config.hidden_size // config.num_attention_heads
    hidden = float(p.hidden.sum())
    by_hand = 0.0
    for layer in range(config.num_hidden_layers):
        by_hand += float(p.attention_layers[layer] * p.heads[layer].sum()) * 4 * d_h * hidden
        by_hand += float(p.ffn_layers[layer] * p.ffn_dims[layer].sum()) * 2 * hidden
    assert float(expected_size(gates).detach()) == pytest.approx(by_hand, rel=1e-5)
    full = config.num_hidden_layers * (4 * 32 * 32 + 2 * 32 * 64)
    assert full_prunable_parameter_count(config) == full
    assert float(expected_sparsity(gates).detach()) == pytest.approx(1 - by_hand / full, rel=1e-5)
    # gates that start "on" give (almost) no sparsity, apart from the FFN-dims' initial drop rate
    fresh = L0Gates.from_config(config, droprate_init=1e-4)
    assert float(expected_sparsity(fresh).detach()) < 1e-3


# -- gates on the model ------------------------------------------------------------------------


def test_gated_model_with_unit_masks_is_the_plain_model_and_detach_restores_it():
    model = make_model(mux_width=2)
    reference = model(**inputs(2)).logits
    reference_states = model(**inputs(2), output_hidden_states=True).hidden_states[-1]
    keys = list(model.state_dict())
    gated = attach_gates(model)
    assert list(model.state_dict()) == keys  # gated LayerNorms keep the parameter names
    gated.fixed_masks = GateMasks(
        heads=torch.ones(2, 4), attention_layers=torch.ones(2), ffn_dims=torch.ones(2, 64),
        ffn_layers=torch.ones(2), hidden=torch.ones(32),
    )
    assert torch.allclose(model(**inputs(2)).logits, reference, atol=1e-6)
    gated.fixed_masks = None
    states = model(**inputs(2), output_hidden_states=True).hidden_states[-1]
    assert not torch.allclose(states, reference_states, atol=1e-2)  # the FFN dims' soft masks act
    gated.detach()
    assert torch.equal(model(**inputs(2)).logits, reference)
    assert type(model.bert.embeddings.LayerNorm) is torch.nn.LayerNorm


def test_pruned_hidden_dims_are_zero_in_every_layer_output():
    model = make_model()
    gates = random_gates(model.config, seed=2)
    with GatedModel(model, gates) as gated:
        states = model(**inputs(1), output_hidden_states=True).hidden_states
        pruned = gated.masks.hidden == 0
    assert pruned.any()
    assert all(torch.all(h[..., pruned] == 0) for h in states)


# -- compaction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mux_width", "demultiplexer", "readout"),
    [(1, "index_pos", "cls"), (2, "index_pos", "cls"), (2, "index", "cls"), (2, "mlp", "cls"),
     (3, "index_pos", "instance_mean"), (2, "index", "instance_mean"), (2, "mlp", "instance_mean")],
)
def test_compacted_model_computes_the_gated_models_logits(mux_width, demultiplexer, readout):
    model = make_model(mux_width, demultiplexer=demultiplexer, readout=readout)
    gates = random_gates(model.config, seed=5, kill_attention=1, kill_ffn=0)
    with GatedModel(model, gates) as gated:
        reference = model(**inputs(mux_width)).logits
        masks = gated.masks
    compacted = compact_model(model, gates)
    config = compacted.config
    assert config.compact_heads[1] == 0 and config.compact_intermediate[0] == 0  # whole blocks went
    assert config.compact_hidden_size < 32  # and hidden dims
    assert torch.allclose(compacted(**inputs(mux_width)).logits, reference, atol=1e-4)
    # the parameter count of the actual weights is the CoFi formula at the final masks
    assert compacted.prunable_parameter_count() == measured_prunable_parameters(compacted)
    assert compacted.prunable_parameter_count() == mask_size(masks, config.head_size)
    assert measured_sparsity(compacted) == pytest.approx(mask_sparsity(masks, gates))
    assert compacted.num_parameters() < model.num_parameters()
    assert model.config.compact_heads is None  # the source model is untouched


def test_a_muxplm_shaped_model_compacts_to_what_its_gated_form_computes():
    """MUX-PLM's forward: residual demux blocks, the mixture through the embeddings again, padding attended."""
    model = make_model(2, demux_blocks="residual", mux_embed_pass=True, mux_mask_padding=False, mux_pooler=False)
    gates = random_gates(model.config, seed=6, kill_attention=0, kill_ffn=1)
    with GatedModel(model, gates):
        reference = model(**inputs(2)).logits
    compacted = compact_model(model, gates)
    assert compacted.config.compact_hidden_size < 32 and compacted.config.demux_blocks == "residual"
    assert torch.allclose(compacted(**inputs(2)).logits, reference, atol=1e-4)


def test_compacted_model_saves_and_loads(tmp_path):
    model = make_model(2)
    compacted = compact_model(model, random_gates(model.config, seed=7, kill_ffn=1))
    compacted.save_pretrained(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert loaded.config.compact_heads == compacted.config.compact_heads
    assert loaded.config.compact_intermediate == compacted.config.compact_intermediate
    assert loaded.config.compact_hidden_size == compacted.config.compact_hidden_size
    assert all(torch.equal(v, compacted.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert torch.allclose(loaded(**inputs(2)).logits, compacted(**inputs(2)).logits, atol=1e-6)
    assert surviving_structure(loaded) == surviving_structure(compacted)
    assert surviving_structure(loaded)["skipped_ffn_layers"] == [1]


def _drive_gates_to(config, target, seed):
    """Converged gates: log α = 20·(r - θ) for random unit scores r, θ set so the masks meet `target`.

    This is the state the mask-aware Lagrangian settles in (the masks' sparsity at the target);
    the masks then come from the gates' own deterministic rule.
    """
    gates = L0Gates.from_config(config)
    generator = torch.Generator().manual_seed(seed)
    scores = {k: torch.rand(p.shape, generator=generator) for k, p in gates.log_alpha.items()}
    for kind in ("attention_layers", "ffn_layers"):
        scores[kind] = scores[kind] * 0 + 2  # whole layers stay; finer units carry the target

    def set_threshold(theta):
        with torch.no_grad():
            for kind in GATE_KINDS:
                gates.log_alpha[kind].copy_(20 * (scores[kind] - theta))
            gates.clamp_()
        return mask_sparsity(gates.deterministic(), gates)

    low, high = -1.0, 2.0
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if set_threshold(middle) < target else (low, middle)
    best = min((low, high), key=lambda theta: abs(set_threshold(theta) - target))
    set_threshold(best)
    return gates


@pytest.mark.parametrize("target", [0.5, 0.7, 0.9, 0.95])
def test_compacted_model_meets_the_target_sparsity(target):
    # 8 heads of size 4: one head is 3% of the prunable weights, so every target is reachable
    model = make_model(num_attention_heads=8)
    gates = _drive_gates_to(model.config, target, seed=int(target * 100))
    compacted = compact_model(model, gates)
    assert measured_sparsity(compacted) == pytest.approx(target, abs=0.02)
    dense = model.prunable_parameter_count()
    assert measured_sparsity(compacted) == pytest.approx(1 - compacted.prunable_parameter_count() / dense)


# -- Lagrangian --------------------------------------------------------------------------------


def test_target_warms_up_linearly_then_stays():
    assert [target_sparsity_at(s, 4, 0.8) for s in (0, 1, 2, 4, 10)] == pytest.approx([0, 0.2, 0.4, 0.8, 0.8])
    assert target_sparsity_at(0, 0, 0.5) == 0.5


def test_lagrangian_pushes_the_gates_towards_the_target():
    torch.manual_seed(0)
    gates = L0Gates(2, 4, 64, 32)
    constraint = SparsityConstraint(gates, 0.6, warmup_steps=50, learning_rate=0.1)
    start = float(expected_sparsity(gates).detach())
    lambdas = []
    for _ in range(250):
        loss, logs = constraint.loss()
        loss.backward()
        constraint.optimizer.step()
        constraint.optimizer.zero_grad()
        constraint.after_step()
        lambdas.append(logs["lambda_1"])
    assert start < 0.1
    assert min(lambdas) < 0  # gradient ascent: under the target, λ1 turns negative
    assert float(expected_sparsity(gates).detach()) == pytest.approx(constraint.aimed_target(), abs=0.1)
    assert mask_sparsity(gates.deterministic(), gates) == pytest.approx(0.6, abs=0.1)
    assert all(p.max() <= LOG_ALPHA_MAX + 1e-6 for p in gates.log_alpha.values())


# -- distillation ------------------------------------------------------------------------------


def test_prediction_distillation_is_temperature_scaled_kl_over_valid_slots():
    student = torch.randn(3, 2, 4)
    assert float(prediction_distillation_loss(student, student.clone(), 2.0)) == pytest.approx(0.0, abs=1e-6)
    teacher = torch.randn(3, 2, 4)
    loss = prediction_distillation_loss(student, teacher, 2.0)
    p = torch.softmax(teacher / 2, -1)
    by_hand = (p * (p.log() - torch.log_softmax(student / 2, -1))).sum(-1).mean() * 4
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)
    valid = torch.tensor([[True, False]] * 3)
    teacher_invalid = teacher.clone()
    teacher_invalid[:, 1] = 100.0  # wild values in filler slots do not count
    assert float(prediction_distillation_loss(student, teacher_invalid, 2.0, valid)) == pytest.approx(
        float(prediction_distillation_loss(student[:, :1], teacher[:, :1], 2.0)), rel=1e-5
    )


def test_layer_distiller_matches_surviving_layers_in_increasing_order():
    assert teacher_layer_indices(12) == [3, 6, 9, 12]
    assert teacher_layer_indices(2) == [1, 2]
    torch.manual_seed(0)
    teacher = [torch.randn(2, 5, 8) for _ in range(5)]  # embeddings + 4 layers
    distiller = LayerDistiller(8, [2, 4])
    student = [torch.randn(2, 5, 8) for _ in range(5)]
    student[1], student[3] = teacher[2].clone(), teacher[4].clone()
    loss, matches = distiller(student, teacher)
    assert matches == [1, 3] and float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    # a dead student layer is never matched; the order constraint holds
    _, matches = distiller(student, teacher, surviving=[True, False, True, True])
    assert 2 not in matches and matches == sorted(matches) and len(set(matches)) == len(matches)
