"""Iterative magnitude pruning for image priors (LIP's Algorithm 1), resumable.

For each seed: build the skip net θ0 from the seed (or train it j iterations and rewind there),
then for rounds k = 0, 1, ..., R:

1. fit the masked network (masks_k) from the rewind point, with a fresh Adam, on the search
   target: the observation (realistic, default) or the clean image (the official code);
2. evaluate ticket k on the observation (the same fit when searching on the observation),
   recording three PSNRs: the best over the iterations (the paper's oracle metric), the one at
   the iteration ES-WMV picks without the clean image, and the final one;
3. prune ``rate`` of the remaining conv weights by global magnitude of the *final* weights,
   giving masks_{k+1}; every parameter, BatchNorm included, is rewound for the next round.

Round 0 is the dense DIP. Baselines are evaluated the same way from the same rewind point:
random global pruning at the same per-round rate, random masks with each ticket's per-layer
densities, and one-shot magnitude pruning of the dense fit.

Everything is written to a run folder after each round; running again with the same arguments
resumes after the last completed round and gives the same numbers as an uninterrupted run. The
loop, resume and extension are :mod:`lipkit.lottery.driver`'s; this module supplies its trainer
(:class:`SingleImageTrainer`) and reads the folders back (:class:`ImpRun`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

import lipkit
from lipkit.fitting.loop import FitDivergedError, fit
from lipkit.device import resolve_device
from lipkit.lottery.driver import Trained, how_seeds_run, start_run
from lipkit.lottery.settings import BASELINES, ImpSettings
from lipkit.fitting.memory import check_fit_memory
from lipkit.models import skip_net, theta0
from lipkit.operators import Identity
from lipkit.pruning.masks import conv_weights_of, input_weight_names, sparsity_report
from lipkit.store.folder import load_masks, load_tensors, read_config, read_json, write_json
from lipkit.store.paths import ImpFolder
from lipkit.matching import closest_in_ratio
from lipkit.summaries import level_curve
from lipkit.tasks import Task, check_task_fits
from lipkit.pruning.tickets import Ticket


# --- the trainer -----------------------------------------------------------------------------------
def _fit_guarded(net, operator, observation, *, task: Task, reference, masks, seed, device, progress, desc):
    """Fit; a diverging fit (NaN) is redone with DIP's backtracking so it never reaches pruning."""
    kwargs = dict(settings=task.settings, reference=reference, masks=masks, metric=task.metric, seed=seed,
                  device=device, progress=progress, desc=desc)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    try:
        return fit(net, operator, observation, **kwargs), False
    except FitDivergedError:
        net.load_state_dict(state)
        result = fit(net, operator, observation, **dict(kwargs, settings=replace(task.settings, backtrack=True)))
        # backtracking undoes a non-finite step, so the fit ends "normally" even when almost none was finite
        if not torch.isfinite(result.output).all() or result.nonfinite_steps > result.iterations // 10:
            raise FitDivergedError(
                f"{desc}: the fit diverged again with backtracking ({result.nonfinite_steps} of {result.iterations} "
                f"steps non-finite); lower the learning rate (now {task.settings.lr}). The finished rounds are kept."
            ) from None
        return result, True


def _fresh_net(arch: dict, rewind_state, device) -> torch.nn.Module:
    net = skip_net(**arch)
    net.load_state_dict(rewind_state)
    return net.to(device)


