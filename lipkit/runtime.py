"""How a fit runs on its device, without changing what it computes unless asked.

:class:`SpeedOptions` gathers the switches that trade exact reproduction for speed (TF32,
channels-last, bf16 autocast, ``torch.compile``, fused Adam); all are off by default so that a seed
reproduces the FP32 result of the reference code. :func:`keep_freed_memory` (CPU allocator),
:class:`tf32_allowed` and :func:`make_adam` apply them.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class SpeedOptions:
    """Options that make a fit faster and change its numbers (see ``benchmarks/``).

    - ``allow_tf32``: let CUDA convolutions and matmuls use TF32. PyTorch enables it for cuDNN
      convolutions by default; lipkit turns it off during a fit (full FP32, as the DIP and LIP
      papers ran) unless asked. No effect on the CPU.
    - ``channels_last``: run the network in channels-last memory format (faster convolutions on
      recent GPUs; slower on this project's CPUs). The net is returned in the default format.
    - ``bf16``: the network's forward under bfloat16 autocast; loss, optimiser state and weights
      stay FP32.
    - ``compile``: ``torch.compile`` the network. Pays a compilation (minutes on a small CPU) in
      every new process; measured on 2 CPU cores it did not pay off.
    - ``fused_adam``: the fused Adam kernel (see :func:`make_adam`).
    """

    allow_tf32: bool = False
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False
    fused_adam: bool = False

    def check_weights(self, net: torch.nn.Module) -> None:
        """Refuse, in one line, options that ``net``'s weights cannot run with (before anything moves)."""
        dtypes = {p.dtype for p in net.parameters() if p.is_floating_point()}
        if self.bf16 and dtypes - {torch.float32}:
            # autocast casts the convolutions to bf16 and back to FP32; the backward through FP64 weights
            # then fails on CUDA ("Found dtype Double but expected Float"), seen on an H200
            raise ValueError(f"bf16 autocast trains FP32 weights, but the network's are "
                             f"{', '.join(sorted(str(d).removeprefix('torch.') for d in dtypes))}: convert it "
                             f"with net.float() or leave bf16 off")

    @classmethod
    def split(cls, speed: "SpeedOptions | None", options: dict) -> tuple["SpeedOptions", dict]:
        """``speed`` with the fields named in ``options`` replaced, and the options left over."""
        names = {f.name for f in fields(cls)}
        chosen = {k: bool(v) for k, v in options.items() if k in names}
        return replace(speed or cls(), **chosen), {k: v for k, v in options.items() if k not in names}


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_freed_memory_kept = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process instead of returning it to the OS at once.

    A fit allocates and frees the same activations every step. With glibc's defaults, blocks
    of a few MB are handed back to the kernel and faulted in again, zero-filled, on the next
    step: measured at 64 px on this project's CPU, 6,600 page faults and 10% of the step time
    in the kernel. Raising the mmap threshold to glibc's maximum (32 MiB) and the trim
    threshold to 1 GiB removes that; blocks above 32 MiB (full-resolution activations at
    256 px and more) still go back. Numbers are unchanged; resident memory stays at its peak.
    Called by :func:`fit` on the CPU, once per process. Returns whether the setting applied
    (False off glibc, or with ``LIPKIT_KEEP_FREED_MEMORY=0``).
    """
    global _freed_memory_kept
    if _freed_memory_kept:
        return True
    import os

    if not sys.platform.startswith("linux") or os.environ.get("LIPKIT_KEEP_FREED_MEMORY") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _freed_memory_kept = ok
    return ok


def release_freed_memory() -> None:
    """Hand the memory freed since the last fit back to the kernel (glibc's ``malloc_trim``), so
    that a process that waits for its next job, such as a kept worker (:mod:`lipkit.parallel`),
    does not hold a fit's peak; nothing happens off glibc."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def make_adam(params, lr: float, *, fused: bool = False) -> torch.optim.Adam:
    """Adam as DIP uses it (default betas, no weight decay).

    ``fused=True`` uses the fused kernel (CPU and CUDA): one pass over all parameters, about
    5 ms a step at 64 px on one CPU thread instead of 12 ms. It is deterministic but rounds
    differently, and over a short fit that is not negligible: on chapter 1's ×4 zebra crop
    (150 iterations) the best Y-PSNR moved by -0.66, -0.10 and -0.61 dB for seeds 0, 1, 2.
    The default is therefore PyTorch's standard implementation, the one the DIP and LIP code
    ran; devices without a fused kernel fall back to it. It runs with ``foreach`` (a few calls
    over all tensors instead of a loop over them), which gives bit-identical parameters (checked
    over 150-step fits) and is PyTorch's own default on a GPU.
    """
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except RuntimeError:  # a device without a fused Adam kernel
            pass
    return torch.optim.Adam(params, lr=lr, foreach=True)


class tf32_allowed:
    """Set the TF32 switches for the duration of a fit and restore them afterwards."""

    def __init__(self, allow: bool):
        self.allow = allow

    def __enter__(self):
        self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = self.allow
        torch.backends.cuda.matmul.allow_tf32 = self.allow

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved
        return False
