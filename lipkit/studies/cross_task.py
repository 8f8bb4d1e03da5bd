"""Tickets across restoration and classification (chapter 9): a restoration ticket trained as a classifier, a classification ticket fitted as an image prior, and where each keeps its weights.

- :class:`ClassifierJob` / :func:`classifier_runs`: a classifier trained from θ0 with an image
  prior's masks (moved by :func:`lipkit.lottery.classify.classifier_masks`), with random masks of
  the same per-layer counts (``random_like``) or dense, each record cached by what made it;
- :func:`prior_ticket`: a level of a classification-IMP run as a ticket of the image prior (its
  masks moved by :func:`lipkit.lottery.classify.prior_masks`, the DIP's θ0 of the seed), for
  :mod:`lipkit.studies.transfer`;
- :func:`random_overlap`: the Jaccard overlap two random mask sets with the given per-layer counts
  have in expectation, beside the measured one (:func:`lipkit.pruning.masks.mask_overlap`);
- :func:`ticket_classifier_jobs`, :func:`classification_ticket_jobs` and :func:`kept_weights`: chapter
  9's three experiments as jobs and numbers, so that the page and its test build the same ones.
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
# settings of the IMP run, not of one training from θ0: left out of a job's identity
IMP_ONLY = ("rounds", "rate", "seeds", "rewind", "rewind_iteration", "criterion", "baselines")


@dataclass
class ClassifierJob:
    """Train the classifier of ``settings`` (dataset, size, schedule, head, width) from θ0 of ``seed``
    with ``masks`` (an image prior's, skip-net names), with random masks of their per-layer counts
    (``variant="random_like"``) or dense; ``label`` says whose masks they are and ``level`` their IMP
    level (the record's ``round``). Only the training settings name the job (not :data:`IMP_ONLY`)."""

    masks: Mapping[str, torch.Tensor] | None
    settings: ClassifyImpSettings
    seed: int
    variant: str = "ticket"
    label: str = ""
    level: int = 0

    def __post_init__(self):
        if self.variant not in CLASSIFIER_VARIANTS:
            raise ValueError(f"variant must be one of {CLASSIFIER_VARIANTS}, got {self.variant!r}")
        if (self.masks is None) != (self.variant == "dense"):
            raise ValueError("a dense job has no masks, and a ticket or random_like job needs them")

    def describe(self) -> dict:
        training = {k: v for k, v in asdict(self.settings).items() if k not in IMP_ONLY}
        return dict(settings=training, seed=int(self.seed), variant=self.variant, label=self.label,
                    level=int(self.level))

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
                           label=job.label, round=job.level), None


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


def compared_levels(levels: Sequence[int], *, classify_rounds: int, restoration_rounds: int) -> list[int]:
    """``levels`` (IMP levels where the two kinds of ticket meet), checked: whole numbers from 1 to the
    rounds both searches run; a bad list is refused in one line."""
    from lipkit.errors import UsageError

    top = min(classify_rounds, restoration_rounds)
    if not levels or not all(isinstance(k, int) and 1 <= k <= top for k in levels) or len(set(levels)) < len(levels):
        raise UsageError(f"compare_rounds must be distinct levels from 1 to {top} (the rounds both the classification "
                         f"IMP ({classify_rounds}) and the restoration IMP ({restoration_rounds}) run), got {levels!r}; "
                         f"lower them or raise classify_rounds / rounds")
    return sorted(levels)


def ticket_classifier_jobs(run, settings: ClassifyImpSettings, levels: Sequence[int], *,
                           random_levels: Sequence[int] | None = None) -> list[ClassifierJob]:
    """Chapter 9 (a): every seed's ticket of the image-prior IMP ``run`` at each of ``levels``, trained as
    the classifier of ``settings`` from θ0, then random masks of the same per-layer counts at
    ``random_levels`` (default: all ``levels``); per level, seed, then variant."""
    random_levels = levels if random_levels is None else random_levels
    label = f"{run.config['task']['kind']} ticket of {run.config['task']['image']}"
    return [ClassifierJob(run.ticket(s, k).masks, settings, s, v, label, level=k) for k in levels for s in run.seeds
            for v in ("ticket", "random_like") if v == "ticket" or k in random_levels]


def classification_ticket_jobs(run, task, levels: Sequence[int]) -> list:
    """Chapter 9 (b): every seed's classification ticket of ``run`` at each of ``levels`` fitted as an image
    prior to ``task``, and random masks of its per-layer counts (:class:`lipkit.studies.transfer.TransferJob`,
    the fit's seed the ticket's); per level, seed, then variant."""
    from lipkit.studies.transfer import TransferJob

    return [TransferJob(prior_ticket(run, s, k, image_size=task.image_size), task, v, seed=s)
            for k in levels for s in run.seeds for v in ("ticket", "random_like")]


def kept_weights(restoration: Mapping[str, torch.Tensor], classification: Mapping[str, torch.Tensor]) -> dict:
    """Chapter 9 (c): where an image prior's masks (skip-net names) and a classifier's (as stored,
    ``backbone.`` names) keep their weights, over the convs the two nets share (the input convs,
    shaped otherwise, left out): the Jaccard overlap of the kept sets (``iou``), what random masks of
    the same per-layer counts would have (``random_iou``), and each one's per-layer density."""
    from lipkit.lottery.classify import BACKBONE
    from lipkit.pruning.masks import mask_overlap

    shared = [n for n, m in restoration.items()
              if BACKBONE + n in classification and classification[BACKBONE + n].shape == m.shape]
    a = {n: restoration[n] for n in shared}
    b = {n: classification[BACKBONE + n] for n in shared}
    return dict(layers=shared, iou=mask_overlap(a, b)["iou"], random_iou=random_overlap(a, b),
                restoration_density=[float(a[n].mean()) for n in shared],
                classification_density=[float(b[n].mean()) for n in shared],
                restoration_kept=int(sum(a[n].sum() for n in shared)),
                classification_kept=int(sum(b[n].sum() for n in shared)))
