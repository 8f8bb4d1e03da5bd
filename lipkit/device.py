"""Device selection. Nothing in lipkit assumes a GPU; random streams are in :mod:`lipkit.seeding`."""

from __future__ import annotations

import os

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
