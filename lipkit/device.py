"""Device selection: CUDA when there is one, the CPU otherwise, or what the user names.

Nothing in lipkit assumes a GPU; random streams are in :mod:`lipkit.seeding`.
"""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """CUDA when available, else CPU. ``LIPKIT_DEVICE`` (e.g. ``cpu``) overrides."""
    forced = os.environ.get("LIPKIT_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class DeviceError(ValueError):
    """A device that does not exist, or that this machine does not have."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means :func:`default_device`; a device that is not one, or CUDA without one, is a
    :class:`DeviceError` that says what to pass instead."""
    if device is None:
        return default_device()
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device={device!r} is not a device: use 'cpu', 'cuda' or 'cuda:N', or leave it unset "
                          "(CUDA when available)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"device={str(device)!r} was requested but this machine has no usable CUDA device; "
            "leave it unset to pick automatically, or use 'cpu'"
        )
    return device


def device_name(device: str | torch.device | None = None) -> str:
    """What a time was measured on, in words: the GPU's name, or the CPU's model and core count
    (``/proc/cpuinfo`` on Linux, else the architecture)."""
    import platform

    device = resolve_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} cores"
