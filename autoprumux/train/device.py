"""Devices, mixed precision and seeding for training.

`resolve_device` turns a user's device name into a torch.device, for training and for the
throughput harness (`autoprumux.bench` imports it from here), so both accept the same names. On
CUDA, training runs under bf16 autocast where the GPU supports it, else fp16 autocast with a
gradient scaler; on CPU it stays fp32.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from autoprumux.errors import ModelError

__all__ = ["autocast", "grad_scaler", "resolve_device", "seed_everything"]


def resolve_device(name: str | torch.device | None) -> torch.device:
    """`None` -> cuda when available, else cpu; a torch.device passes through; a bad name is a user error."""
    if isinstance(name, torch.device):
        return name
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ModelError(f"device {name!r} is not valid; expected cpu, cuda or cuda:K") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ModelError(f"device {name!r} is not supported; expected cpu, cuda or cuda:K")
    return device


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
