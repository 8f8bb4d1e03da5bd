"""Device selection and seeding. Nothing in lipkit assumes a GPU."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def default_device() -> torch.device:
    """CUDA when available, else CPU. ``LIPKIT_DEVICE`` (e.g. ``cpu``) overrides."""
    forced = os.environ.get("LIPKIT_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means :func:`default_device`; asking for CUDA without one is a clear error."""
    if device is None:
        return default_device()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device='cuda' was requested but this machine has no usable CUDA device; "
            "pass device=None to pick automatically, or device='cpu'."
        )
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded with ``seed``: explicit randomness, no global state."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed))
    return g
