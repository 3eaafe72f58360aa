"""Tests of autoprumux.data: tasks, files, GLUE folders, tokenisation and mux batching (CPU, seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
import torch

from autoprumux.data import (
    MuxBatch,
    TaskData,
    build_tokenizer,
    encode_split,
    list_tasks,
    load_task,
    mux_batches,
    num_mux_batches,
)
from autoprumux.data import _synthetic as synthetic
from autoprumux.errors import DataError, ModelError


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# a reader that decides polarity from the sentence structure (independent of the generator)

_POSITIVE = {*synthetic.POSITIVE_WORDS, *synthetic.POSITIVE_VERBS, "love", "like", "enjoy", "adore",
             "appreciate", "praise", "positive", "favourable", "glowing", "happy"}  # fmt: skip
_NEGATIVE = {*synthetic.NEGATIVE_WORDS, *synthetic.NEGATIVE_VERBS, "hate", "dislike", "regret", "loathe",
             "resent", "dread", "negative", "critical", "harsh", "angry"}  # fmt: skip


def _clause_polarity(clause: str) -> int:
    words = clause.replace(",", " ").replace(".", " ").split()
    (word,) = [w for w in words if w in _POSITIVE or w in _NEGATIVE]
    polarity = 1 if word in _POSITIVE else -1
    return -polarity if any(w in synthetic.NEGATORS for w in words) else polarity


def _read_polarity(text: str) -> int:
    text = text.rstrip(".")
    for prefix in synthetic.REPORT_NEGATIONS:
        if text.startswith(prefix):
            return -_clause_polarity(text[len(prefix) :])
    for connective in synthetic.CONTRASTS:
        if f", {connective} " in text:
            return _clause_polarity(text.split(f", {connective} ")[1])
    if ", even though " in text:
        return _clause_polarity(text.split(", even though ")[0])
    if text.startswith(("although ", "though ", "even if ")):
        return _clause_polarity(text.split(", ", 1)[1])
    if " and " in text:
        return _clause_polarity(text.split(" and ")[0])
    return _clause_polarity(text)


def _rule_sentiment(texts) -> list[int]:
    return [int(_read_polarity(t) > 0) for t in texts]


def _rule_pairs(texts, pairs) -> list[int]:
    return [int(_read_polarity(a) == _clause_polarity(b)) for a, b in zip(texts, pairs, strict=True)]


# ---------------------------------------------------------------------------------------------
# registry and synthetic tasks


def test_registry_lists_tasks_and_rejects_unknown_names():
    names = list_tasks()
    assert {"synthetic-sentiment", "synthetic-pairs", "local", "glue/sst2", "glue/mnli"} <= set(names)
    with pytest.raises(DataError, match="unknown task 'sentiment-xyz'") as info:
        load_task("sentiment-xyz")
    assert "synthetic-sentiment" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="train_size"):
        load_task("synthetic-sentiment", train_size=0)
    with pytest.raises(DataError, match="needs a data path"):
        load_task("local")


@pytest.mark.parametrize("name", ["synthetic-sentiment", "synthetic-pairs"])
def test_synthetic_tasks_are_deterministic_by_seed(name):
    a = load_task(name, seed=0, train_size=300, eval_size=60)
    b = load_task(name, seed=0, train_size=300, eval_size=60)
    c = load_task(name, seed=1, train_size=300, eval_size=60)
    assert a == b
    assert a.train.texts != c.train.texts
    # the validation split does not depend on the train size
    assert load_task(name, seed=0, train_size=100, eval_size=60).validation == a.validation


@pytest.mark.parametrize("name", ["synthetic-sentiment", "synthetic-pairs"])
def test_synthetic_split_sizes_and_balance(name):
    task = load_task(name)
    assert isinstance(task, TaskData) and task.num_labels == 2 and len(task.label_names) == 2
    assert (len(task.train), len(task.validation), len(task.test)) == (8000, 1000, 1000)
    assert task.is_pair == (name == "synthetic-pairs")
    for split in task.splits().values():
        assert Counter(split.labels) == {0: len(split) // 2, 1: len(split) // 2}
        assert max(len(t.split()) for t in split.texts) <= 24
    small = load_task(name, train_size=101, eval_size=7)
    assert (len(small.train), len(small.validation), len(small.test)) == (101, 7, 7)


def _is_double_negation(text: str) -> bool:
    prefix = next((p for p in synthetic.REPORT_NEGATIONS if text.startswith(p)), None)
    return prefix is not None and any(w in synthetic.NEGATORS for w in text[len(prefix) :].split())


def test_sentiment_structure_decides_the_label():
    clean = synthetic.generate_sentiment(3000, seed=3, split="train", label_noise=0.0)
    forms = {
        "contrast": [i for i, t in enumerate(clean.texts) if ", but " in t],
        "negation": [i for i, t in enumerate(clean.texts) if " not " in t],
        "although": [i for i, t in enumerate(clean.texts) if t.startswith("although ")],
        "double negation": [i for i, t in enumerate(clean.texts) if _is_double_negation(t)],
    }
    rule = _rule_sentiment(clean.texts)
    for form, rows in forms.items():
        assert len(rows) > 20, form
        assert all(rule[i] == clean.labels[i] for i in rows), form
    assert rule == list(clean.labels)

    noisy = synthetic.generate_sentiment(3000, seed=3, split="train")
    agreement = sum(r == y for r, y in zip(_rule_sentiment(noisy.texts), noisy.labels, strict=True)) / 3000
    assert agreement == pytest.approx(1 - synthetic.LABEL_NOISE, abs=0.002)


def test_pairs_need_both_sentences():
    clean = synthetic.generate_pairs(2000, seed=5, split="train", label_noise=0.0)
    assert _rule_pairs(clean.texts, clean.text_pairs) == list(clean.labels)
    # the verdict alone says nothing about the label; the review alone gives the designed cue only
    first = [int(_read_polarity(t) > 0) for t in clean.texts]
    second = [int(_clause_polarity(t) > 0) for t in clean.text_pairs]
    review_only = sum(a == y for a, y in zip(first, clean.labels, strict=True)) / 2000
    verdict_only = sum(a == y for a, y in zip(second, clean.labels, strict=True)) / 2000
    assert review_only == pytest.approx(synthetic.PAIR_REVIEW_CUE, abs=0.04)
    assert 0.45 < verdict_only < 0.55


def test_bag_of_words_cannot_solve_sentiment():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    task = load_task("synthetic-sentiment", train_size=3000, eval_size=1000)
    bow = make_pipeline(CountVectorizer(), LogisticRegression(max_iter=1000)).fit(task.train.texts, task.train.labels)
    bow_accuracy = bow.score(task.test.texts, task.test.labels)
    rule_accuracy = sum(r == y for r, y in zip(_rule_sentiment(task.test.texts), task.test.labels, strict=True)) / 1000
    assert bow_accuracy < 0.75
    assert rule_accuracy > 0.88


# ---------------------------------------------------------------------------------------------
# local files


def _write_tsv(path, header, rows):
    lines = ([("\t".join(header))] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def test_single_csv_file_is_split_deterministically(tmp_path):
    rows = [f'"text {i}, with a comma",{"pos" if i % 3 else "neg"}' for i in range(50)]
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    task = load_task("local", path=path)
    assert (len(task.train), len(task.validation), task.test) == (45, 5, None)
    assert task.label_names == ("neg", "pos") and not task.is_pair
    assert set(task.train.texts) | set(task.validation.texts) == {f"text {i}, with a comma" for i in range(50)}
    row = task.train.texts.index("text 3, with a comma")
    assert task.train.labels[row] == 0
    assert load_task(str(path), seed=7) == TaskData(**{**task.__dict__, "name": str(path)})
    capped = load_task("local", path=path, train_size=10, eval_size=4)
    assert (len(capped.train), len(capped.validation)) == (10, 4)


def test_jsonl_with_named_columns_and_integer_labels(tmp_path):
    path = tmp_path / "data.jsonl"
    records = [{"q": f"question {i}", "a": f"answer {i}", "y": i % 3} for i in range(30)]
    path.write_text("\n".join(json.dumps(r) for r in records))
    task = load_task("local", path=path, text_column="q", text_pair_column="a", label_column="y", eval_size=6)
    assert task.is_pair and task.label_names == ("0", "1", "2") and task.num_labels == 3
    i = task.train.texts.index("question 4")
    assert task.train.text_pairs[i] == "answer 4" and task.train.labels[i] == 1


def test_labels_mixing_digits_and_words_keep_sorted_ids(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("text,label\n" + "\n".join(f"t{i},{['1', 'a', 'b'][i % 3]}" for i in range(30)) + "\n")
    task = load_task("local", path=path, eval_size=3)
    assert task.label_names == ("1", "a", "b")
    i = task.train.texts.index("t3")
    assert task.train.labels[i] == 0


def test_task_registry_does_not_import_torch():
    code = "import sys; from autoprumux.data import list_tasks, load_task; list_tasks(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_folder_with_train_dev_test(tmp_path):
    _write_tsv(tmp_path / "train.tsv", ["premise", "hypothesis", "label"], [(f"p{i}", f"h{i}", "yes" if i % 2 else "no") for i in range(12)])
    _write_tsv(tmp_path / "dev.tsv", ["premise", "hypothesis", "label"], [("p", "h", "maybe"), ("p2", "h2", "yes")])
    _write_tsv(tmp_path / "test.tsv", ["premise", "hypothesis", "label"], [("tp", "th", "no")])
    task = load_task(str(tmp_path))
    assert task.is_pair and (len(task.train), len(task.validation), len(task.test)) == (12, 2, 1)
    assert task.label_names == ("maybe", "no", "yes")
    assert task.validation.labels == (0, 2) and task.test.labels == (1,)


def test_missing_files_and_columns_are_named(tmp_path):
    with pytest.raises(DataError, match="nope.csv"):
        load_task("local", path=tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no train file"):
        load_task("local", path=tmp_path)
    path = tmp_path / "d.csv"
    path.write_text("body,stars\nhello,1\nworld,2\nagain,1\n")
    with pytest.raises(DataError, match="no text column") as info:
        load_task("local", path=path)
    assert "body, stars" in str(info.value)
    with pytest.raises(DataError, match="'rating'") as info:
        load_task("local", path=path, text_column="body", label_column="rating")
    assert "columns present: body, stars" in str(info.value)
    with pytest.raises(DataError, match="no label column"):
        load_task("local", path=path, text_column="body")
    dev = tmp_path / "folder"
    dev.mkdir()
    (dev / "train.csv").write_text("text,label\na,1\nb,0\n")
    (dev / "dev.csv").write_text("text,target\na,1\n")
    with pytest.raises(DataError, match=r"'label' not found in .*dev\.csv"):
        load_task("local", path=dev)


# ---------------------------------------------------------------------------------------------
# GLUE


def test_glue_sst2_folder_without_test_labels(tmp_path):
    sst = tmp_path / "SST-2"
    sst.mkdir()
    _write_tsv(sst / "train.tsv", ["sentence", "label"], [(f'a "quoted" film {i} ', i % 2) for i in range(20)])
    _write_tsv(sst / "dev.tsv", ["sentence", "label"], [("good", 1), ("bad", 0)])
    _write_tsv(sst / "test.tsv", ["index", "sentence"], [(0, "unknown")])
    task = load_task("glue/sst2", path=sst)
    assert task.name == "glue/sst2" and task.label_names == ("negative", "positive")
    assert (len(task.train), len(task.validation), task.test) == (20, 2, None)
    assert task.train.texts[0] == 'a "quoted" film 0 ' and task.validation.labels == (1, 0)


def test_glue_mnli_and_cola_folders(tmp_path):
    mnli = tmp_path / "MNLI"
    mnli.mkdir()
    header = ["index", "genre", "sentence1", "sentence2", "label1", "gold_label"]
    labels = ["entailment", "neutral", "contradiction"]
    _write_tsv(mnli / "train.tsv", header, [(i, "x", f"p{i}", f"h{i}", "-", labels[i % 3]) for i in range(9)])
    _write_tsv(mnli / "dev_matched.tsv", header, [(0, "x", "p", "h", "-", "contradiction")])
    task = load_task("glue/mnli", path=mnli)
    assert task.is_pair and task.label_names == tuple(labels)
    assert task.train.labels[:3] == (0, 1, 2) and task.validation.labels == (2,)
    assert task.train.text_pairs[1] == "h1"

    cola = tmp_path / "CoLA"
    cola.mkdir()
    _write_tsv(cola / "train.tsv", None, [("src", i % 2, "", f"sentence {i}") for i in range(6)])
    _write_tsv(cola / "dev.tsv", None, [("src", 1, "", "a fine sentence")])
    task = load_task("glue/cola", path=cola)
    assert task.train.texts[5] == "sentence 5" and task.train.labels[5] == 1 and not task.is_pair


def test_glue_offline_raises_data_error_pointing_at_a_local_folder(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="--data-path") as info:
        load_task("glue/rte")
    assert "\n" not in str(info.value)

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataError, match="path = DIR in the spec"):
        load_task("glue/sst2")


# ---------------------------------------------------------------------------------------------
# tokenisation


@pytest.fixture(scope="module")
def pairs():
    return load_task("synthetic-pairs", train_size=400, eval_size=20)


def test_word_tokenizer_round_trip_and_pair_segments(pairs, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = build_tokenizer("tiny", pairs.train)
    again = build_tokenizer("tiny", pairs.train)
    assert tokenizer.get_vocab() == again.get_vocab()
    assert tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]
    texts, others = list(pairs.validation.texts), list(pairs.validation.text_pairs)
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded(texts, others)["input_ids"] == tokenizer(texts, others)["input_ids"]

    encoded = tokenizer("The food was GOOD, but zyzzyva.", "this is a glowing review.")
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[:5] == ["[CLS]", "the", "food", "was", "good"] and "[UNK]" in tokens
    first_sep = tokens.index("[SEP]")
    assert encoded["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)
    assert tokens[-1] == "[SEP]"

    small = build_tokenizer("tiny", pairs.train, vocab_size=20)
    assert len(small) == 20


def test_pretrained_tokenizer_and_its_errors(pairs, tmp_path):
    minilm = build_tokenizer("minilm", pairs.train)
    assert minilm("hello", "world")["token_type_ids"][-1] == 1
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="tokenizer"):
        build_tokenizer(str(tmp_path), pairs.train)


# ---------------------------------------------------------------------------------------------
# encoding and multiplexed batches


def test_encode_split_pads_and_truncates(pairs):
    tokenizer = build_tokenizer("tiny", pairs.train)
    encoded = encode_split(tokenizer, pairs.validation, max_seq_len=12)
    assert encoded.input_ids.shape == encoded.attention_mask.shape == encoded.token_type_ids.shape == (20, 12)
    assert encoded.labels.tolist() == list(pairs.validation.labels) and len(encoded) == 20
    assert (encoded.input_ids[:, 0] == tokenizer.cls_token_id).all()
    assert (encoded.token_type_ids.max(dim=1).values == 1).all()
    wide = encode_split(tokenizer, pairs.validation, max_seq_len=64)
    assert ((wide.input_ids == 0) == (wide.attention_mask == 0)).all()


def _toy_encoded(num_examples: int, length: int = 4):
    from autoprumux.data import EncodedSplit

    rows = torch.arange(num_examples).unsqueeze(1).repeat(1, length)
    return EncodedSplit(input_ids=rows, attention_mask=torch.ones_like(rows), token_type_ids=torch.zeros_like(rows),
                        labels=torch.arange(num_examples) % 2)  # fmt: skip


@pytest.mark.parametrize("mux_width", [1, 2, 5])
@pytest.mark.parametrize("shuffle", [False, True])
def test_mux_batches_cover_every_example_once(mux_width, shuffle):
    encoded, batch_size = _toy_encoded(23), 3
    batches = list(mux_batches(encoded, mux_width, batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(0)))
    assert len(batches) == num_mux_batches(23, mux_width, batch_size)
    groups = -(-23 // mux_width)
    for i, batch in enumerate(batches):
        assert isinstance(batch, MuxBatch)
        rows = min(batch_size, groups - i * batch_size)
        assert batch.input_ids.shape == batch.attention_mask.shape == (rows, mux_width, 4)
        assert batch.labels.shape == batch.valid.shape == batch.index.shape == (rows, mux_width)
        assert batch.valid.dtype == torch.bool
        # every slot, padding copies included, carries the example its index names
        assert (batch.input_ids[..., 0] == batch.index).all() and (batch.labels == batch.index % 2).all()
    valid_rows = torch.cat([b.index[b.valid] for b in batches]).tolist()
    assert sorted(valid_rows) == list(range(23))
    padding = sum(int((~b.valid).sum()) for b in batches)
    assert padding == (-23) % mux_width
    assert not batches[-1].valid[-1, -1] if padding else batches[-1].valid.all()
    assert sum(b.num_examples for b in batches) == 23


def test_mux_batches_shuffle_is_seeded_and_tiny_splits_work():
    encoded = _toy_encoded(40)

    def order(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([b.index.flatten() for b in mux_batches(encoded, 2, 4, shuffle=True, generator=gen)]).tolist()

    assert order(1) == order(1) and order(1) != order(2) and order(1) != list(range(40))
    (batch,) = mux_batches(_toy_encoded(3), 5, 8, shuffle=False)
    assert batch.input_ids.shape == (1, 5, 4) and batch.valid.tolist() == [[True] * 3 + [False] * 2]
    assert batch.to("cpu").index.tolist() == [[0, 1, 2, 0, 1]]
    assert list(mux_batches(_toy_encoded(0), 2, 4, shuffle=False)) == []
