"""The records every task loader returns: `TextSplit` (one split of raw text) and `TaskData`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextSplit:
    """One split of a text-classification task, as raw text and integer label ids.

    `text_pairs` is None for single-sentence tasks; for pair tasks it holds the second sentence
    of every example, aligned with `texts`. `labels[i]` is an id in `range(TaskData.num_labels)`.
    """

    texts: tuple[str, ...]
    text_pairs: tuple[str, ...] | None
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.texts) or (
            self.text_pairs is not None and len(self.text_pairs) != len(self.texts)
        ):
            raise ValueError("texts, text_pairs and labels of a TextSplit must have the same length")

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: list[int] | range) -> TextSplit:
        """The examples at `rows`, in that order."""
        return TextSplit(
            texts=tuple(self.texts[i] for i in rows),
            text_pairs=None if self.text_pairs is None else tuple(self.text_pairs[i] for i in rows),
            labels=tuple(self.labels[i] for i in rows),
        )


@dataclass(frozen=True)
class TaskData:
    """A classification task: its label set and its train / validation / (optional) test splits.

    `label_names[i]` names label id i. `test` is None when the task has no labelled test split
    (GLUE test sets, single data files).
    """

    name: str
    num_labels: int
    label_names: tuple[str, ...]
    is_pair: bool
    train: TextSplit
    validation: TextSplit
    test: TextSplit | None = None

    def splits(self) -> dict[str, TextSplit]:
        """The splits that exist, by name."""
        out = {"train": self.train, "validation": self.validation}
        if self.test is not None:
            out["test"] = self.test
        return out
