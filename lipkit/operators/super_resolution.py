"""×f super-resolution as DIP does it: lanczos2 model, PIL Lanczos observation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from lipkit.operators.base import Operator, as_batch
from lipkit.resample import Downsampler

MAX_FACTOR = 16


class SuperResolution(Operator):
    """A = DIP's ``Downsampler(lanczos2, phase 0.5, preserve_size)``: (N,C,H,W) -> (N,C,H/f,W/f).

    The observation is made the way DIP makes its low-resolution images: PIL's Lanczos (3-lobe)
    resize of the high-resolution image. The mismatch between the lanczos2 forward model and the
    Lanczos-3 observation is DIP's, and kept on purpose. H and W must be multiples of ``factor``.

    Example:
        >>> import torch
        >>> op = SuperResolution(4)
        >>> op.kernel.shape
        torch.Size([16, 16])
        >>> op(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self, factor: int, n_planes: int = 3, kernel_type: str = "lanczos2"):
        super().__init__()
        self.factor = self.check_factor(factor)
        self.down = Downsampler(n_planes, self.factor, kernel_type=kernel_type, phase=0.5, preserve_size=True)

    @staticmethod
    def check_factor(factor) -> int:
        """``factor`` as an int, or a ValueError that says the allowed range (odd factors work too)."""
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or not 2 <= factor <= MAX_FACTOR:
            raise ValueError(f"factor={factor!r} is out of range: it must be an integer from 2 to {MAX_FACTOR}")
        return int(factor)

    @property
    def kernel(self) -> torch.Tensor:
        """The 2-D kernel, (K, K): 16×16 for ×4, 32×32 for ×8."""
        return self.down.kernel[0, 0]

    def _check(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(
                f"the high-resolution image is {h}x{w}, not a multiple of the factor {self.factor}; "
                "crop it first (lipkit.data.crop_to_multiple)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xb, single = as_batch(x)
        self._check(xb)
        y = self.down(xb)
        return y[0] if single else y

    def observe(self, x, *, generator=None, seed=None):
        """PIL Lanczos downscale of x, per image; deterministic, so ``seed`` is not needed."""
        xb, single = as_batch(x)
        self._check(xb)
        h, w = xb.shape[-2:]
        outs = []
        for img in xb:
            arr = (img.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
            lr = pil.resize((w // self.factor, h // self.factor), Image.LANCZOS)
            lr_arr = np.asarray(lr, dtype=np.float32) / 255.0
            if lr_arr.ndim == 2:
                lr_arr = lr_arr[..., None]
            outs.append(torch.from_numpy(lr_arr).permute(2, 0, 1))
        y = torch.stack(outs).to(device=x.device, dtype=x.dtype)
        return y[0] if single else y

    def extra_repr(self) -> str:
        return f"factor={self.factor}, kernel=lanczos2 {tuple(self.kernel.shape)}"


def bicubic_upsample(y: torch.Tensor, factor: int) -> torch.Tensor:
    """DIP's bicubic baseline: PIL bicubic upscaling of the 8-bit low-resolution image, (C,h,w) -> (C,fh,fw)."""
    if y.dim() != 3:
        raise ValueError(f"expected one image (C,h,w), got shape {tuple(y.shape)}")
    from lipkit.data import to_pil, to_tensor

    img = to_pil(y)
    return to_tensor(img.resize((img.width * factor, img.height * factor), Image.BICUBIC)).to(y.device)
