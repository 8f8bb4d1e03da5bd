"""Degradation operators y = A(x) (+ noise), each a small ``nn.Module``:

- :class:`Denoising` (σ in [0, 1] units),
- :class:`Inpainting` (mask from a file, Bernoulli, or text),
- :class:`SuperResolution` (DIP's lanczos2 ``Downsampler``; PIL Lanczos observation).
"""

from lipkit.operators.base import Identity, Operator
from lipkit.operators.compressive import CompressiveSensing
from lipkit.operators.denoise import Denoising
from lipkit.operators.inpaint import Inpainting
from lipkit.operators.super_resolution import SuperResolution, bicubic_upsample

__all__ = ["Identity", "Operator", "CompressiveSensing", "Denoising", "Inpainting", "SuperResolution", "bicubic_upsample"]
