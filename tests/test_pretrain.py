"""Multiplexed pre-training: the corruption, the stage's key (shared across tasks) and its reuse."""

import dataclasses
import shutil

import pytest
import torch

from autoprumux.errors import SpecError
from autoprumux.models import load_model
from autoprumux.spec import (
    BenchSettings,
    DataSettings,
    FinetuneSettings,
    PretrainSettings,
    TrainingSettings,
    load_spec,
)
from autoprumux.sweep import format_plan, plan_sweep
from autoprumux.sweep.store import StageStore
from autoprumux.train.pipeline import train_configuration
from autoprumux.train.plan import stage_chain
from autoprumux.train.pretrain import mask_tokens, read_corpus

SPECIAL = [0, 1, 2, 3, 4]  # [PAD], [UNK], [CLS], [SEP], [MASK] of the word tokenizer


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_mask_tokens_corrupts_only_real_words_the_bert_way():
    torch.manual_seed(0)
    ids = torch.randint(5, 50, (64, 4, 32))
    ids[..., 0], ids[..., 20] = 2, 3  # [CLS] ... [SEP]
    mask = torch.ones_like(ids)
    mask[..., 21:] = 0
    ids[..., 21:] = 0
    corrupted, chosen = mask_tokens(ids, mask, probability=0.15, mask_id=4, vocab_size=50, special_ids=SPECIAL)
    assert not chosen[..., 0].any() and not chosen[..., 20:].any()  # specials and padding stay
    assert torch.equal(corrupted[~chosen], ids[~chosen])
    share = chosen[..., 1:20].float().mean().item()
    assert 0.12 < share < 0.18
    masked = (corrupted[chosen] == 4).float().mean().item()
    kept = (corrupted[chosen] == ids[chosen]).float().mean().item()
    assert 0.75 < masked < 0.85 and 0.06 < kept < 0.16


def _spec(tmp_path, task, corpus, name):
    text = (
        f'name = "{name}"\ntask = "{task}"\nmodel = "tiny"\n[grid]\nmux = [2]\nsparsity = [0.5]\n'
        f'[pretrain]\nsteps = 50\nretrieval_target = 0.9\n' + (f'corpus = "{corpus}"\n' if corpus else "")
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_spec(path)


def test_a_named_corpus_gives_two_tasks_one_pretraining_stage(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the film was good\nthe plot was bad\n")
    a = plan_sweep(_spec(tmp_path, "synthetic-sentiment", corpus, "a"))
    b = plan_sweep(_spec(tmp_path, "synthetic-pairs", corpus, "b"))
    pre_a = {k for k, s in a.unique_stages.items() if s.name == "pretrain"}
    pre_b = {k for k, s in b.unique_stages.items() if s.name == "pretrain"}
    assert len(pre_a) == 2 and pre_a == pre_b  # one per N (1 and 2), the same for both tasks
    fine_a = {k for k, s in a.unique_stages.items() if s.name == "finetune"}
    fine_b = {k for k, s in b.unique_stages.items() if s.name == "finetune"}
    assert not fine_a & fine_b  # the task's own stages differ
    assert not any(s.name == "warmup" for s in a.unique_stages.values())  # pre-training replaces it
    assert "pretrain       50 steps at most, stopping at retrieval accuracy 0.9 (N > 1)" in format_plan(a)
    # the corpus is keyed by content: editing it changes the key
    corpus.write_text("the film was good\nthe plot was dull\n")
    changed = {k for k, s in plan_sweep(_spec(tmp_path, "synthetic-sentiment", corpus, "c")).unique_stages.items()
               if s.name == "pretrain"}
    assert changed.isdisjoint(pre_a)
    # without a corpus, each task pre-trains on its own texts
    own_a = {k for k, s in plan_sweep(_spec(tmp_path, "synthetic-sentiment", None, "d")).unique_stages.items()
             if s.name == "pretrain"}
    own_b = {k for k, s in plan_sweep(_spec(tmp_path, "synthetic-pairs", None, "e")).unique_stages.items()
             if s.name == "pretrain"}
    assert own_a.isdisjoint(own_b)


def test_a_missing_corpus_or_an_empty_one_is_a_clear_error(tmp_path):
    with pytest.raises(SpecError) as info:
        _spec(tmp_path, "synthetic-sentiment", tmp_path / "nope.txt", "x")
    assert "pretrain.corpus" in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "one.txt").write_text("only one line\n\n")
    with pytest.raises(Exception, match="at least 2 texts"):
        read_corpus(tmp_path / "one.txt")


def test_the_pretraining_stage_is_built_once_and_reused_by_a_second_task(tmp_path):
    corpus = tmp_path / "texts"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n".join(f"the film was {w} and the plot was {v}" for w in ("good", "bad", "dull", "fine")
                                            for v in ("long", "short", "great")) + "\n")
    settings = TrainingSettings(
        task="synthetic-sentiment", model="tiny",
        data=DataSettings(train_size=32, eval_size=16, max_seq_len=16),
        pretrain=PretrainSettings(steps=6, batch_size=4, corpus=str(corpus), retrieval_target=0.99),
        finetune=FinetuneSettings(steps=3, batch_size=8, learning_rate=1e-3, retrieval_loss_coeff=0.1),
        bench=BenchSettings(batch_size=2, seq_len=16, warmup=1, repeats=2, threads=1),
    )
    store = StageStore(tmp_path / "stages")
    first = train_configuration(settings, 2, 0.0, tmp_path / "sentiment", store=store, progress=False)
    pairs = dataclasses.replace(settings, task="synthetic-pairs")
    second = train_configuration(pairs, 2, 0.0, tmp_path / "pairs", store=store, progress=False)
    assert [s["name"] for s in first["stages"]] == ["pretrain", "finetune"]
    assert not first["stages"][0]["reused"] and second["stages"][0]["reused"]
    assert first["stages"][0]["key"] == second["stages"][0]["key"] == stage_chain(pairs, 2, 0.0)[0].key
    assert store.built == 3 and store.reused == 1  # pretrain + two fine-tunes built, pretrain reused once
    pre = first["stages"][0]["metrics"]
    assert pre["steps"] <= 6 and pre["examples_seen"] == pre["steps"] * 4 * 2
    assert 0.0 <= pre["masked_accuracy"] <= 1.0 and pre["corpus_texts"] == 11  # 12 texts, 1 held out
    assert first["retrieval_accuracy"] == pre["retrieval_accuracy"]  # the table's column
    model = load_model(tmp_path / "pairs" / "model")
    assert model.retrieval_head is None and model.config.num_labels == 2
    assert model.config.id2label != load_model(tmp_path / "sentiment" / "model").config.id2label


