"""Multiplexed pre-training: masked-token prediction plus token retrieval over unlabelled text.

The stage contract is the one of `finetune.py`::

    run_pretrain(settings, stage, parent_dir, out_dir, *, device, teacher_dir=None, progress=True) -> dict

Every instance of a multiplexed batch has 15% (`mask_probability`) of its real tokens corrupted
the way BERT does it (80% [MASK], 10% a random token, 10% kept). The model mixes the corrupted
instances, encodes the mixture once, and at every position predicts a random instance's
*original* token from that instance's demultiplexed state. At a masked position that is masked-
token prediction; at the others it is token retrieval (MUX-PLMs trains the two together). At N = 1
the same loss is plain masked-language modelling on the encoder's states, so the baseline gets
the same pre-training as the multiplexed models.

The corpus is `[pretrain] corpus` (a text file, one text per line, or a folder of .txt files),
else the task's training texts with their labels unused. A from-scratch backbone gets its
word vocabulary from the corpus, and every later stage uses that tokenizer.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from autoprumux.data import TextSplit, build_tokenizer, encode_split
from autoprumux.errors import ModelError
from autoprumux.models import build_model
from autoprumux.spec import TrainingSettings, settings_to_dict
from autoprumux.train.device import resolve_device, seed_everything
from autoprumux.train.finetune import WEIGHT_DECAY_WARMUP, evaluate_retrieval
from autoprumux.train.loop import train_loop
from autoprumux.train.plan import Stage, corpus_files
from autoprumux.train.stage_io import (
    budget_batches,
    epoch_batches,
    load_task_data,
    steps_per_epoch,
    write_stage,
)

#: Share of a named corpus held out to measure retrieval (at least one text).
CORPUS_VALIDATION_SHARE = 0.05
#: Labels of the classifier a pre-trained model carries; the fine-tune replaces it for its task.
PRETRAIN_LABELS = 2


def read_corpus(path: str | Path) -> list[str]:
    """The non-empty lines of a text file, or of every .txt file under a folder (sorted by path)."""
    texts = [line.strip() for file in corpus_files(path) for line in file.read_text(encoding="utf-8").splitlines()]
    texts = [t for t in texts if t]
    if len(texts) < 2:
        raise ModelError(f"pretrain corpus {str(path)!r} holds {len(texts)} non-empty line(s); expected at least 2 texts")
    return texts


def _unlabelled(texts: list[str]) -> TextSplit:
    return TextSplit(texts=tuple(texts), text_pairs=None, labels=(0,) * len(texts))


def corpus_splits(settings: TrainingSettings) -> tuple[TextSplit, TextSplit]:
    """(train, validation) texts of the pre-training corpus; labels are never used."""
    if settings.pretrain.corpus is None:
        task = load_task_data(settings)
        return task.train, task.validation
    texts = read_corpus(settings.pretrain.corpus)
    random.Random(settings.seed).shuffle(texts)
    held_out = max(1, round(CORPUS_VALIDATION_SHARE * len(texts)))
    return _unlabelled(texts[held_out:]), _unlabelled(texts[:held_out])


def mask_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, *, probability: float, mask_id: int,
    vocab_size: int, special_ids: list[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of `probability` of the real, non-special tokens: (corrupted ids, chosen).

    Of the chosen tokens 80% become `mask_id`, 10% a random id and 10% stay. Draws from torch's
    global generator, so a seeded run is reproducible.
    """
    special = torch.tensor(special_ids, device=input_ids.device)
    candidates = attention_mask.bool() & ~torch.isin(input_ids, special)
    chosen = candidates & (torch.rand(input_ids.shape, device=input_ids.device) < probability)
    roll = torch.rand(input_ids.shape, device=input_ids.device)
    corrupted = input_ids.masked_fill(chosen & (roll < 0.8), mask_id)
    random_ids = torch.randint(vocab_size, input_ids.shape, device=input_ids.device)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    return torch.where(swap, random_ids, corrupted), chosen


