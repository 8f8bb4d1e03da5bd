"""How much memory a fit needs, and refusing one that cannot fit before anything is allocated.

A DIP network is fully convolutional: every activation it keeps for the backward pass has a
size proportional to the image's pixel count. :func:`fit_bytes` therefore runs one training step
on the smallest image the network accepts, counts the bytes autograd saves (parameters apart),
and scales them to the requested size; weights, gradients and Adam's two moments are added once.
The estimate takes a fraction of a second and allocates nothing of the real image's size.

Example::

    >>> from lipkit.models import skip_net
    >>> gib = fit_bytes(skip_net(), 512, 512) / 2**30
    >>> 1 < gib < 8
    True
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

GIB = 2 ** 30
# Measured on a CPU (peak RSS of 3-step fits, 128-512 px, width 32 and 128): the convolutions'
# workspaces and the fit's own buffers add up to 0.9x the saved activations on top of them.
TRANSIENT = 2.0
RUNTIME = 256 * 2 ** 20  # and the first fit of a process grows it by 80-200 MB whatever the size (oneDNN, ...)
_PROBES: dict[str, tuple[int, int, int]] = {}  # arch -> (probe pixels, saved activation bytes, largest saved)


def _probe(net) -> tuple[int, int, int]:
    """One training step of a copy of ``net`` at its smallest size: (pixels, saved bytes, largest saved tensor)."""
    from lipkit.models import network_input

    key = repr(getattr(net, "config", None) or net)
    if key in _PROBES:
        return _PROBES[key]
    probe = copy.deepcopy(net).cpu().train()  # train-mode BatchNorm would move the caller's running stats
    levels = getattr(probe, "levels", 0)
    side = 2 * 2 ** levels if levels else 64
    params = {p.untyped_storage().data_ptr() for p in probe.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = probe(network_input(probe, side, side))
        out.square().mean().backward()
    saved = sum(seen.values()) + 2 * out.numel() * out.element_size()  # the output and its gradient
    _PROBES[key] = (side * side, saved, max(seen.values(), default=0))
    return _PROBES[key]


def fit_bytes(net, height: int, width: int) -> int:
    """Bytes one fit of ``net`` on an H×W image needs at its peak (FP32, Adam), an estimate.

    Saved activations scale with the pixel count; during the backward pass the gradients of the
    largest activations are alive beside them (counted as two of the largest), and the
    convolutions' own buffers come on top (:data:`TRANSIENT`). The parameters are held four
    times (weights, gradients, Adam's two moments) plus a masked copy; the process's own memory
    (:data:`RUNTIME`) is added once.
    """
    per_pixel, fixed = _per_pixel_and_fixed(net)
    return int(per_pixel * height * width + fixed)


def _per_pixel_and_fixed(net, images: int = 1) -> tuple[float, float]:
    """(bytes per pixel, bytes whatever the size) of one fit holding ``images`` images at once."""
    pixels, saved, largest = _probe(net)
    weights = sum(p.numel() * p.element_size() for p in net.parameters())
    return images * TRANSIENT * (saved + 2 * largest) / pixels, 5 * weights + RUNTIME


def available_bytes(device) -> int:
    """Memory a new allocation can use now: free GPU memory; on a CPU the kernel's MemAvailable,
    or less when a container's memory limit (cgroup v2) leaves less."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return int(free)


def check_fit_memory(net, height: int, width: int, *, device, fits_at_once: int = 1, images: int = 1,
                     what: str = "this image") -> int:
    """Refuse (``MemoryError`` naming the estimate and the way out) when ``fits_at_once`` fits of
    ``net``, each holding ``images`` H×W images (weight sharing), will not fit in ``device``'s
    available memory; returns the estimate. The crop it suggests fits (to the estimate)."""
    per_pixel, fixed = _per_pixel_and_fixed(net, images)
    need = int((per_pixel * height * width + fixed) * fits_at_once)
    have = available_bytes(device)
    if need > have:
        at_once = f" ({fits_at_once} fits at once)" if fits_at_once > 1 else ""
        widest = max(getattr(net, "config", {}).get("num_channels_down", [0]) or [0])
        narrower = f" or a smaller --width (now {widest})" if widest else ""
        side = int(max(0.0, (have / fits_at_once - fixed) / per_pixel) ** 0.5) // 32 * 32
        crop = f"--crop {side}" if side >= 64 else "a smaller image"
        raise MemoryError(f"fitting {what} ({width}x{height} px) needs about {need / GIB:.1f} GiB{at_once} but "
                          f"{torch.device(device).type} has {have / GIB:.1f} GiB available; use {crop}{narrower}"
                          + (", or fewer --workers" if fits_at_once > 1 else ""))
    return need
