"""Classification IMP: the LIP backbone with a linear head, trained as an image classifier, the lottery driver's fourth trainer.

The official code (``DIP_LTH/LTH_IMP_Classification.py``) trains the skip net, given 3 input
channels and followed by Flatten → Linear → Sigmoid, on CIFAR-10 upsampled to 50 × 50, and prunes
20 % of its conv weights by global magnitude for 25 rounds **without rewinding**: each round goes
on from the trained weights with a fresh optimiser and schedule. Here that is one more trainer of
:mod:`lipkit.lottery.driver` (resumable, extendable, baselines as branches), with the rewind a
setting (:class:`lipkit.lottery.settings.ClassifyImpSettings`: ``none``, as the code; ``theta0``; or
``early``, the dense weights after some SGD steps).

- :class:`Classifier`: the backbone (the skip net reading the images' channels, 3 output channels,
  no sigmoid) and the head. Only the backbone's convs are pruned, so that masks move between a
  classifier and an image prior (:func:`classifier_masks`, :func:`prior_masks`; the two convs that
  read the input have other shapes in the two tasks and stay dense when masks move).
- θ0 of seed s is the DIP's θ0 of seed s (:func:`lipkit.models.theta0`) in every backbone weight
  but the input convs, as the official code loads the DIP's initial weights into its classifier;
  those and the head come from the classifier's own draw.
- A level trains ``epochs`` epochs of SGD with the masks held at zero, then measures the test
  accuracy; its record holds the accuracy after the last epoch (``test_accuracy``, what the
  official code reports), the best over the epochs with its epoch (an oracle, as the PSNRs' best),
  the per-epoch curve, the last epoch's training loss, and the masks' counts.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lipkit.datasets import labelled, resize
from lipkit.device import resolve_device
from lipkit.lottery.driver import Trained, start_run
from lipkit.lottery.imp import ImpRun
from lipkit.lottery.settings import ClassifyImpSettings
from lipkit.models import skip_net, theta0
from lipkit.pruning.masks import apply_masks, conv_weights_of, hold, report_fields, sparsity_report
from lipkit.seeding import generator as stream_generator
from lipkit.seeding import seeded

BACKBONE = "backbone."  # the prefix of the backbone's parameter names in a Classifier


class Classifier(nn.Module):
    """The skip net of ``arch`` reading ``channels``-channel images of ``size`` × ``size`` px, its
    3-channel output flattened into a linear layer over ``classes`` (then a sigmoid, with
    ``head="sigmoid"``, as the official ``skip_classifier``): (N, channels, size, size) -> (N, classes).

    BatchNorm uses batch statistics while training and running averages in ``eval()``, as any
    classifier (a DIP keeps batch statistics always: :class:`lipkit.models.skip.SkipNet`)."""

    def __init__(self, channels: int, size: int, classes: int = 10, *, head: str = "sigmoid",
                 arch: Mapping | None = None):
        super().__init__()
        self.backbone = skip_net(num_input_channels=channels, num_output_channels=3, need_sigmoid=False,
                                 **dict(arch or {}))
        self.head = nn.Linear(3 * size * size, classes)
        self.sigmoid = head == "sigmoid"
        self.config = dict(arch="skip_classifier", channels=channels, size=size, classes=classes, head=head,
                           backbone={k: v for k, v in self.backbone.config.items() if k != "arch"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.head(self.backbone(x).flatten(1))
        return torch.sigmoid(scores) if self.sigmoid else scores

    def train(self, mode: bool = True) -> "Classifier":
        self.training = mode
        for module in self.modules():  # past SkipNet.train, which refuses eval mode for a DIP
            module.training = mode
        return self


def _moved(masks: Mapping[str, torch.Tensor], net: nn.Module, name_there) -> "OrderedDict[str, torch.Tensor]":
    """``masks`` as masks of ``net``'s conv weights, ``name_there(name)`` naming each in ``masks``; a
    weight whose mask is missing or shaped otherwise (a conv reading the input) stays dense."""
    out = OrderedDict()
    for name, weight in conv_weights_of(net).items():
        mask = masks.get(name_there(name))
        out[name] = mask.clone() if mask is not None and mask.shape == weight.shape else torch.ones_like(weight)
    return out


def classifier_masks(masks: Mapping[str, torch.Tensor], net: Classifier) -> "OrderedDict[str, torch.Tensor]":
    """An image prior's masks (skip-net parameter names) as masks of ``net``'s backbone; the convs
    reading the input (other shapes) stay dense."""
    return _moved(masks, net, lambda name: name[len(BACKBONE):])


def prior_masks(masks: Mapping[str, torch.Tensor], net: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """A classifier's backbone masks as masks of the image prior ``net`` (a skip net); the convs
    reading z (other shapes) stay dense."""
    return _moved(masks, net, lambda name: BACKBONE + name)


def accuracy(net: Classifier, images: torch.Tensor, labels: torch.Tensor, size: int, *, device,
             batch_size: int = 500) -> float:
    """Fraction of ``images`` whose highest score is their label (``net`` in eval mode)."""
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = resize(images[i:i + batch_size], size).to(device)
            correct += int((net(x).argmax(1).cpu() == labels[i:i + batch_size]).sum())
    return correct / len(images)


def train_classifier(net: Classifier, data: Sequence[torch.Tensor], settings: ClassifyImpSettings, *,
                     masks: Mapping | None = None, seed: int, key: tuple = (), steps: int | None = None,
                     device=None) -> dict:
    """SGD on ``data`` (train images and labels, test images and labels) for ``settings.epochs``
    epochs (or ``steps`` steps), the masks held at zero after every step, a fresh optimiser and
    schedule; the batches' order is stream ``classify_data_order`` of ``seed`` and ``key``.
    Returns the accuracies (after each epoch; none when ``steps`` stops it first), the last
    epoch's mean training loss and the seconds."""
    device = resolve_device(device)
    train_x, train_y, test_x, test_y = data
    net.to(device)
    held = apply_masks(net, masks or {})
    opt = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum,
                          weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(settings.milestones), gamma=0.1)
    order = stream_generator(seed, "classify_data_order", *key)
    batches = len(train_x) // settings.batch_size
    if batches < 1:
        raise ValueError(f"batch_size {settings.batch_size} is larger than the {len(train_x)} training images")
    curve, losses, done, start = [], [], 0, time.perf_counter()
    for _ in range(settings.epochs):
        net.train()
        perm = torch.randperm(len(train_x), generator=order)
        losses = []
        for b in range(batches):
            idx = perm[b * settings.batch_size:(b + 1) * settings.batch_size]
            loss = F.cross_entropy(net(resize(train_x[idx], settings.size).to(device)), train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hold(held)
            losses.append(loss.detach())  # summed once per epoch: no host sync per step
            done += 1
            if steps is not None and done >= steps:
                return dict(accuracy_curve=curve, train_loss=_mean(losses), seconds=time.perf_counter() - start)
        schedule.step()
        curve.append(accuracy(net, test_x, test_y, settings.size, device=device))
    return dict(accuracy_curve=curve, train_loss=_mean(losses), seconds=time.perf_counter() - start)


def _mean(losses: Sequence[torch.Tensor]) -> float:
    return float(torch.stack(losses).double().mean())


def classifier_theta0(seed: int, *, channels: int, size: int, classes: int, head: str, arch: Mapping) -> Classifier:
    """θ0 of ``seed``: the DIP's θ0 of the seed (:func:`lipkit.models.theta0`) in every backbone weight
    of the DIP's shape; the input convs and the head from the classifier's own draw; on the CPU."""
    with seeded(seed, "weights", "classifier"), torch.device("cpu"):  # the head and input convs: their own draw
        net = Classifier(channels, size, classes, head=head, arch=arch)
    prior = theta0(seed, **arch).state_dict()
    state = net.state_dict()
    for name, value in prior.items():
        if BACKBONE + name in state and state[BACKBONE + name].shape == value.shape:
            state[BACKBONE + name] = value.clone()
    net.load_state_dict(state)
    return net


def accuracy_record(numbers: Mapping, net: Classifier, masks: Mapping, *, epochs: int, device, **identity) -> dict:
    """A trained classifier's record: ``identity``, the test accuracy after the last epoch, the best
    over the epochs and its epoch, the curve, the last epoch's loss, seconds, threads, device and the
    masks' counts (``numbers`` from :func:`train_classifier`)."""
    curve = numbers["accuracy_curve"]
    best = max(range(len(curve)), key=curve.__getitem__)
    return dict(identity, test_accuracy=curve[-1], best_accuracy=curve[best], best_epoch=best + 1,
                accuracy_curve=curve, train_loss=numbers["train_loss"], epochs=epochs,
                seconds=round(numbers["seconds"], 3), threads=torch.get_num_threads(), device=str(device),
                **report_fields(sparsity_report(net, masks)))


class ClassifyTrainer:
    """Levels of classification IMP (:class:`lipkit.lottery.driver.Trainer`). With rewind ``none`` a
    level starts from the previous level's trained weights (``continues``), so every level keeps its
    trained state."""

    method = "imp_classify"
    groups = None
    keep_dense: Sequence[str] = ()
    batch = False

    def __init__(self, config: dict, data: Sequence[torch.Tensor], device, progress: bool, batch: bool = False):
        self.config, self.data, self.device, self.progress = config, data, device, progress
        self.settings = ClassifyImpSettings(**{k: config[k] for k in (
            "rounds", "rate", "seeds", "size", "rewind", "rewind_iteration", "epochs", "batch_size", "lr", "momentum",
            "weight_decay", "milestones", "head", "criterion", "baselines", "arch")}, dataset=config["task"]["dataset"])
        self.continues = self.settings.rewind == "none"

    def network(self) -> Classifier:
        task = self.config["task"]
        return Classifier(task["channels"], self.settings.size, task["classes"], head=self.settings.head,
                          arch=self.settings.arch)

    def rewind_state(self, seed: int) -> "OrderedDict[str, torch.Tensor]":
        """θ0 (the DIP's θ0 of ``seed`` in the backbone but its input convs), or the dense weights
        after ``rewind_iteration`` SGD steps from it."""
        task = self.config["task"]
        net = classifier_theta0(seed, channels=task["channels"], size=self.settings.size, classes=task["classes"],
                                head=self.settings.head, arch=self.settings.arch)
        if self.settings.rewind == "early":
            train_classifier(net, self.data, self.settings, seed=seed, key=("rewind",),
                             steps=self.settings.rewind_iteration, device=self.device)
            net.cpu()
        return OrderedDict((k, v.detach().cpu().clone()) for k, v in net.state_dict().items())

    def train(self, level, seeds, masks, rewinds, heads) -> list[Trained]:
        out = []
        for seed, m, start, head in zip(seeds, masks, rewinds, heads):
            net = self.network()
            net.load_state_dict(start)
            numbers = train_classifier(net, self.data, self.settings, masks=m, seed=seed,
                                       key=(head["method"], level), device=self.device)
            record = accuracy_record(numbers, net, m, epochs=self.settings.epochs, device=self.device, **head)
            keep = self.continues and head["method"] == self.method  # the next level starts from it
            state = OrderedDict((k, v.detach().cpu().clone()) for k, v in net.state_dict().items()) if keep else None
            out.append(Trained(record, conv_weights_of(net), state=state))
        return out


def make_classify_trainer(config, data, device, progress, batch) -> ClassifyTrainer:
    return ClassifyTrainer(config, data, device, progress, batch)


def run_config(settings: ClassifyImpSettings, data: Sequence[torch.Tensor]) -> dict:
    """The ``config.json`` of classification IMP with ``settings`` on ``data`` (:func:`lipkit.datasets.labelled`'s
    four tensors), which names its folder (:func:`lipkit.lottery.identity.folder_name`)."""
    described = dict(dataset=settings.dataset, channels=int(data[0].shape[1]), classes=int(data[1].max()) + 1,
                     train=len(data[0]), test=len(data[2]))
    return settings.config(data=described)


def imp_classify(settings: ClassifyImpSettings | None = None, *, run_dir: str | os.PathLike,
                 data_root: str | os.PathLike | None = None, data: Sequence[torch.Tensor] | None = None,
                 device: str | None = None, workers: int | None = None, progress: bool = True, **fields) -> ImpRun:
    """Run (or resume, or extend) classification IMP into ``run_dir``; returns the run's
    :class:`lipkit.lottery.imp.ImpRun` (records: ``test_accuracy``, ``best_accuracy``, ...).

    ``settings`` (or its fields as keywords) name the dataset (``data_root``: the folder holding
    CIFAR-10's extracted batches), the network, the schedule and the rewind point
    (:class:`lipkit.lottery.settings.ClassifyImpSettings`); ``data``, the dataset's four tensors
    when the caller has loaded them already (:func:`lipkit.datasets.labelled`)."""
    if settings is None:
        settings = ClassifyImpSettings(**fields)
    elif fields:
        raise TypeError(f"give the settings or their fields, not both (got {sorted(fields)} besides the settings)")
    data = labelled(settings.dataset, data_root) if data is None else data
    config = run_config(settings, data)
    seeds = list(settings.seeds)
    start_run(run_dir, config, make_classify_trainer, data, seeds, device=device, workers=workers,
              progress=progress, total=len(seeds) * (settings.rounds + 1 + len(settings.baselines) * settings.rounds),
              what="a classification-IMP run")
    ImpRun(run_dir).write_summary()
    return ImpRun(run_dir, max_round=settings.rounds, seeds=seeds)
