"""Tickets across restoration and classification (chapter 9): a restoration ticket trained as a classifier, a classification ticket fitted as an image prior, and where each keeps its weights.

- :class:`ClassifierJob` / :func:`classifier_runs`: a classifier trained from θ0 with an image
  prior's masks (moved by :func:`lipkit.lottery.classify.classifier_masks`), with random masks of
  the same per-layer counts (``random_like``) or dense, each record cached by what made it;
- :func:`prior_ticket`: a level of a classification-IMP run as a ticket of the image prior (its
  masks moved by :func:`lipkit.lottery.classify.prior_masks`, the DIP's θ0 of the seed), for
  :mod:`lipkit.studies.transfer`;
- :func:`random_overlap`: the Jaccard overlap two random mask sets with the given per-layer counts
  have in expectation, beside the measured one (:func:`lipkit.pruning.masks.mask_overlap`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import torch

from lipkit.datasets import labelled
from lipkit.device import resolve_device
from lipkit.lottery.classify import (accuracy_record, classifier_masks, classifier_theta0, prior_masks,
                                     train_classifier)
from lipkit.lottery.settings import ClassifyImpSettings
from lipkit.models import theta0
from lipkit.parallel import run_cached
from lipkit.pruning.masks import random_like
from lipkit.pruning.tickets import Ticket
from lipkit.store.cache import RecordCache

CLASSIFIER_VARIANTS = ("ticket", "random_like", "dense")


@dataclass
class ClassifierJob:
    """Train the classifier of ``settings`` (dataset, size, schedule, head, width) from θ0 of ``seed``
    with ``masks`` (an image prior's, skip-net names), with random masks of their per-layer counts
    (``variant="random_like"``) or dense; ``label`` says whose masks they are."""

    masks: Mapping[str, torch.Tensor] | None
    settings: ClassifyImpSettings
    seed: int
    variant: str = "ticket"
    label: str = ""

    def __post_init__(self):
        if self.variant not in CLASSIFIER_VARIANTS:
            raise ValueError(f"variant must be one of {CLASSIFIER_VARIANTS}, got {self.variant!r}")
        if (self.masks is None) != (self.variant == "dense"):
            raise ValueError("a dense job has no masks, and a ticket or random_like job needs them")

    def describe(self) -> dict:
        return dict(settings=asdict(self.settings), seed=int(self.seed), variant=self.variant, label=self.label)

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        return sorted((self.masks or {}).items())


def train_with_masks(job: ClassifierJob, data_root=None, device=None) -> tuple[dict, None]:
    """Run ``job``: its record (:func:`lipkit.lottery.classify.accuracy_record`), and no image."""
    s, device = job.settings, resolve_device(device)
    data = labelled(s.dataset, data_root)
    net = classifier_theta0(job.seed, channels=int(data[0].shape[1]), size=s.size, classes=int(data[1].max()) + 1,
                            head=s.head, arch=s.arch)
    masks = None
    if job.masks is not None:
        masks = classifier_masks(job.masks, net)
        if job.variant == "random_like":
            masks = random_like(masks, seed=job.seed, key=("classifier", job.label))
    numbers = train_classifier(net, data, s, masks=masks, seed=job.seed, key=("cross_task", job.variant), device=device)
    return accuracy_record(numbers, net, masks if masks is not None else classifier_masks({}, net),
                           epochs=s.epochs, device=device, variant=job.variant, seed=job.seed,
                           label=job.label), None


def classifier_runs(jobs: Sequence[ClassifierJob], *, cache_dir: str | os.PathLike, data_root=None, device=None,
                    workers: int | None = None, progress: bool = False) -> list[dict]:
    """The record of every job, in order, each trained once and then read from ``cache_dir``."""
    cache = RecordCache(cache_dir, "classify_", computed_by="lipkit.studies.cross_task")
    keys = [cache.key(job.describe(), job.tensors()) for job in jobs]
    return run_cached(train_with_masks, [(job, data_root, device) for job in jobs], keys, cache, workers=workers,
                      device=device, desc="classifiers", progress=progress)


def prior_ticket(run, seed: int, level: int, *, image_size: Sequence[int]) -> Ticket:
    """Level ``level`` of ``seed`` in the classification-IMP ``run`` (an :class:`lipkit.lottery.imp.ImpRun`) as a
    ticket of the image prior of the same width: its backbone masks on the DIP's θ0 of ``seed``."""
    from lipkit.store.folder import load_masks

    net = theta0(seed, **run.config["arch"])
    masks = prior_masks(load_masks(run.folder.masks(seed, level)), net)
    return Ticket.from_net(net, masks, round=level, seed=seed, task="classify",
                           search_image=run.config["task"]["dataset"], image_size=list(image_size), search_on="labels",
                           rate=run.config["rate"])


def random_overlap(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Expected Jaccard overlap (intersection over union, all layers pooled) of two random mask sets
    keeping, in every layer, as many weights as ``a`` and ``b`` do: per layer, E|A∩B| = k_a·k_b / n."""
    inter = union = 0.0
    for name in a:
        n, ka, kb = a[name].numel(), float(a[name].sum()), float(b[name].sum())
        shared = ka * kb / n
        inter, union = inter + shared, union + ka + kb - shared
    return inter / union if union else 1.0
