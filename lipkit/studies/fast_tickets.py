"""Chapter 7's contenders, built from a channel ticket, fitted and timed side by side: which small
network restores as well as the dense DIP, and how much faster.

For one task and seed, the contenders (:data:`CONTENDERS`) are:

- ``dense``: the dense skip net from θ0 (IMP's level 0);
- ``unstructured``: an unstructured IMP ticket (masked: its zeros are still multiplied);
- ``channel_ticket``: a channel IMP ticket, compacted to a smaller dense net (:meth:`Ticket.compact`);
- ``random_channels``: the same kept channels per layer drawn at random, compacted, from θ0;
- ``narrow``: the skip net with every level at one reduced width, the FLOPs of the channel
  ticket closest, initialised afresh (trained from scratch);
- ``deep_decoder``: Heckel & Hand's deep decoder (its own settings), the FLOPs closest too.

Each is fitted by :func:`lipkit.fitting.loop.fit` to the task for the task's iterations with the same fit
seed, and its record holds the PSNRs (best, ES-WMV, final), the wall-clock seconds of the whole
fit, the FLOPs of one step (:func:`lipkit.fitting.flops.step_flops`; masked weights count, as they are
computed) and the parameters. :func:`race` runs the jobs as the book runs IMP's fits (worker
processes with one thread each on a CPU, one after another on a GPU), so every contender is
timed under the same conditions, and caches the records like :func:`lipkit.studies.transfer.transfer_many`.

The dense and unstructured contenders are fits IMP has already made (its levels 0 and k, same
θ0, masks, task and fit seed: the same numbers to the last bit). Given that run
(``contenders(..., imp_run=run)``), :func:`race` takes them from its records instead of fitting
again, when they were timed alone (not as one batched model of several seeds, whose seconds are
the batch's).
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from typing import Sequence

import torch

from lipkit.device import resolve_device
from lipkit.fitting.records import FitResult
from lipkit.fitting.flops import step_flops
from lipkit.matching import closest_in_ratio
from lipkit.fitting.memory import check_fit_memory
from lipkit.parallel import Engine, run_cached
from lipkit.store.cache import RecordCache
from lipkit.summaries import group_stats
from lipkit.tasks import Task
from lipkit.pruning.tickets import Ticket

CONTENDERS = ("dense", "unstructured", "channel_ticket", "random_channels", "narrow", "deep_decoder")
LABELS = {"dense": "dense DIP", "unstructured": "unstructured ticket (masked)", "channel_ticket": "channel ticket",
          "random_channels": "random channels", "narrow": "uniformly narrow net", "deep_decoder": "deep decoder"}


def _closest(sizes: range, flops_of, target: float) -> tuple[int, int]:
    """The size in ``sizes`` (flops increasing with it) whose FLOPs are closest to ``target`` in ratio."""
    lo, hi = sizes.start, sizes.stop - 1
    while lo < hi:  # the first size with at least the target's FLOPs
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if flops_of(mid) < target else (lo, mid)
    best = closest_in_ratio(sorted({max(sizes.start, lo - 1), lo}), flops_of, target)
    return best, flops_of(best)


@functools.lru_cache(maxsize=4096)
def _skip_flops(arch_json: str, width: int, height: int, px_width: int) -> int:
    from lipkit.models import skip_net

    arch = json.loads(arch_json)
    levels = len(arch.get("num_channels_down", [128] * 5))
    with torch.device("meta"):  # only the shapes: nothing is initialised
        net = skip_net(**dict(arch, num_channels_down=[width] * levels, num_channels_up=[width] * levels))
    return step_flops(net, height, px_width)


@functools.lru_cache(maxsize=4096)
def _deep_decoder_flops(k: int, layers: int, out_channels: int, height: int, width: int) -> int:
    from lipkit.models import deep_decoder

    with torch.device("meta"):
        return step_flops(deep_decoder(k, layers, out_channels), height, width)


def narrow_width_for(flops: float, height: int, width: int, arch: dict | None = None) -> dict:
    """The uniform width w (every level's down and up convs at w channels, the skip convs as in
    ``arch``) whose skip net's step FLOPs at ``height`` × ``width`` px are closest to ``flops``.
    Returns ``dict(width, flops)``."""
    arch_json = json.dumps(dict(arch or {}), sort_keys=True)
    top = max((arch or {}).get("num_channels_down", [128]))
    w, f = _closest(range(1, top + 1), lambda w: _skip_flops(arch_json, w, height, width), flops)
    return dict(width=w, flops=f)


def deep_decoder_width_for(flops: float, height: int, width: int, out_channels: int = 3, layers: int = 5) -> dict:
    """The deep decoder width k whose step FLOPs at ``height`` × ``width`` px are closest to ``flops``.
    Returns ``dict(k, flops)``."""
    k, f = _closest(range(1, 2049), lambda k: _deep_decoder_flops(k, layers, out_channels, height, width), flops)
    return dict(k=k, flops=f)


@dataclass
class SpeedJob:
    """One contender of one task and seed. ``ticket``: the channel ticket (or, for ``unstructured``,
    the unstructured one) whose rewind weights are θ0 of ``seed``; ``size``: the narrow net's width
    or the deep decoder's k."""

    contender: str
    task: Task
    ticket: Ticket
    seed: int
    size: int | None = None
    fitted: dict | None = None  # IMP's record of this very fit, timed alone: taken instead of fitting

    def __post_init__(self):
        if self.contender not in CONTENDERS:
            raise ValueError(f"contender must be one of {CONTENDERS}, got {self.contender!r}")

    def key(self, cache: RecordCache) -> str:
        tensors = list(self.ticket.rewind.items())
        if self.contender in ("unstructured", "channel_ticket", "random_channels"):
            tensors += list(self.ticket.masks.items())
        return cache.key(dict(contender=self.contender, task=self.task.describe(), seed=self.seed, size=self.size,
                              arch=self.ticket.meta.get("arch")), tensors)

    def build(self):
        """(network with its initial weights, masks or None)."""
        from lipkit.models import deep_decoder, theta0

        if self.contender in ("dense", "unstructured", "random_channels"):
            net = self.ticket.build_net()
            net.load_state_dict(self.ticket.rewind)  # θ0 unmasked: build_net() zeroes what the masks remove
        if self.contender == "dense":
            return net, None
        if self.contender == "unstructured":
            return net, self.ticket.masks
        if self.contender == "channel_ticket":
            return self.ticket.compact(), None
        if self.contender == "random_channels":
            from lipkit.pruning.channels import compact, random_channels_of

            return compact(net, random_channels_of(net, self.ticket.masks, seed=self.seed)), None
        if self.contender == "narrow":
            arch = {k: v for k, v in self.ticket.meta["arch"].items() if k != "arch"}
            widths = [self.size] * len(arch["num_channels_down"])
            return theta0(self.seed, **dict(arch, num_channels_down=widths, num_channels_up=widths)), None
        return theta0(self.seed, deep_decoder, k=self.size, layers=5, out_channels=self.task.clean.shape[0]), None