class SingleImageTrainer:
    """Levels of single-image IMP (:class:`lipkit.lottery.driver.Trainer`): fit the masked skip net from the
    rewind point on the search target, and evaluate it on the observation (the same fit when
    searching on the observation). With ``batch``, the seeds of a level fit as one batched model."""

    method = "imp"
    groups = None

    def __init__(self, config: dict, task: Task, device, progress: bool, batch: bool):
        self.config, self.task, self.device, self.progress, self.batch = config, task, device, progress, batch
        self.search_clean = config["search_on"] == "clean"
        self.keep_dense = input_weight_names(self.network()) if config["keep_input_convs_dense"] else []

    def network(self) -> torch.nn.Module:
        return skip_net(**self.config["arch"])

    def rewind_state(self, seed: int):
        """θ0 from the seed's weight stream, or the dense weights after ``rewind_iteration`` steps."""
        net = theta0(seed, **self.config["arch"])
        if self.config["rewind_iteration"] > 0:
            search_op = Identity() if self.search_clean else self.task.operator
            target = self.task.clean if self.search_clean else self.task.observation
            fit(net, search_op, target, settings=replace(self.task.settings, num_iter=self.config["rewind_iteration"]),
                seed=seed, device=self.device, progress=False)
            net.cpu()
        return OrderedDict((k, v.detach().cpu().clone()) for k, v in net.state_dict().items())

    def _fit_all(self, seeds, masks, rewinds, operator, observation, reference, label):
        """Fit one fresh net per seed; returns the nets and (result, retried) per seed. With ``batch``
        and several seeds they fit as one vmapped model; if that diverges, one by one with backtracking."""
        nets = [_fresh_net(self.config["arch"], r, self.device) for r in rewinds]
        task = self.task
        if self.batch and len(nets) > 1:
            from lipkit.fitting.batched import fit_seeds

            states = [{k: v.detach().clone() for k, v in net.state_dict().items()} for net in nets]
            try:
                results = fit_seeds(nets, operator, observation, seeds=seeds, masks=masks, settings=task.settings,
                                    reference=reference, metric=task.metric, mode="batched", device=self.device,
                                    progress=self.progress, desc=f"{label} ({len(nets)} seeds)")
                return nets, [(r, False) for r in results]
            except FitDivergedError:
                for net, state in zip(nets, states):
                    net.load_state_dict(state)
        return nets, [_fit_guarded(net, operator, observation, task=task, reference=reference, masks=m, seed=s,
                                   device=self.device, progress=self.progress, desc=f"seed {s} {label}")
                      for net, m, s in zip(nets, masks, seeds)]

    def train(self, level, seeds, masks, rewinds, heads) -> list[Trained]:
        task, main = self.task, heads[0]["method"] == self.method
        label = f"round {level}" if main else f"{heads[0]['method']} {level}"
        if main and self.search_clean:
            nets, searches = self._fit_all(seeds, masks, rewinds, Identity(), task.clean, None, f"{label} (search)")
            eval_nets, evaluations = self._fit_all(seeds, masks, rewinds, task.operator, task.observation,
                                                   task.clean, f"{label} (evaluate)")
        else:
            nets, searches = self._fit_all(seeds, masks, rewinds, task.operator, task.observation, task.clean,
                                           f"{label} (search)" if main else label)
            eval_nets, evaluations = nets, searches
        out = []
        for net, eval_net, m, head, (_, retried), (evaluation, retried_eval) in zip(
                nets, eval_nets, masks, heads, searches, evaluations):
            extra = dict(search_on=self.config["search_on"]) if main else {}
            record = evaluation.record(sparsity_report(eval_net, m), **head, **extra,
                                       diverged_retry=retried or retried_eval, batched=self.batch and len(seeds) > 1)
            out.append(Trained(record, conv_weights_of(net), images=[evaluation.best_output] if main else []))
        return out


def make_single_image_trainer(config, task, device, progress, batch) -> SingleImageTrainer:
    return SingleImageTrainer(config, task, device, progress, batch)


