"""Devices, mixed precision and seeding for training.

`resolve_device` is the harness's own (`autoprumux.bench.resolve_device`), so training and
benchmarking accept the same names. On CUDA, training runs under bf16 autocast where the GPU
supports it, else fp16 autocast with a gradient scaler; on CPU it stays fp32.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from autoprumux.bench import resolve_device

__all__ = ["autocast", "grad_scaler", "resolve_device", "seed_everything"]


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `device`: bf16 or fp16 on CUDA, None (fp32) elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed-precision context for forward passes on `device` (a no-op on CPU)."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 autocast (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