def contenders(task: Task, channel_ticket: Ticket, unstructured_ticket: Ticket, *, seed: int | None = None,
               imp_run=None) -> list[SpeedJob]:
    """The six contenders of ``task`` for one seed (default: the channel ticket's), the narrow
    net and the deep decoder sized to the compacted channel ticket's FLOPs at the task's size.
    Both tickets must come from the same θ0. ``imp_run``: the unstructured ticket's
    :class:`lipkit.lottery.imp.ImpRun`; if it searched on ``task`` itself (same observation), its level 0
    and the ticket's level, timed alone, stand for the dense and unstructured fits."""
    if channel_ticket.structure != "channel" or unstructured_ticket.structure != "unstructured":
        raise ValueError("contenders() needs a channel ticket and an unstructured ticket, in that order")
    if any(not torch.equal(channel_ticket.rewind[k], unstructured_ticket.rewind[k]) for k in channel_ticket.rewind):
        raise ValueError("the channel and unstructured tickets start from different weights (θ0); use one seed's")
    seed = int(channel_ticket.meta.get("seed", 0)) if seed is None else seed
    height, width = task.image_size
    target = step_flops(channel_ticket.compact(), height, width)
    arch = {k: v for k, v in channel_ticket.meta["arch"].items() if k != "arch"}
    narrow = narrow_width_for(target, height, width, arch)["width"]
    k = deep_decoder_width_for(target, height, width, task.clean.shape[0])["k"]

    same_fits = (imp_run is not None and imp_run.config["task"] == json.loads(json.dumps(task.describe()))
                 and seed == int(unstructured_ticket.meta.get("seed", -1)))

    def imp_fit(level: int) -> dict | None:  # a record is always the fit on the observation
        return imp_run.fit_alone(seed, level) if same_fits else None

    return [SpeedJob("dense", task, channel_ticket, seed, fitted=imp_fit(0)),
            SpeedJob("unstructured", task, unstructured_ticket, seed,
                     fitted=imp_fit(int(unstructured_ticket.meta["round"]))),
            SpeedJob("channel_ticket", task, channel_ticket, seed),
            SpeedJob("random_channels", task, channel_ticket, seed),
            SpeedJob("narrow", task, channel_ticket, seed, narrow),
            SpeedJob("deep_decoder", task, channel_ticket, seed, k)]


