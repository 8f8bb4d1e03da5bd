"""Compressive sensing with corrupted measurements: y = A·vec(x) + noise, some rows adversarial.

The robust-CS setting of Jalal et al. (2020) that LIP uses for its GAN experiments. Images live on
the generator's scale, usually [-1, 1]; the metric is the per-pixel MSE on that scale.
"""

from __future__ import annotations

import math

import torch

from lipkit.operators.base import Operator
from lipkit.seeding import generator as stream_generator

CORRUPTIONS = ("lip", "jalal", "none")


def _student_t(shape, dof: int, generator: torch.Generator) -> torch.Tensor:
    """Student-t(dof) samples for an integer ``dof``: N(0,1) / sqrt(χ²(dof)/dof), seeded."""
    z = torch.randn(shape, generator=generator, device=generator.device)
    chi2 = torch.randn((dof, *shape), generator=generator, device=generator.device).pow(2).sum(0)
    return z / (chi2 / dof).sqrt()


class CompressiveSensing(Operator):
    """m random linear measurements of an image shaped ``(C, H, W)``, ``m_bad`` of them corrupted.

    ``forward(x)`` maps (N, C, H, W) or (C, H, W) to (N, m) or (m,): the noiseless A·vec(x), the
    same for every corruption preset. ``observe`` adds the noise and the corruption. Rows
    ``m_good .. m-1`` are the corrupted ones (``bad_rows``); methods must not be told which.

    Presets (``corruption``), with m_bad = floor(m · ``bad_fraction``):

    - ``"lip"`` (LIP's code, the default): clean rows N(0,1)/√m_good; corrupted rows all ones
      with y = 10⁴; noise ``noise_std``·N(0,1) on the clean rows only.
    - ``"jalal"`` (Jalal et al.'s code): clean rows Student-t(4)/√n; corrupted rows all ones
      /√m_bad with y = 1; heavy-tailed noise ``noise_std``·t(2) on every row.
    - ``"none"``: N(0,1)/√m rows, no corruption, ``noise_std``·N(0,1) noise.

    The matrix is drawn once from ``seed`` (the ``"operator"`` stream, on the CPU: the same on
    every device; ``observe``'s noise draws from the ``"observation"`` stream) and kept as a
    buffer, so ``.to(device)`` moves it; an m × n float32 matrix takes 4·m·n bytes
    (786 MB for the paper's 1000 × 3·256²).

    Example:
        >>> import torch
        >>> op = CompressiveSensing((1, 8, 8), m=50, bad_fraction=0.02, seed=0)
        >>> op.m_good, op.m_bad, tuple(op.A.shape)
        (49, 1, (50, 64))
        >>> y = op.observe(torch.zeros(2, 1, 8, 8), seed=1)
        >>> tuple(y.shape), float(y[0, -1])
        ((2, 50), 10000.0)
    """

    def __init__(self, shape: tuple[int, int, int], m: int, *, corruption: str = "lip", bad_fraction: float = 0.02,
                 noise_std: float = 0.01, bad_value: float | None = None, seed: int = 0):
        super().__init__()
        if len(shape) != 3:
            raise ValueError(f"shape is the image's (C, H, W), got {tuple(shape)}")
        if corruption not in CORRUPTIONS:
            raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {corruption!r}")
        n = math.prod(shape)
        if not 1 <= m:
            raise ValueError(f"m (the number of measurements) must be >= 1, got {m}")
        if not 0 <= bad_fraction < 0.5:
            raise ValueError(f"bad_fraction must be in [0, 0.5): the corrupted share of the m rows, got {bad_fraction}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        m_bad = 0 if corruption == "none" else int(math.floor(m * bad_fraction + 1e-9))
        m_good = m - m_bad
        g = stream_generator(seed, "operator", "cs_matrix")
        if corruption == "jalal":
            clean = _student_t((m_good, n), 4, g) / math.sqrt(n)
            bad = torch.ones(m_bad, n) / math.sqrt(max(m_bad, 1))
            default_bad = 1.0
        else:
            clean = torch.randn((m_good, n), generator=g) / math.sqrt(m_good)
            bad = torch.ones(m_bad, n)
            default_bad = 1e4
        self.shape, self.n, self.m, self.m_good, self.m_bad = tuple(shape), n, int(m), m_good, m_bad
        self.corruption, self.noise_std, self.seed = corruption, float(noise_std), int(seed)
        self.bad_value = float(default_bad if bad_value is None else bad_value)
        self.register_buffer("A", torch.cat([clean, bad]))
        self.register_buffer("bad_rows", torch.arange(m) >= m_good)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-3:]) != self.shape:
            raise ValueError(f"the operator measures images shaped {self.shape}, got {tuple(x.shape)}")
        return x.flatten(-3) @ self.A.T

    def observe(self, x, *, generator=None, seed=None):
        """Noisy, corrupted measurements y, shaped (N, m) for a batch or (m,) for one image."""
        g = self._generator(x, generator, seed)
        clean = self(x)
        if self.corruption == "jalal":
            noise = self.noise_std * _student_t(tuple(clean.shape), 2, g)
        else:
            noise = self.noise_std * torch.randn(clean.shape, generator=g, device=g.device)
        noise = noise.to(clean)
        if self.corruption == "lip":
            noise = noise * (~self.bad_rows)  # LIP's code adds noise to the clean rows only
        y = clean + noise
        bad_y = torch.full_like(y, self.bad_value) + (noise if self.corruption == "jalal" else 0)
        return torch.where(self.bad_rows, bad_y, y)

    def extra_repr(self) -> str:
        return (f"shape={self.shape}, m={self.m} ({self.m_good} clean + {self.m_bad} corrupted), "
                f"corruption={self.corruption!r}, noise_std={self.noise_std:g}, seed={self.seed}")