# --- the run ------------------------------------------------------------------------------------
class ImpRun:
    """A run folder: its config, per-round records and tickets.

    ``max_round`` limits the records to rounds 0 .. max_round, and ``seeds`` to those seeds (a
    folder may hold more rounds and seeds than the experiment reading it asked for, e.g. grown by
    a sweep: a chapter asking for 2 seeds then still averages over those 2).
    """

    def __init__(self, run_dir: str | os.PathLike, max_round: int | None = None,
                 seeds: Sequence[int] | None = None):
        self.dir = Path(run_dir)
        self.folder = ImpFolder(run_dir)
        self.max_round = max_round
        self.asked_seeds = None if seeds is None else [int(s) for s in seeds]
        if not self.folder.config.exists():
            raise FileNotFoundError(f"{self.dir} is not an IMP run folder (no config.json)")
        self.config = read_config(self.folder.config)

    @property
    def rounds(self) -> int:
        """The last round this view covers (the folder may hold more)."""
        stored = self.config["rounds"]
        return stored if self.max_round is None else min(stored, self.max_round)

    @property
    def seeds(self) -> list[int]:
        """The seeds this view covers that have a folder, in order: those asked for, else those the
        run's settings name (every seed folder, for a folder made before configs named them)."""
        found = self.folder.seeds()
        asked = self.config.get("seeds") if self.asked_seeds is None else self.asked_seeds
        return found if asked is None else [s for s in found if s in asked]

    def records(self, method: str | None = None) -> list[dict]:
        """Every finished evaluation, IMP rounds and baselines, as dicts."""
        out = []
        for s in self.seeds:
            for f in self.folder.records(s, BASELINES):
                rec = read_json(f)
                if self.max_round is not None and rec["round"] > self.max_round:
                    continue
                if method is None or rec["method"] == method:
                    out.append(rec)
        return out

    def curve(self, method: str = "imp", key: str = "best_psnr") -> dict:
        """Per round: mean and std over seeds of ``key`` and the mean measured sparsity and
        unpruned parameters (:func:`lipkit.summaries.level_curve`)."""
        return level_curve(self.records(method), level_of=lambda r: r["round"], key=key)

    def empty_layers(self, method: str = "imp") -> "dict[int, list[str]]":
        """Round -> the conv layers that its masks left without a weight in some seed (layer
        collapse; the fits go on, see :func:`lipkit.models.exact_constant_channels`), for the
        rounds that have any."""
        out: dict[int, set] = {}
        for r in self.records(method):
            if r.get("empty_layers"):
                out.setdefault(r["round"], set()).update(r["empty_layers"])
        return {k: sorted(v) for k, v in sorted(out.items())}

    def fit_alone(self, seed: int, round: int) -> dict | None:
        """The record of ``seed``'s level ``round`` if that fit ran alone (not batched with other
        seeds, whose results agree only to float tolerance): then fitting the level's ticket to
        this run's observation with fit seed ``seed`` repeats it bit for bit. None otherwise."""
        return next((r for r in self.records("imp") if r["seed"] == seed and r["round"] == round
                     and r.get("batched") is False), None)

    def round_for_density(self, density: float, method: str = "imp") -> int:
        """The pruned round (≥ 1) whose measured density (fraction of conv weights kept, averaged over
        seeds) is closest in ratio to ``density`` (:func:`lipkit.matching.closest_in_ratio`)."""
        c = self.curve(method)
        levels = [(k, 1 - s) for k, s in zip(c["round"], c["sparsity"]) if k >= 1]
        if not levels:
            raise ValueError(f"{self.dir} has no pruned level yet; run at least one round")
        return closest_in_ratio(levels, lambda ks: ks[1], density)[0]

    def round_for_parameters(self, n_params: float, method: str = "imp") -> dict:
        """The round whose tickets have about ``n_params`` parameters left (closest in ratio).

        Counts are the measured ``unpruned_params`` (nonzero conv weights plus all biases and
        BatchNorm parameters), averaged over seeds. Returns ``dict(round, parameters, ratio)``.
        """
        c = self.curve(method)
        if not c["round"]:
            raise ValueError(f"{self.dir} has no finished {method} rounds")
        i = closest_in_ratio(range(len(c["round"])), lambda j: c["unpruned_params"][j], n_params)
        return dict(round=c["round"][i], parameters=c["unpruned_params"][i],
                    ratio=round(c["unpruned_params"][i] / n_params, 4))

    def ticket(self, seed: int, round: int) -> Ticket:
        """Ticket ``round`` of ``seed``: its masks, the seed's rewind weights and the run's metadata."""
        masks_file = self.folder.masks(seed, round)
        if not masks_file.exists():
            raise FileNotFoundError(f"no ticket for seed {seed}, round {round} in {self.dir}")
        masks = load_masks(masks_file)
        rewind = load_tensors(self.folder.rewind(seed))
        net = _fresh_net(self.config["arch"], rewind, "cpu")
        task = self.config["task"]
        return Ticket.from_net(net, masks, round=round, seed=seed, task=task["kind"], search_image=task["image"],
                               search_on=self.config["search_on"], image_size=task["image_size"],
                               rate=self.config["rate"], rewind_iteration=self.config["rewind_iteration"],
                               task_params=task["params"])

    def output_image(self, seed: int, round: int, index: int | None = None) -> Path:
        """The restored image of ``round`` (``index``: which image of a weight-sharing run)."""
        return self.folder.image(seed, round, index)

    def summary(self) -> dict:
        # every field and flag of every record (diverged_retry, es_stopped, ...), all but the per-layer densities
        rows = [{k: v for k, v in r.items() if k != "layer_density"} for r in self.records()]
        return dict(config=self.config, lipkit_version=lipkit.__version__, records=rows)

    def write_summary(self) -> Path:
        path = self.folder.summary
        write_json(path, self.summary())
        return path