def run_pretrain(
    settings: TrainingSettings,
    stage: Stage,
    parent_dir: Path | None,
    out_dir: Path,
    *,
    device=None,
    teacher_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Pre-train a new N-way model on the corpus; returns the stage's metrics.

    Metrics: `retrieval_accuracy` (clean validation texts; at N = 1 it measures copying),
    `masked_accuracy` (validation tokens recovered at corrupted positions), `budget`, `steps`,
    `examples_seen`, `duration_s` and the per-epoch `history`. The saved model keeps its retrieval
    head for the fine-tune's auxiliary loss; its classifier is a placeholder the fine-tune replaces.
    """
    started = time.perf_counter()
    device = resolve_device(device)
    pretrain = settings.pretrain
    train_texts, validation_texts = corpus_splits(settings)
    tokenizer = build_tokenizer(settings.model, train_texts)
    if tokenizer.mask_token_id is None:
        raise ModelError(f"the tokenizer of model {settings.model!r} has no mask token; masked-token pre-training needs one")
    max_len = settings.data.max_seq_len
    train, validation = encode_split(tokenizer, train_texts, max_len), encode_split(tokenizer, validation_texts, max_len)
    seed_everything(settings.seed)
    model = build_model(
        settings.model, tokenizer, stage.mux, settings.mux, PRETRAIN_LABELS,
        retrieval_head=True, max_positions=max_len,
    )
    special = sorted(set(tokenizer.all_special_ids))
    corrupt = dict(
        probability=pretrain.mask_probability, mask_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
        special_ids=special,
    )

    def loss_fn(model, batch):
        corrupted, _ = mask_tokens(batch.input_ids, batch.attention_mask, **corrupt)
        output = model(
            input_ids=corrupted, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids,
            retrieval=True, retrieval_targets=batch.input_ids,
        )
        return output.retrieval_loss, {}

    def retrieval(model) -> float:
        return evaluate_retrieval(model, validation, stage.mux, pretrain.batch_size, device, settings.seed)

    result = train_loop(
        model,
        epoch_batches(train, stage.mux, pretrain.batch_size, settings.seed),
        loss_fn,
        total_batches=budget_batches(pretrain.budget, train, stage.mux, pretrain.batch_size),
        steps_per_epoch=steps_per_epoch(train, stage.mux, pretrain.batch_size),
        learning_rate=pretrain.learning_rate,
        weight_decay=WEIGHT_DECAY_WARMUP,
        warmup_ratio=pretrain.warmup_ratio,
        evaluate=retrieval,
        keep_best=False,  # pre-training keeps its last weights
        stop_at=pretrain.retrieval_target if stage.mux > 1 else None,  # at N = 1 retrieval is copying
        seed=settings.seed,
        device=device,
        progress=progress,
        desc=f"pre-train N={stage.mux}",
    )
    metrics = {
        "stage": stage.name,
        "key": stage.key,
        "mux": stage.mux,
        "retrieval_accuracy": result.history[-1].get("metric") if result.history else None,
        "masked_accuracy": masked_accuracy(model, validation, stage.mux, pretrain.batch_size, device, settings.seed, corrupt),
        "corpus": pretrain.corpus or f"{settings.task} training texts",
        "corpus_texts": len(train_texts),
        "budget": str(pretrain.budget),
        "retrieval_target": pretrain.retrieval_target,
        "steps": result.steps,
        "examples_seen": result.steps * pretrain.batch_size * stage.mux,
        "duration_s": time.perf_counter() - started,
        "history": result.history,
        "settings": settings_to_dict(pretrain),
    }
    write_stage(out_dir, model.cpu(), tokenizer, metrics)
    return metrics


def masked_accuracy(model, encoded, mux_width: int, batch_size: int, device, seed: int, corrupt: dict) -> float:
    """Share of corrupted validation tokens whose original the model recovers (fixed corruption)."""
    pad = model.config.pad_token_id or 0

    def corrupted(batch):
        ids, chosen = mask_tokens(batch.input_ids, batch.attention_mask, **corrupt)
        return ids, batch.input_ids.masked_fill(~chosen, pad)  # padding is never scored: chosen only

    return evaluate_retrieval(model, encoded, mux_width, batch_size, device, seed, corrupt=corrupted)
