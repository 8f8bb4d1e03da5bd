"""Additive white Gaussian noise, DIP's denoising setting."""

from __future__ import annotations

import torch

from lipkit.operators.base import Operator


class Denoising(Operator):
    """y = clip(x + σ·n, 0, 1) with n ~ N(0, 1) per pixel and channel; A is the identity.

    ``sigma`` is in image units ([0, 1] intensities): DIP's σ=25 is ``25/255``.

    Example:
        >>> import torch
        >>> op = Denoising(25 / 255)
        >>> x = torch.full((3, 8, 8), 0.5)
        >>> y = op.observe(x, seed=0)
        >>> y.shape, bool((y >= 0).all() and (y <= 1).all())
        (torch.Size([3, 8, 8]), True)
    """

    def __init__(self, sigma: float):
        super().__init__()
        sigma = float(sigma)
        if not 0 < sigma <= 1:
            hint = f" Did you mean {sigma:g}/255 = {sigma / 255:.4f}?" if 1 < sigma <= 255 else ""
            raise ValueError(
                f"sigma={sigma:g} is out of range: it is the noise std in [0, 1] image units and must be in "
                f"(0, 1].{hint}"
            )
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def observe(self, x, *, generator=None, seed=None):
        g = self._generator(x, generator, seed)
        noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        return (x + self.sigma * noise).clamp(0, 1)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.5f} (= {self.sigma * 255:.1f}/255)"