def imp(task: Task, settings: ImpSettings | None = None, *, run_dir: str | os.PathLike, workers: int | None = None,
        device: str | None = None, batch_seeds: bool | None = None, progress: bool = True, **fields) -> ImpRun:
    """Run (or resume) single-image IMP on ``task`` into ``run_dir``; returns the :class:`ImpRun`.

    Args:
        task: from :func:`lipkit.tasks.make_task`; its settings are the per-round fit settings.
        settings: the run's :class:`lipkit.lottery.settings.ImpSettings` (rounds, rate, seeds, search
            target, rewind iteration, ranking, structure, baselines, network), or its fields as
            keywords (``imp(task, rounds=16, seeds=[0, 1], run_dir=...)``).
        workers: processes for the seeds; default: one per CPU core on a CPU (each with
            cores/workers threads), 1 on a GPU.
        batch_seeds: fit the seeds of each round together as one batched model
            (:func:`lipkit.fitting.batched.fit_seeds`, ``mode="batched"``) in this process. Default:
            on a GPU with several seeds. Results equal separate fits to float tolerance, not
            bit for bit, so a run is best finished the way it was started.

    The folder holds exactly ``settings.seeds``; more ``rounds`` or baselines extend a finished run,
    and any other difference is refused (:class:`lipkit.store.folder.RunConfigError`). With
    ``structure="channel"``, whole channels are pruned with their BatchNorms and the input channels
    that read them (:mod:`lipkit.pruning.channels`; ``rate`` is then the fraction of the remaining
    channels, and a ticket compacts to a smaller net).
    """
    if settings is None:
        settings = ImpSettings(**fields)
    elif fields:
        raise TypeError(f"give the settings or their fields, not both (got {sorted(fields)} besides the settings)")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    net = skip_net(**settings.arch)
    if settings.structure == "channel":
        from lipkit.pruning.channels import channel_groups

        channel_groups(net)  # an architecture it cannot prune is refused now, not after the dense level
    check_task_fits(task, net)  # refused before the run folder is made, so that a corrected command can use it
    seeds = list(settings.seeds)
    batched, processes = how_seeds_run(len(seeds), device, workers, batch_seeds)
    check_fit_memory(net, *task.image_size, device=resolve_device(device), what=task.image,
                     fits_at_once=len(seeds) if batched else processes)
    config = settings.config(task=task.describe())
    rounds, n_baselines = settings.rounds, len(settings.baselines)
    start_run(run_dir, config, make_single_image_trainer, task, seeds, device=device, workers=workers,
              progress=progress, total=len(seeds) * (rounds + 1 + n_baselines * rounds), batch_seeds=batch_seeds)
    ImpRun(run_dir).write_summary()  # the whole folder
    return ImpRun(run_dir, max_round=rounds, seeds=seeds)
