"""The prune and post-pruning fine-tune stages through the pipeline, and `autoprumux train` errors."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from autoprumux.cli import main
from autoprumux.models import load_model
from autoprumux.prune import measured_sparsity, surviving_structure
from autoprumux.prune.compact import PrunedStructure
from autoprumux.spec import (
    BenchSettings,
    DataSettings,
    FinetuneSettings,
    PostFinetuneSettings,
    PruneSettings,
    TrainingSettings,
    WarmupSettings,
)
from autoprumux.train.pipeline import train_configuration
from autoprumux.train.prune_stage import MASKS_FILE, load_masks


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


SETTINGS = TrainingSettings(
    task="synthetic-sentiment",
    model="tiny",
    data=DataSettings(train_size=48, eval_size=16, max_seq_len=16),
    warmup=WarmupSettings(epochs=0.5, batch_size=8),
    finetune=FinetuneSettings(epochs=1, batch_size=8, learning_rate=1e-3),
    prune=PruneSettings(epochs=1, batch_size=8, reg_learning_rate=0.5, lagrangian_warmup_epochs=0.5),
    post_finetune=PostFinetuneSettings(epochs=1, batch_size=8, distill_pred_weight=0.5),
    bench=BenchSettings(batch_size=2, seq_len=16, warmup=1, repeats=2, threads=1),
)


def test_prune_with_a_teacher_run_writes_the_compacted_model_and_its_masks(tmp_path):
    teacher = tmp_path / "n2s0"
    train_configuration(SETTINGS, mux=2, sparsity=0.0, out_dir=teacher, progress=False)
    run = tmp_path / "n2s05"
    metrics = train_configuration(SETTINGS, mux=2, sparsity=0.5, out_dir=run, teacher_dir=teacher, progress=False)

    assert [s["name"] for s in metrics["stages"]] == ["finetune", "prune", "post_finetune"]
    assert metrics["stages"][0]["reused"] and metrics["stages"][0]["dir"] == str(teacher)
    model = load_model(run / "model")
    assert model.config.is_compact and model.config.mux_width == 2
    assert metrics["sparsity"] == pytest.approx(measured_sparsity(model))
    assert metrics["params"] == model.num_parameters()
    assert metrics["eval_examples"] == 16  # the validation split the accuracy was measured on
    assert metrics["settings"]["prune"]["reg_learning_rate"] == 0.5

    prune_dir = next((run / "stages").glob("prune-*"))
    stage = json.loads((prune_dir / "stage.json").read_text())
    assert stage["budget"] == "1 epochs" and stage["lagrangian_warmup_steps"] == 2  # 0.5 of 3 batches of 8 at N = 2
    assert stage["structure"] == surviving_structure(model)
    assert stage["sparsity"] == pytest.approx(stage["mask_sparsity"])
    assert 0 <= stage["accuracy"] <= 1 and stage["teacher_dir"] == str(teacher)
    masks = load_masks(prune_dir / MASKS_FILE)
    assert PrunedStructure.from_masks(masks).config_fields() == {
        "compact_hidden_size": model.config.compact_hidden_size,
        "compact_heads": model.config.compact_heads,
        "compact_intermediate": model.config.compact_intermediate,
    }


@pytest.mark.parametrize("value", ["1.0", "-0.1"])
def test_sparsity_outside_zero_one_is_a_one_line_error(tmp_path, capsys, value):
    status = main(["train", "--task", "synthetic-sentiment", "--sparsity", value, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err
    assert err.startswith("autoprumux: error:") and value in err and "0 <= s < 1" in err
    assert not (tmp_path / "x").exists()


def test_missing_teacher_directory_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    argv = ["train", "--task", "synthetic-sentiment", "--sparsity", "0.5", "--teacher", str(missing),
            "--out", str(tmp_path / "x")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(missing) in err and "teacher" in err
    assert not (tmp_path / "x").exists()


def test_a_pruning_budget_in_steps_ramps_the_target_over_a_share_of_them(tmp_path):
    settings = dataclasses.replace(
        SETTINGS, prune=dataclasses.replace(SETTINGS.prune, steps=10, lagrangian_warmup_ratio=0.4),
    )
    metrics = train_configuration(settings, mux=1, sparsity=0.5, out_dir=tmp_path / "run", progress=False)
    stage = json.loads((Path(metrics["stages"][1]["dir"]) / "stage.json").read_text())
    assert stage["budget"] == "10 steps" and stage["steps"] == 10 and stage["lagrangian_warmup_steps"] == 4


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_embeddings_keeps_the_embedding_layer_while_pruning(tmp_path, freeze):
    settings = dataclasses.replace(SETTINGS, prune=dataclasses.replace(SETTINGS.prune, freeze_embeddings=freeze))
    metrics = train_configuration(settings, mux=1, sparsity=0.5, out_dir=tmp_path / "run", progress=False)
    finetune_dir, prune_dir = (Path(s["dir"]) for s in metrics["stages"][:2])
    parent = load_model(finetune_dir / "model").bert.embeddings.word_embeddings.weight
    pruned = load_model(prune_dir / "model").bert.embeddings.word_embeddings.weight
    kept = load_masks(prune_dir / MASKS_FILE).hidden > 0
    assert torch.equal(pruned, parent[:, kept]) == freeze


def test_a_reused_cpu_stage_records_its_thread_count_and_a_different_count_is_warned_about(tmp_path, capsys):
    run = tmp_path / "run"
    first = train_configuration(SETTINGS, mux=1, sparsity=0.0, out_dir=run, device="cpu", progress=False)
    stage = json.loads((Path(first["stages"][0]["dir"]) / "stage.json").read_text())
    assert stage["cpu_threads"] == 1
    capsys.readouterr()
    train_configuration(SETTINGS, mux=1, sparsity=0.0, out_dir=run, device="cpu", progress=False)
    assert "warning" not in capsys.readouterr().err  # same thread count: reused silently
    torch.set_num_threads(2)
    again = train_configuration(SETTINGS, mux=1, sparsity=0.0, out_dir=run, device="cpu", progress=False)
    err = capsys.readouterr().err
    assert again["stages"][0]["reused"]
    assert f"stage {again['stages'][0]['key']} is reused from a run on 1 CPU thread(s), this one uses 2" in err


def test_a_pruned_model_does_not_depend_on_what_ran_before_it_in_the_process(tmp_path):
    # A sweep worker trains some stages and reuses others, so the global random state at the
    # start of a prune stage depends on its history; the gates' initial noise must not.
    teacher = tmp_path / "n2s0"
    train_configuration(SETTINGS, mux=2, sparsity=0.0, out_dir=teacher, progress=False)
    logs = []
    for history in (1, 2):
        torch.manual_seed(history)
        torch.rand(history * 100)
        run = tmp_path / f"after{history}"
        metrics = train_configuration(SETTINGS, mux=2, sparsity=0.7, out_dir=run, teacher_dir=teacher, progress=False)
        prune_dir = next((run / "stages").glob("prune-*"))
        logs.append((load_masks(prune_dir / MASKS_FILE), metrics["accuracy"]))
    (first, accuracy), (second, again) = logs
    assert torch.equal(first.hidden, second.hidden) and torch.equal(first.heads, second.heads)
    assert accuracy == again
