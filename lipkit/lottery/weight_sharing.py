"""Weight-sharing IMP (LIP's Algorithm 2): one ticket for several images.

One network is fitted to N images at once, on the sum of the per-image losses
``Σ_a loss_a(f(z_a; θ), y_a)``, then pruned by global magnitude and rewound to θ0, as in
single-image IMP (:mod:`lipkit.lottery.imp`). Algorithm 2 can be read two ways, and both are here:

- ``input_mode="shared"``: one input z for all images, as the official code does. The network
  then has a single output, and the sum of the MSEs to N images is minimised by their **mean**
  image; the ticket is found by fitting that mean.
- ``input_mode="per_image"``: a fixed input z_a per image and shared weights. Each image is
  fitted by its own forward pass, with its own BatchNorm statistics, exactly as N single-image
  DIPs that share θ (:func:`lipkit.models.per_image_statistics` batches them in one call).

The run folder has the layout of :class:`lipkit.lottery.imp.ImpRun` (``seed_S/masks_KK``, ``rewind``,
``round_KK.json``), so its tickets are read with :meth:`ImpRun.ticket`. Round k's record holds the
fit of ticket k: the loss, the loss of each image (their sum is the loss), and per-image PSNRs.
Like every run of :mod:`lipkit.lottery.driver`, ``rounds`` R fits tickets 0 (dense) .. R.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import asdict
from typing import Sequence

import torch

from lipkit.device import resolve_device
from lipkit.fitting.loop import FitResult, fit
from lipkit.lottery.imp import ImpRun
from lipkit.lottery.settings import INPUT_MODES, SEARCH_TARGETS, SharedImpSettings
from lipkit.lottery.driver import Trained, how_seeds_run, start_run
from lipkit.fitting.memory import check_fit_memory
from lipkit.models import network_input, per_image_statistics, skip_net, theta0
from lipkit.operators import Identity
from lipkit.pruning.masks import conv_weights_of, input_weight_names, sparsity_report
from lipkit.seeding import generator as stream_generator
from lipkit.fitting.settings import FitSettings
from lipkit.tasks import Task, check_task_fits


def _per_image_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).flatten(1).mean(1)


class SharedLoss:
    """``Σ_a operator_a.loss(out_a, y_a)``: the weight-sharing objective.

    ``out`` is (N, C, H, W), one output per image, or (1, C, H, W) when all images share one
    input (then every image is compared with the same output). ``y`` is (N, c, h, w).
    """

    def __init__(self, operators: Sequence):
        self.operators = list(operators)

    def per_image(self, out: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        if y.shape[0] != len(self.operators):
            raise ValueError(f"{len(self.operators)} operators but {y.shape[0]} observations")
        if out.shape[0] not in (1, y.shape[0]):
            raise ValueError(f"the network gave {out.shape[0]} outputs for {y.shape[0]} images")
        return [op.loss(out[a:a + 1] if out.shape[0] > 1 else out, y[a:a + 1])
                for a, op in enumerate(self.operators)]

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.per_image(out, y)).sum()


def mean_image_psnr(out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean over images of the per-image PSNR (dB, peak 1); ``out`` (N or 1, C, H, W), ``reference`` (N, C, H, W)."""
    return (-10 * torch.log10(_per_image_mse(out.expand_as(reference), reference))).mean()


def check_tasks(tasks: Sequence[Task]) -> None:
    """Weight sharing needs at least two different images of one task kind and one size."""
    if len(tasks) < 2:
        raise ValueError(f"weight sharing needs at least two tasks, got {len(tasks)}")
    kinds = {t.kind for t in tasks}
    if len(kinds) > 1:
        raise ValueError(f"all tasks must be of one kind, got {sorted(kinds)}")
    sizes = {t.image_size for t in tasks}
    if len(sizes) > 1:
        raise ValueError(f"all images must have one size to share the network's input, got {sorted(sizes)}; "
                         "crop them to a common size (make_task(..., crop=N))")
    obs = {tuple(t.observation.shape) for t in tasks}
    if len(obs) > 1:
        raise ValueError(f"the observations differ in shape: {sorted(obs)}")
    for i, a in enumerate(tasks):
        for b in tasks[i + 1:]:
            # Set5 head and Set14 face, for one, are one photograph: cropped alike, the search would count it twice
            if a.clean is not None and b.clean is not None and torch.equal(a.clean, b.clean):
                raise ValueError(f"{a.image} and {b.image} are the same picture at this size; a weight-sharing "
                                 "search would fit it twice: replace one of them")


