"""Tasks and their data: built-in synthetic tasks, local files, GLUE; tokenisation; mux batching.

    task = load_task("synthetic-sentiment", seed=0)
    tokenizer = build_tokenizer("tiny", task.train)
    train = encode_split(tokenizer, task.train, max_seq_len=48)
    for batch in mux_batches(train, mux_width=2, batch_size=32, shuffle=True):
        ...  # batch.input_ids is [32, 2, 48]; batch.valid marks real examples

Task loading is torch-free; the tokenisation and batching names are imported on first use, so
`from autoprumux.data import list_tasks` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from autoprumux.data._registry import list_tasks, load_task
from autoprumux.data._types import TaskData, TextSplit

if TYPE_CHECKING:
    from autoprumux.data._batching import EncodedSplit, MuxBatch, encode_split, mux_batches, num_mux_batches
    from autoprumux.data._tokenizer import build_tokenizer

_LAZY = {
    "build_tokenizer": "autoprumux.data._tokenizer",
    "EncodedSplit": "autoprumux.data._batching",
    "MuxBatch": "autoprumux.data._batching",
    "encode_split": "autoprumux.data._batching",
    "mux_batches": "autoprumux.data._batching",
    "num_mux_batches": "autoprumux.data._batching",
}

__all__ = [
    "EncodedSplit",
    "MuxBatch",
    "TaskData",
    "TextSplit",
    "build_tokenizer",
    "encode_split",
    "list_tasks",
    "load_task",
    "mux_batches",
    "num_mux_batches",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
