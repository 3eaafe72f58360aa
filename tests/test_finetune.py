"""The training loop, accuracy evaluation, retrieval warm-up, the train pipeline and `autoprumux train`."""

import json

import pytest
import torch

from autoprumux import progress
from autoprumux.cli import main
from autoprumux.data import EncodedSplit
from autoprumux.models import MuxBertForSequenceClassification
from autoprumux.train.finetune import evaluate_retrieval
from autoprumux.train.loop import evaluate_accuracy, model_inputs, predict_labels, train_loop
from autoprumux.train.stage_io import epoch_batches, steps_per_epoch

VOCAB = 40  # conftest's tiny config
FIRST_WORD = 5  # ids below are special tokens: [PAD], [UNK], [CLS], [SEP], [MASK]


def random_split(size: int, length: int, seed: int) -> EncodedSplit:
    """Random token sequences `[CLS] w1 .. [SEP]`; label = whether w1 is in the upper half of the vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_WORD, VOCAB, (size, length), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3
    labels = (ids[:, 1] >= (FIRST_WORD + VOCAB) // 2).long()
    return EncodedSplit(ids, torch.ones_like(ids), torch.zeros_like(ids), labels)


def classification_loss(model, batch):
    return model(**model_inputs(batch)).loss, {}


def retrieval_loss(model, batch):
    output = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, retrieval=True)
    return output.retrieval_loss, {}


def fit(model, split, loss_fn, *, epochs, learning_rate=3e-3, **options):
    width = model.config.mux_width
    return train_loop(
        model, epoch_batches(split, width, 32, seed=0), loss_fn, epochs=epochs,
        steps_per_epoch=steps_per_epoch(split, width, 32), learning_rate=learning_rate,
        warmup_ratio=0.1, progress=False, **options,
    )


# -- the loop -----------------------------------------------------------------------------------


def test_train_loop_is_deterministic_and_learns(tiny_model):
    split = random_split(1024, 6, seed=0)
    first, second = tiny_model(num_labels=2), tiny_model(num_labels=2)
    before = evaluate_accuracy(first, split, 1, 64, "cpu")
    result = fit(first, split, classification_loss, epochs=2, evaluate=lambda m: evaluate_accuracy(m, split, 1, 64, "cpu"))
    fit(second, split, classification_loss, epochs=2, evaluate=lambda m: evaluate_accuracy(m, split, 1, 64, "cpu"))
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.steps == 2 * 32
    assert result.best_metric > max(before, 0.9)


def test_fractional_epochs_and_gradient_accumulation_count_steps(tiny_model):
    split = random_split(320, 6, seed=0)  # 10 batches of 32 per epoch at N = 1
    result = fit(tiny_model(num_labels=2), split, classification_loss, epochs=1.5, grad_accum=4)
    assert len(result.history) == 2
    assert result.steps == 4  # 15 batches -> steps after 4, 8, 12 and the last one


def test_a_step_budget_is_a_cap_when_the_metric_reaches_stop_at(tiny_model):
    split = random_split(320, 6, seed=0)  # 10 batches of 32 per epoch at N = 1
    scores = iter([0.5, 0.97, 0.995, 1.0])
    model = tiny_model(num_labels=2)
    result = train_loop(
        model, epoch_batches(split, 1, 32, seed=0), classification_loss, total_batches=35,
        steps_per_epoch=10, learning_rate=1e-3, evaluate=lambda m: next(scores), stop_at=0.99, progress=False,
    )
    assert result.steps == 30 and len(result.history) == 3  # stopped after the third epoch's evaluation
    uncapped = train_loop(
        tiny_model(num_labels=2), epoch_batches(split, 1, 32, seed=0), classification_loss, total_batches=35,
        steps_per_epoch=10, learning_rate=1e-3, progress=False,
    )
    assert uncapped.steps == 35 and len(uncapped.history) == 4  # 3.5 epochs, the last cut short
    board = progress.snapshot()  # what a sweep worker's heartbeat reports to `status`
    assert (board["stage"], board["done"], board["total"]) == ("train", 35, 35) and board["eta_s"] == 0
    with pytest.raises(TypeError, match="exactly one"):
        train_loop(model, epoch_batches(split, 1, 32, seed=0), classification_loss, steps_per_epoch=10,
                   learning_rate=1e-3, progress=False)


def test_keep_best_restores_the_best_epoch(tiny_model):
    split = random_split(64, 6, seed=0)
    scores = iter([0.9, 0.1, 0.2])
    snapshots = []

    def evaluate(model):
        snapshots.append(model.classifier.weight.detach().clone())
        return next(scores)

    model = tiny_model(num_labels=2)
    result = fit(model, split, classification_loss, epochs=3, evaluate=evaluate)
    assert result.best_epoch == 1 and result.best_metric == 0.9
    assert torch.equal(model.classifier.weight, snapshots[0])
    assert not torch.equal(model.classifier.weight, snapshots[-1])


def test_extra_optimizers_and_on_step_are_called(tiny_model):
    model = tiny_model(num_labels=2)
    extra = torch.nn.Parameter(torch.zeros(1))
    states = []

    def loss_fn(model, batch):
        loss, logs = classification_loss(model, batch)
        return loss + (extra - 1.0).pow(2).sum(), logs

    fit(model, random_split(64, 6, 0), loss_fn, epochs=2, extra_optimizers=[torch.optim.SGD([extra], lr=0.1)],
        on_step=states.append)
    assert [s.step for s in states] == [1, 2, 3, 4] and states[-1].total_steps == 4
    assert 0.0 < float(extra.detach()) < 1.0


# -- evaluation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mux_width", [1, 3, 4])
def test_every_example_is_scored_exactly_once(tiny_model, mux_width):
    split = random_split(23, 6, seed=1)  # 23 is no multiple of 3 or 4: the last group has fillers
    model = tiny_model(mux_width=mux_width, num_labels=2)
    predictions = predict_labels(model, split, mux_width, batch_size=2, device="cpu")
    assert predictions.shape == (23,) and (predictions >= 0).all()
    accuracy = evaluate_accuracy(model, split, mux_width, batch_size=2, device="cpu")
    assert accuracy == pytest.approx(float((predictions == split.labels).float().mean()))


# -- multiplexing actually separates instances ---------------------------------------------------


def test_retrieval_warmup_recovers_tokens_for_n2(tiny_model):
    model = tiny_model(mux_width=2, retrieval_head=True, retrieval_ignore_ids=[0, 1, 2, 3, 4])
    train, validation = random_split(2048, 8, seed=0), random_split(200, 8, seed=1)
    chance = evaluate_retrieval(model, validation, 2, 64, "cpu")
    result = fit(model, train, retrieval_loss, epochs=4,
                 evaluate=lambda m: evaluate_retrieval(m, validation, 2, 64, "cpu"))
    assert chance < 0.2
    assert result.best_metric >= 0.9


def test_instances_are_separated_after_training(tiny_model):
    model = tiny_model(mux_width=2, num_labels=2)
    result = fit(model, random_split(2048, 6, seed=0), classification_loss, epochs=10, learning_rate=1e-3,
                 evaluate=lambda m: evaluate_accuracy(m, random_split(256, 6, seed=5), 2, 64, "cpu"))
    assert result.best_metric > 0.9
    batch = random_split(128, 6, seed=2)
    other = random_split(128, 6, seed=3)
    ids = torch.stack([batch.input_ids[:64], batch.input_ids[64:]], dim=1)  # [64, 2, T]
    with torch.no_grad():
        base = model(input_ids=ids).logits.softmax(-1)
        changed_self, changed_other = ids.clone(), ids.clone()
        changed_self[:, 0] = other.input_ids[:64]
        changed_other[:, 1] = other.input_ids[64:]
        effect_self = (model(input_ids=changed_self).logits.softmax(-1) - base)[:, 0].abs().sum(-1).mean()
        effect_other = (model(input_ids=changed_other).logits.softmax(-1) - base)[:, 0].abs().sum(-1).mean()
    print(f"effect of own input {effect_self:.3f}, of the other input {effect_other:.3f}")
    assert effect_self > 0.2
    assert effect_other < 0.25 * effect_self


# -- the pipeline and the command line --------------------------------------------------------------


def run_cli(capsys, *argv):
    status = main(["train", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("mux", ["0", "-1", "x"])
def test_bad_mux_is_a_one_line_error(capsys, tmp_path, mux):
    status, _, err = run_cli(capsys, "--task", "synthetic-sentiment", "--mux", mux, "--out", str(tmp_path / "run"))
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("autoprumux: error:") and "--mux" in err and mux in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flags, named",
    [(["--task", "no-such-task"], "no-such-task"), (["--task", "synthetic-sentiment", "--model", "./no/such/model"], "./no/such/model")],
)
def test_unknown_task_or_model_is_a_one_line_error(capsys, tmp_path, flags, named):
    status, _, err = run_cli(capsys, *flags, "--out", str(tmp_path / "run"))
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("autoprumux: error:") and named in err
    assert not (tmp_path / "run").exists()


def test_train_end_to_end_writes_model_and_metrics(capsys, tmp_path):
    from autoprumux.models import load_model
    from autoprumux.table import COLUMNS

    spec = tmp_path / "small.toml"
    spec.write_text(
        'name = "small"\ntask = "synthetic-sentiment"\nmodel = "tiny"\n'
        "[data]\neval_size = 40\nmax_seq_len = 24\n"
        "[warmup]\nepochs = 1\n[finetune]\nlearning_rate = 1e-3\n"
        "[bench]\nbatch_size = 4\nseq_len = 24\nwarmup = 1\nrepeats = 2\nthreads = 1\n"
    )
    out = tmp_path / "run"
    status, stdout, err = run_cli(
        capsys, "--spec", str(spec), "--task", "synthetic-sentiment", "--mux", "2", "--out", str(out),
        "--epochs", "1", "--train-examples", "96", "--seed", "3",
    )
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(stdout)["accuracy"] == metrics["accuracy"]
    for column in ("task", "model", "mux", "sparsity_target", "sparsity", "accuracy", "params", "device",
                   "seed", "duration_s", "checkpoint", "code_version", "throughput"):
        assert column in metrics and column in COLUMNS
    assert metrics["mux"] == 2 and metrics["seed"] == 3 and metrics["sparsity_target"] == 0.0
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["throughput"] > 0
    assert [s["name"] for s in metrics["stages"]] == ["warmup", "finetune"]
    model = load_model(out / "model")
    assert isinstance(model, MuxBertForSequenceClassification) and model.retrieval_head is None
    assert model.config.mux_width == 2 and metrics["params"] == model.num_parameters()
    # a second run into the same directory reuses both stages
    status, _, _ = run_cli(capsys, "--spec", str(spec), "--task", "synthetic-sentiment", "--mux", "2",
                           "--out", str(out), "--epochs", "1", "--train-examples", "96", "--seed", "3")
    again = json.loads((out / "metrics.json").read_text())
    assert status == 0 and all(s["reused"] for s in again["stages"])
    trained_seconds = again["duration_s"]  # accounting, not timing: reused stages count no training time
    assert trained_seconds == 0


def test_finetune_groups_slow_down_the_multiplexed_head(tiny_model):
    from autoprumux.train.finetune import finetune_param_groups

    model = tiny_model(mux_width=2)
    groups = finetune_param_groups(model, 1e-3, 0.01, head_lr_scale=0.1)
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len(list(model.parameters())) == len({id(p) for p in grouped})
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert rate[id(model.classifier.weight)] == rate[id(model.demultiplexer.keys)] == pytest.approx(1e-4)
    assert rate[id(model.bert.encoder.layer[0].attention.self.query.weight)] == 1e-3
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(model.classifier.weight)] == 0.01 and decay[id(model.classifier.bias)] == 0.0


@pytest.mark.parametrize("mux_width", [1, 2])
def test_trimmed_evaluation_predicts_what_full_length_evaluation_does(tiny_model, mux_width):
    from autoprumux.data import mux_batches

    split = random_split(37, 12, seed=3)
    lengths = torch.randint(3, 9, (len(split),), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(12)[None, :] < lengths[:, None]).long()
    split = EncodedSplit(split.input_ids * mask, mask, split.token_type_ids, split.labels)
    batch = next(iter(mux_batches(split, mux_width, 4, shuffle=False)))
    trimmed = batch.trimmed()
    assert trimmed.input_ids.shape[-1] == int(batch.attention_mask.sum(-1).max()) < 12
    model = tiny_model(mux_width=mux_width, num_labels=2)
    full, cut = model(**model_inputs(batch)).logits, model(**model_inputs(trimmed)).logits
    assert torch.allclose(full, cut, atol=1e-5)
    assert torch.equal(
        predict_labels(model, split, mux_width, 4, "cpu"), predict_labels(model, split, mux_width, 4, "cpu", trim_padding=False)
    )
