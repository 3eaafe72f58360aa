"""Encoding a split into tensors, and grouping examples into multiplexed batches.

A multiplexed batch holds `batch_size` sequences of `mux_width` (N) examples each, so one step
sees N * batch_size examples (MECHANICS.md, "Batches").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch
from transformers import PreTrainedTokenizerBase

from autoprumux.data._types import TextSplit
from autoprumux.spec import batches_per_epoch


@dataclass(frozen=True)
class EncodedSplit:
    """A tokenised split: int64 tensors of M examples padded (or truncated) to T = max_seq_len."""

    input_ids: torch.Tensor  # [M, T]
    attention_mask: torch.Tensor  # [M, T]
    token_type_ids: torch.Tensor  # [M, T]
    labels: torch.Tensor  # [M]

    def __len__(self) -> int:
        return self.labels.shape[0]


def encode_split(tokenizer: PreTrainedTokenizerBase, split: TextSplit, max_seq_len: int) -> EncodedSplit:
    """Tokenise `split` to exactly `max_seq_len` tokens per example (pairs truncated longest first).

    Token type ids are zeros when the tokenizer does not produce them.
    """
    if len(split) == 0:
        empty = torch.zeros((0, max_seq_len), dtype=torch.long)
        return EncodedSplit(empty, empty.clone(), empty.clone(), torch.zeros(0, dtype=torch.long))
    encoded = tokenizer(
        list(split.texts),
        None if split.text_pairs is None else list(split.text_pairs),
        padding="max_length",
        truncation=True,
        max_length=max_seq_len,
        return_tensors="pt",
    )
    input_ids = encoded["input_ids"].long()
    token_type_ids = encoded.get("token_type_ids")
    return EncodedSplit(
        input_ids=input_ids,
        attention_mask=encoded["attention_mask"].long(),
        token_type_ids=torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids.long(),
        labels=torch.tensor(split.labels, dtype=torch.long),
    )


@dataclass(frozen=True)
class MuxBatch:
    """One multiplexed batch of B sequences, each carrying N examples of length T.

    `valid[b, i]` is False for padding copies, whose predictions must be ignored; `index[b, i]` is
    the example's row in the split, so predictions can be put back in split order.
    """

    input_ids: torch.Tensor  # [B, N, T]
    attention_mask: torch.Tensor  # [B, N, T]
    token_type_ids: torch.Tensor  # [B, N, T]
    labels: torch.Tensor  # [B, N]
    valid: torch.Tensor  # [B, N] bool
    index: torch.Tensor  # [B, N] long

    def to(self, device: torch.device | str) -> MuxBatch:
        """The same batch with every tensor on `device`."""
        return MuxBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def num_examples(self) -> int:
        """Real (valid) examples in the batch."""
        return int(self.valid.sum())

    def trimmed(self) -> MuxBatch:
        """The same batch cut to its longest real example: positions where no example has a token go.

        Padding is masked out of the mixture and of attention, so the logits are the same up to
        float rounding, at the cost of the longest example in the batch instead of `max_seq_len`.
        """
        real = self.attention_mask.reshape(-1, self.attention_mask.shape[-1]).any(dim=0)
        length = int(real.nonzero().max()) + 1 if bool(real.any()) else 1
        if length == self.input_ids.shape[-1]:
            return self
        cut = {name: getattr(self, name)[..., :length] for name in ("input_ids", "attention_mask", "token_type_ids")}
        return MuxBatch(**cut, labels=self.labels, valid=self.valid, index=self.index)


def num_mux_batches(num_examples: int, mux_width: int, batch_size: int) -> int:
    """How many batches `mux_batches` yields: ceil(ceil(M / N) / B)."""
    return batches_per_epoch(num_examples, mux_width, batch_size)


def mux_batches(
    encoded: EncodedSplit,
    mux_width: int,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> Iterator[MuxBatch]:
    """Group the examples of `encoded` into batches of `batch_size` sequences of `mux_width` examples.

    The examples are taken in split order, or in a random order drawn from `generator` when
    `shuffle` is True, and cut into groups of N = `mux_width`; B = `batch_size` groups make a batch.
    When M (the number of examples) is not a multiple of N, the last group is filled up with copies
    of the first examples of that order, marked `valid=False`, so every example occupies exactly
    one valid slot per pass: evaluation scores each example once, and training should mask the
    copies out of its loss. When the number of groups is not a multiple of B, the last batch has
    fewer sequences. The number of batches is `num_mux_batches(M, N, B)`.
    """
    if mux_width < 1 or batch_size < 1:
        raise ValueError(f"mux_width and batch_size must be >= 1, got {mux_width} and {batch_size}")
    total = len(encoded)
    if total == 0:
        return
    order = torch.randperm(total, generator=generator) if shuffle else torch.arange(total)
    filler = (-total) % mux_width
    rows = torch.cat([order, order[torch.arange(filler) % total]])
    valid = torch.cat([torch.ones(total, dtype=torch.bool), torch.zeros(filler, dtype=torch.bool)])
    rows, valid = rows.view(-1, mux_width), valid.view(-1, mux_width)
    for start in range(0, rows.shape[0], batch_size):
        index = rows[start : start + batch_size]
        yield MuxBatch(
            input_ids=encoded.input_ids[index],
            attention_mask=encoded.attention_mask[index],
            token_type_ids=encoded.token_type_ids[index],
            labels=encoded.labels[index],
            valid=valid[start : start + batch_size],
            index=index,
        )
