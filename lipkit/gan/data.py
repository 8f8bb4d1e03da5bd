"""A user's folder of images for the GAN priors of chapter 6, as (N, C, H, W) float tensors in [-1, 1].

:func:`image_folder` reads e.g. CelebA-HQ for the paper tier; MNIST-5k, the digits of the MNIST
tier, is a labelled set of :mod:`lipkit.datasets` (:func:`lipkit.datasets.mnist5k`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def image_folder(root: str | os.PathLike, size: int = 256, *, limit: int | None = None,
                 channels: int = 3) -> torch.Tensor:
    """Every image in ``root`` (sorted by name, not recursive), resized to size×size: (N, C, size, size) in [-1, 1].

    For the paper tier, point it at a CelebA-HQ folder (the 30,000 images, or LIP's test images);
    the data cannot be downloaded here. ``limit`` reads only the first ``limit`` files.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist: point it at a folder of images "
                                "(for the paper tier, CelebA-HQ at 256x256 or larger)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if limit is not None:
        files = files[:limit]
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    out = torch.empty(len(files), channels, size, size)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                img = img.convert(mode).resize((size, size), Image.Resampling.BICUBIC)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{f} is not a readable image ({err}); remove it from {root}") from err
        arr = np.asarray(img, dtype=np.float32).reshape(size, size, channels)
        out[i] = torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1
    return out