def test_pretraining_runs_at_n1_too_so_the_baseline_gets_it(tmp_path):
    settings = TrainingSettings(
        task="synthetic-sentiment", model="tiny", data=DataSettings(train_size=32, eval_size=16, max_seq_len=16),
        pretrain=PretrainSettings(steps=4, batch_size=8),
        finetune=FinetuneSettings(steps=2, batch_size=8),
        bench=BenchSettings(batch_size=2, seq_len=16, warmup=1, repeats=2, threads=1),
    )
    metrics = train_configuration(settings, 1, 0.0, tmp_path / "n1", progress=False)
    assert [s["name"] for s in metrics["stages"]] == ["pretrain", "finetune"]
    assert metrics["stages"][0]["metrics"]["steps"] == 4  # no retrieval target at N = 1: the budget runs
    assert metrics["retrieval_accuracy"] is None  # copying at N = 1 is not retrieval
    assert load_model(tmp_path / "n1" / "model").retrieval_head is None


def test_a_fine_tune_after_a_reused_pretraining_does_not_depend_on_what_ran_before_it(tmp_path):
    # The fine-tune draws a new classifier and retrieval head before its loop seeds. The first run
    # trains the pretraining in this process; the second reuses it from disk, after another
    # history of the global random state, and retrains only the fine-tune.
    settings = TrainingSettings(
        task="synthetic-sentiment", model="tiny", data=DataSettings(train_size=32, eval_size=16, max_seq_len=16),
        pretrain=PretrainSettings(steps=4, batch_size=8),
        finetune=FinetuneSettings(steps=2, batch_size=8, retrieval_loss_coeff=0.1),
        bench=BenchSettings(batch_size=2, seq_len=16, warmup=1, repeats=2, threads=1),
    )
    run = tmp_path / "n2"
    first = train_configuration(settings, 2, 0.0, run, progress=False)
    weights = load_model(run / "model").state_dict()
    assert [s["name"] for s in first["stages"]] == ["pretrain", "finetune"]
    shutil.rmtree(first["stages"][-1]["dir"])
    torch.manual_seed(7)
    torch.rand(123)
    again = train_configuration(settings, 2, 0.0, run, progress=False)
    assert [s["reused"] for s in again["stages"]] == [True, False]
    retrained = load_model(run / "model").state_dict()
    assert all(torch.equal(weights[k], retrained[k]) for k in weights)
