"""Shared test fixtures: one CPU thread, and a tiny multiplexed-BERT configuration.

The tiny config follows transformers' own tests (hidden 32, 2 layers, 4 heads, FFN 64), so every
model test runs in milliseconds on CPU.
"""

from __future__ import annotations

import pytest

TINY = dict(
    vocab_size=40,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    num_labels=3,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests share a small machine: torch (when a test uses it) runs on one thread."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    yield


@pytest.fixture
def tiny_config():
    """A factory for tiny `MuxBertConfig`s: `tiny_config(mux_width=2, demultiplexer="index", ...)`."""
    import torch

    from autoprumux.models import MuxBertConfig

    torch.set_num_threads(1)

    def make(**overrides):
        return MuxBertConfig(**{**TINY, **overrides})

    return make


@pytest.fixture
def tiny_model(tiny_config):
    """A factory for tiny models in eval mode, seeded: `tiny_model(mux_width=2)`."""
    import torch

    from autoprumux.models import MuxBertForSequenceClassification

    def make(**overrides):
        torch.manual_seed(0)
        return MuxBertForSequenceClassification(tiny_config(**overrides)).eval()

    return make


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL server for the whole session (`make test` installs the binaries).

    It fails, never skips, when PostgreSQL cannot run: the storage contract must hold on it.
    """
    from autoprumux.testing.postgres import TemporaryPostgres

    with TemporaryPostgres() as server:
        yield server