def fit_shared(net, tasks: Sequence[Task], *, input_mode: str = "per_image", search_on: str = "observation",
               settings: FitSettings | None = None, masks=None, seed: int = 0, device=None, progress: bool = True,
               desc: str = "shared fit") -> tuple[FitResult, dict]:
    """Fit ``net`` to all ``tasks`` at once; returns the fit and a dict of per-image numbers.

    ``search_on="observation"`` fits each task's degraded observation through its operator;
    ``"clean"`` fits the clean images (the official code). The dict holds ``loss`` (the
    objective at the final noise-free output), ``image_losses`` (its per-image terms) and
    ``image_psnr`` (dB, final tracked output of each image vs its clean image).
    """
    check_tasks(tasks)
    if input_mode not in INPUT_MODES:
        raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
    if search_on not in SEARCH_TARGETS:
        raise ValueError(f"search_on must be one of {SEARCH_TARGETS}, got {search_on!r}")
    clean = torch.stack([t.clean for t in tasks])
    if search_on == "clean":
        operators = [Identity() for _ in tasks]
        y = clean
    else:
        operators = [t.operator for t in tasks]
        y = torch.stack([t.observation for t in tasks])
    h, w = tasks[0].image_size
    gen = stream_generator(seed, "network_input")  # the N inputs are successive draws of one stream
    n_inputs = 1 if input_mode == "shared" else len(tasks)
    z = torch.cat([network_input(net, h, w, generator=gen) for _ in range(n_inputs)])
    objective = SharedLoss(operators)
    settings = settings or tasks[0].settings
    dev = resolve_device(device)
    for op in operators:
        op.to(dev)  # fit() moves only the first; the loss uses them all
    with per_image_statistics(net):
        result = fit(net, operators[0], y, settings=settings, net_input=z, reference=clean, masks=masks,
                     loss_fn=objective, metric=mean_image_psnr, seed=seed, device=dev, progress=progress,
                     desc=desc)
        out = result.clean_output.to(dev)
        out = out if out.dim() == 4 else out[None]
        with torch.no_grad():
            terms = objective.per_image(out, y.to(dev))
            loss = objective(out, y.to(dev))
    tracked = result.output if result.output.dim() == 4 else result.output[None]
    image_psnr = (-10 * torch.log10(_per_image_mse(tracked.expand_as(clean), clean))).tolist()
    return result, dict(loss=float(loss), image_losses=[float(t) for t in terms], image_psnr=image_psnr)


class SharedTrainer:
    """Levels of weight-sharing IMP (:class:`lipkit.lottery.driver.Trainer`): one masked net fitted to all
    images from the rewind point θ0, one seed at a time."""

    method = "imp_shared"
    groups = None
    batch = False

    def __init__(self, config: dict, tasks: Sequence[Task], device, progress: bool, batch: bool = False):
        self.config, self.tasks, self.device, self.progress = config, list(tasks), device, progress
        self.settings = FitSettings(**config["settings"])
        self.keep_dense = input_weight_names(self.network()) if config["keep_input_convs_dense"] else []

    def network(self) -> torch.nn.Module:
        return skip_net(**self.config["arch"])

    def rewind_state(self, seed: int):
        return OrderedDict((k, v.detach().clone()) for k, v in theta0(seed, **self.config["arch"]).state_dict().items())

    def train(self, level, seeds, masks, rewinds, heads) -> list[Trained]:
        out = []
        for seed, m, rewind, head in zip(seeds, masks, rewinds, heads):
            net = self.network()
            net.load_state_dict(rewind)
            result, numbers = fit_shared(net, self.tasks, input_mode=self.config["input_mode"],
                                         search_on=self.config["search_on"], settings=self.settings, masks=m,
                                         seed=seed, device=self.device, progress=self.progress,
                                         desc=f"seed {seed} round {level} (shared)")
            report = sparsity_report(net, m)
            images = result.output if result.output.dim() == 4 else result.output[None]
            record = result.record(report, **numbers, **head, input_mode=self.config["input_mode"],
                                   search_on=self.config["search_on"])
            out.append(Trained(record, conv_weights_of(net), images=list(images), per_image=True))
        return out


def make_shared_trainer(config, tasks, device, progress, batch) -> SharedTrainer:
    return SharedTrainer(config, tasks, device, progress)


def shared_config(tasks: Sequence[Task], settings: SharedImpSettings, fit_settings: FitSettings | None = None) -> dict:
    """The run folder's ``config.json`` of weight-sharing IMP over ``tasks`` (fit settings: the first task's)."""
    task = dict(kind=f"shared_{tasks[0].kind}", image="+".join(t.image for t in tasks),
                image_size=list(tasks[0].image_size),
                params=dict(images=[t.image for t in tasks], input_mode=settings.input_mode,
                            tasks=[t.describe() for t in tasks]))
    return settings.config(task=task, settings=asdict(fit_settings or tasks[0].settings))


def imp_shared(tasks: Sequence[Task], settings: SharedImpSettings | None = None, *, run_dir: str | os.PathLike,
               fit_settings: FitSettings | None = None, workers: int | None = None, device: str | None = None,
               progress: bool = True, **fields) -> ImpRun:
    """Run (or resume) weight-sharing IMP over ``tasks`` into ``run_dir``; returns the :class:`ImpRun`.

    Args:
        tasks: two or more tasks of one kind and image size (from :func:`lipkit.tasks.make_task`).
        settings: the run's :class:`lipkit.lottery.settings.SharedImpSettings` (``input_mode``:
            "per_image", a fixed z_a per image, or "shared", one z, the official code; rounds, rate,
            seeds, search target, network), or its fields as keywords.
        fit_settings: fit settings of every round (default: the first task's).
        Other arguments as in :func:`lipkit.lottery.imp.imp`.
    """
    if settings is None:
        settings = SharedImpSettings(**fields)
    elif fields:
        raise TypeError(f"give the settings or their fields, not both (got {sorted(fields)} besides the settings)")
    check_tasks(tasks)
    seeds = list(settings.seeds)
    net = skip_net(**settings.arch)
    for task in tasks:
        check_task_fits(task, net)
    _, processes = how_seeds_run(len(seeds), device, workers, False)  # each fit holds every image's activations
    check_fit_memory(net, *tasks[0].image_size, device=resolve_device(device), what=f"{len(tasks)} images at once",
                     fits_at_once=processes, images=len(tasks))
    config = shared_config(tasks, settings, fit_settings)
    start_run(run_dir, config, make_shared_trainer, list(tasks), seeds, device=device, workers=workers,
              progress=progress, total=len(seeds) * (settings.rounds + 1))
    ImpRun(run_dir).write_summary()
    return ImpRun(run_dir, max_round=settings.rounds, seeds=seeds)
