"""What every degradation operator provides."""

from __future__ import annotations

import torch
from torch import nn

from lipkit.seeding import generator as stream_generator


def as_batch(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.dim() == 3:
        return x[None], True
    if x.dim() == 4:
        return x, False
    raise ValueError(f"expected an image shaped (C,H,W) or (N,C,H,W), got shape {tuple(x.shape)}")


class Operator(nn.Module):
    """A degradation y = A(x) (+ noise), with x an image in [0, 1].

    - ``forward(x)`` applies the noiseless, differentiable A to (N, C, H, W) or (C, H, W); the
      fitting loop compares ``A(net(z))`` with the observation.
    - ``observe(x, seed=..)`` or ``observe(x, generator=..)`` makes the observation from a clean
      image, with explicit randomness: ``seed`` draws from the ``"observation"`` stream
      (:mod:`lipkit.seeding`), never shared with the network's input or weights.
    - ``loss(out, y)`` is the data-fidelity term; the default is the MSE of ``A(out)`` and ``y``.
    """

    def observe(self, x: torch.Tensor, *, generator: torch.Generator | None = None,
                seed: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(self(out), y)

    @staticmethod
    def _generator(x: torch.Tensor, generator, seed, *key) -> torch.Generator:
        if generator is not None and seed is not None:
            raise ValueError("pass either generator or seed, not both")
        if generator is None:
            if seed is None:
                raise ValueError(
                    "observations are random: pass seed=<int> or generator=<torch.Generator> "
                    "so the run is reproducible"
                )
            generator = stream_generator(seed, "observation", *key, device=x.device)
        return generator


def image_size(operator: Operator, observation: torch.Tensor) -> tuple[int, int]:
    """(H, W) of the clean image behind ``observation``: ×factor for super-resolution."""
    h, w = observation.shape[-2:]
    factor = getattr(operator, "factor", 1)
    return h * factor, w * factor


class Identity(Operator):
    """A = I with no noise: fitting the clean image itself (the official LIP mask search)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def observe(self, x, *, generator=None, seed=None):
        return x