def _run(job: SpeedJob, device, progress: bool):
    from lipkit.studies.deep_decoder_runs import settings_for
    from lipkit.fitting.loop import fit
    from lipkit.models import count_parameters
    from lipkit.pruning.masks import sparsity_report

    task = job.task
    net, masks = job.build()
    height, width = task.image_size
    flops = step_flops(net, height, width)
    settings = settings_for(task) if job.contender == "deep_decoder" else task.settings
    result = fit(net, task.operator, task.observation, settings=settings, reference=task.clean, masks=masks,
                 metric=task.metric, seed=job.seed, device=resolve_device(device), progress=progress,
                 desc=f"{job.contender} -> {task.kind} {task.image}")
    params = (count_parameters(net) if job.contender == "deep_decoder"
              else sparsity_report(net, masks)["unpruned_params"])
    record = result.record(contender=job.contender, seed=job.seed, size=job.size, target=task.target(),
                           source_round=job.ticket.meta.get("round"), parameters=int(params), gflops=flops / 1e9,
                           seconds_per_step=result.seconds / max(1, result.iterations), fitted_by="race")
    return record, result.best_output


def _from_imp(job: SpeedJob) -> dict:
    """The race record of a fit IMP made (its level's record), FLOPs counted here."""
    task, r = job.task, job.fitted
    net = job.ticket.build_net()
    return dict({k: r.get(k) for k in FitResult.RESULT_FIELDS}, contender=job.contender, seed=job.seed,
                size=job.size, target=task.target(), source_round=job.ticket.meta.get("round"),
                parameters=int(r["unpruned_params"]), gflops=step_flops(net, *task.image_size) / 1e9,
                seconds_per_step=r["seconds"] / max(1, r["iterations"]), fitted_by="imp")


def race(jobs: Sequence[SpeedJob], *, cache_dir: str | os.PathLike | None = None, workers: int | None = None,
         device: str | None = None, progress: bool = True) -> list[dict]:
    """Fit and time every job (skipping those in ``cache_dir``); records in the order of ``jobs``.

    On a CPU the fits run in ``workers`` processes (default: one per core) with one thread each,
    as the book's IMP seeds do; on a GPU one at a time. Record keys: ``contender``, ``seed``,
    ``size``, ``target``, ``source_round``, ``parameters``, ``gflops`` (one step, forward and
    backward), ``seconds`` (the whole fit), ``seconds_per_step``, ``best_psnr``, ``es_psnr``,
    ``final_psnr`` (dB), ``best_iteration``, ``es_iteration``, ``iterations``, ``device``,
    ``threads`` (the fitting process's; None for a fit IMP made before records carried it), ``fitted_by`` (``"race"`` or ``"imp"``).
    """
    dev = resolve_device(device)
    if jobs:  # the dense net is the largest contender: refuse before anything is written
        largest = max(jobs, key=lambda j: j.task.image_size[0] * j.task.image_size[1])
        check_fit_memory(largest.ticket.build_net(), *largest.task.image_size, device=dev, what=largest.task.image,
                         fits_at_once=Engine(dev, workers).workers_for(len(jobs)))
    cache = RecordCache(cache_dir, prefix="race_", computed_by=__name__) if cache_dir is not None else None
    taken = [_from_imp(job) if job.fitted is not None else None for job in jobs]  # IMP's own fits: not run
    keys = [job.key(cache) if cache is not None and job.fitted is None else None for job in jobs]
    return run_cached(_run, [(job, str(dev), False) for job in jobs], keys, cache, workers=workers, device=dev,
                      desc="timed fits", progress=progress, records=taken)


def summarize(records: Sequence[dict]) -> list[dict]:
    """One row per (task, contender): the means and stds over seeds of the PSNRs and seconds, the
    mean FLOPs (GFLOP per step) and parameters, and the speed-up and FLOPs ratio against the dense
    contender of the same task (dense seconds / seconds, dense FLOPs / FLOPs)."""
    import numpy as np

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        t = r["target"]
        groups.setdefault((t["kind"], t["image"], str(t["params"]), r["contender"]), []).append(r)
    rows = []
    for (kind, image, params, contender), rs in groups.items():
        row = dict(kind=kind, image=image, task_params=params, contender=contender, label=LABELS[contender], n=len(rs),
                   size=rs[0]["size"], parameters=float(np.mean([r["parameters"] for r in rs])),
                   gflops=float(np.mean([r["gflops"] for r in rs])))
        row.update(group_stats(rs, ("best_psnr", "es_psnr", "final_psnr", "seconds")))
        rows.append(row)
    for row in rows:
        dense = next(d for d in rows if (d["kind"], d["image"], d["task_params"]) ==
                     (row["kind"], row["image"], row["task_params"]) and d["contender"] == "dense")
        row["speedup"] = dense["seconds"] / row["seconds"]
        row["flops_ratio"] = dense["gflops"] / row["gflops"]
        row["gap_to_dense"] = row["best_psnr"] - dense["best_psnr"]
    return rows


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (seconds, PSNR) that no other point beats on both (faster and at
    least as good, or as fast and better), fastest first.

    >>> pareto_front([(1.0, 20.0), (2.0, 25.0), (3.0, 24.0), (0.5, 19.0)])
    [3, 0, 1]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
