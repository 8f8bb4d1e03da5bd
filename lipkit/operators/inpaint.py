"""Inpainting: only the pixels where the mask is 1 are observed."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from lipkit.operators.base import Operator


class Inpainting(Operator):
    """A(x) = mask ⊙ x with a {0, 1} mask shaped (1, H, W) (shared by the channels) or (C, H, W).

    Masks come from a file (:meth:`from_file`: 255 = known, DIP's convention), a Bernoulli draw
    (:meth:`bernoulli`: per pixel and, by default, per channel, as DIP's ``get_bernoulli_mask``
    and the LIP code) or drawn text (:meth:`text`).

    Example:
        >>> import torch
        >>> op = Inpainting.bernoulli((3, 16, 16), zero_fraction=0.5, seed=0)
        >>> y = op.observe(torch.ones(3, 16, 16))
        >>> 0.35 < float(y.mean()) < 0.65
        True
    """

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.dim() == 2:
            mask = mask[None]
        if mask.dim() != 3:
            raise ValueError(f"mask must be shaped (H,W), (1,H,W) or (C,H,W), got {tuple(mask.shape)}")
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError("mask values must be 0 (missing) or 1 (known)")
        if not bool(mask.any()):
            raise ValueError("the inpainting mask keeps no pixel (every value is 0, missing): nothing would be "
                             "observed; a known pixel is 1 (255 in a mask file)")
        self.register_buffer("mask", mask)

    @property
    def known_fraction(self) -> float:
        """Fraction of observed entries (pixels × channels of the mask)."""
        return float(self.mask.mean())

    def _check(self, x: torch.Tensor) -> None:
        mh, mw = self.mask.shape[-2:]
        h, w = x.shape[-2:]
        if (mh, mw) != (h, w):
            raise ValueError(
                f"the mask is {mh}x{mw} but the image is {h}x{w}; crop or resize the mask with the "
                "same operation as the image (e.g. Inpainting(lipkit.data.center_crop(mask, ...)))"
            )
        if self.mask.shape[0] not in (1, x.shape[-3]):
            raise ValueError(f"the mask has {self.mask.shape[0]} channels but the image has {x.shape[-3]}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x * self.mask

    def observe(self, x, *, generator=None, seed=None):
        """Masked image; deterministic, so ``seed`` is not needed."""
        return self(x)

    # --- mask sources -----------------------------------------------------------------------
    @classmethod
    def from_file(cls, path_or_name: str | os.PathLike) -> "Inpainting":
        """Mask from an image file or a registry name such as ``"dip/kate_mask"``: 255 = known.

        A grey or RGB file is read through its first channel after conversion to L; any value
        above 127 counts as known.
        """
        from lipkit.data import open_image_file, resolve

        path = resolve(path_or_name)
        img = open_image_file(path).convert("L")
        arr = np.asarray(img)
        return cls(torch.from_numpy((arr > 127).astype(np.float32))[None])

    @classmethod
    def bernoulli(cls, shape: tuple[int, int, int], zero_fraction: float = 0.5, *,
                  seed: int | None = None, generator: torch.Generator | None = None,
                  per_channel: bool = True) -> "Inpainting":
        """Drop each entry with probability ``zero_fraction``: mask = U[0,1) > zero_fraction.

        ``shape`` is (C, H, W). ``per_channel=False`` draws one mask and shares it over channels.
        """
        if not 0 <= zero_fraction < 1:
            raise ValueError(f"zero_fraction must be in [0, 1), got {zero_fraction}")
        c, h, w = shape
        g = Operator._generator(torch.empty(0), generator, seed, "bernoulli_mask")
        draw_shape = (c, h, w) if per_channel else (1, h, w)
        mask = (torch.rand(draw_shape, generator=g) > zero_fraction).float()
        return cls(mask)

    @classmethod
    def text(cls, shape: tuple[int, int], text: str = "hello world", font_size: int | None = None,
             line_spacing: float = 1.6) -> "Inpainting":
        """Lines of ``text`` drawn over an H×W image (missing where the glyphs are), shared by channels.

        DIP's ``get_text_mask`` draws one line in FreeSansBold; here the text repeats down the
        image in Pillow's bundled font so the mask is the same on every machine.
        """
        h, w = shape
        font_size = font_size or max(8, h // 12)
        font = ImageFont.load_default(size=font_size)
        canvas = Image.new("L", (w, h), 255)
        draw = ImageDraw.Draw(canvas)
        y = font_size // 2
        while y < h:
            draw.text((font_size // 2, y), text, font=font, fill=0)
            y += int(font_size * line_spacing)
        arr = np.asarray(canvas) > 127
        return cls(torch.from_numpy(arr.astype(np.float32))[None])

    def extra_repr(self) -> str:
        return f"mask={tuple(self.mask.shape)}, known={self.known_fraction:.3f}"
