"""DIP's resampling kernels and its ``Downsampler`` layer (models/downsampler.py), ported.

The super-resolution operator and the skip net's optional ``lanczos`` downsampling both use it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

KERNEL_TYPES = ("lanczos2", "lanczos3", "gauss12", "gauss1sq2", "box")


def get_kernel(factor: int, kernel_type: str, phase: float, kernel_width: int,
               support: int | None = None, sigma: float | None = None) -> np.ndarray:
    """DIP's ``get_kernel``: a separable 2-D kernel normalised to sum 1, float64.

    With ``phase=0.5`` (and not ``box``) the kernel is ``(kernel_width-1)²``: the taps sit between
    the pixels of the high-resolution grid.
    """
    if kernel_type not in ("lanczos", "gauss", "box"):
        raise ValueError(f"kernel_type must be 'lanczos', 'gauss' or 'box', got {kernel_type!r}")
    if phase == 0.5 and kernel_type != "box":
        size = kernel_width - 1
    else:
        size = kernel_width
    kernel = np.zeros((size, size))
    if kernel_type == "box":
        if phase != 0.5:
            raise ValueError("box kernel needs phase 0.5")
        kernel[:] = 1.0 / (kernel_width * kernel_width)
    elif kernel_type == "gauss":
        if sigma is None:
            raise ValueError("gauss kernel needs sigma")
        if phase == 0.5:
            raise ValueError("gauss kernel with phase 0.5 is not implemented (as in DIP)")
        center = (kernel_width + 1.0) / 2.0
        sigma_sq = sigma * sigma
        for i in range(1, size + 1):
            for j in range(1, size + 1):
                di, dj = (i - center) / 2.0, (j - center) / 2.0
                kernel[i - 1, j - 1] = math.exp(-(di * di + dj * dj) / (2 * sigma_sq)) / (2 * math.pi * sigma_sq)
    else:
        if not support:
            raise ValueError("lanczos kernel needs support")
        center = (kernel_width + 1) / 2.0
        for i in range(1, size + 1):
            for j in range(1, size + 1):
                if phase == 0.5:
                    di = abs(i + 0.5 - center) / factor
                    dj = abs(j + 0.5 - center) / factor
                else:
                    di = abs(i - center) / factor
                    dj = abs(j - center) / factor
                val = 1.0
                if di != 0:
                    val *= support * math.sin(math.pi * di) * math.sin(math.pi * di / support) / (math.pi**2 * di * di)
                if dj != 0:
                    val *= support * math.sin(math.pi * dj) * math.sin(math.pi * dj / support) / (math.pi**2 * dj * dj)
                kernel[i - 1, j - 1] = val
    return kernel / kernel.sum()


def downsampler_kernel(factor: int, kernel_type: str = "lanczos2", phase: float = 0.5) -> np.ndarray:
    """The kernel DIP's ``Downsampler`` builds for ``kernel_type``: lanczos2 ×4 gives 16×16."""
    if kernel_type == "lanczos2":
        return get_kernel(factor, "lanczos", phase, 4 * factor + 1, support=2)
    if kernel_type == "lanczos3":
        return get_kernel(factor, "lanczos", phase, 6 * factor + 1, support=3)
    if kernel_type == "gauss12":
        return get_kernel(factor, "gauss", phase, 7, sigma=0.5)
    if kernel_type == "gauss1sq2":
        return get_kernel(factor, "gauss", phase, 9, sigma=1.0 / math.sqrt(2.0))
    if kernel_type == "box":
        return get_kernel(factor, "box", phase, factor)
    raise ValueError(f"kernel_type must be one of {KERNEL_TYPES}, got {kernel_type!r}")


class Downsampler(nn.Module):
    """DIP's anti-aliased strided downsampling: (N, C, H, W) -> (N, C, H/f, W/f).

    DIP applies one kernel per plane as a dense Conv2d with a diagonal weight; a depthwise
    convolution (``groups=C``) is the same linear map without the C² zeros. With
    ``preserve_size`` the input is replication-padded by (K-f)/2 (even K) so H/f comes out; for
    an odd factor K-f is odd, and the extra pixel goes after (right, bottom).
    The kernel is a buffer, never a parameter: it is not optimised and not pruned.
    """

    def __init__(self, n_planes: int, factor: int, kernel_type: str = "lanczos2",
                 phase: float = 0.5, preserve_size: bool = True):
        super().__init__()
        if phase not in (0.0, 0.5):
            raise ValueError(f"phase must be 0 or 0.5, got {phase}")
        kernel = downsampler_kernel(factor, kernel_type, phase)
        self.factor = int(factor)
        self.n_planes = int(n_planes)
        k = torch.as_tensor(kernel, dtype=torch.float32)
        self.register_buffer("kernel", k.expand(n_planes, 1, *k.shape).clone())
        size = kernel.shape[0]
        if preserve_size:
            if size % 2 == 1:
                before = after = (size - 1) // 2
            else:  # DIP's (K - f)/2 on each side; an odd factor puts the odd pixel after, so H/f comes out
                before = (size - factor) // 2
                after = size - factor - before
            self.pad = nn.ReplicationPad2d((before, after, before, after))
        else:
            self.pad = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(self.pad(x), self.kernel, stride=self.factor, groups=self.n_planes)
