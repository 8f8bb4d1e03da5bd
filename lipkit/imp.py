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
resumes after the last completed round and gives the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from safetensors.torch import load_file

import lipkit
from lipkit.data import to_pil
from lipkit.device import resolve_device
from lipkit.fit import FitDivergedError, FitResult, fit
from lipkit.models import skip_net
from lipkit.operators import Identity
from lipkit.pruning import (check_rate, conv_weights_of, dense_masks, global_prune, input_weight_names,
                            one_shot_magnitude, random_global, random_like, sparsity_report)
from lipkit.seeding import seeded
from lipkit.store.folder import RunLock, load_masks, open_config, save_masks, save_state, union, write_json
from lipkit.store.paths import ImpFolder
from lipkit.tasks import Task
from lipkit.tickets import Ticket

SEARCH_TARGETS = ("observation", "clean")
BASELINES = ("random_global", "random_layerwise", "oneshot")


# --- one seed -----------------------------------------------------------------------------------
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
        if not torch.isfinite(result.output).all():
            raise FitDivergedError(f"{desc}: the fit diverged again with backtracking; lower the learning rate") from None
        return result, True


def _record(result: FitResult, report: dict, **extra) -> dict:
    return dict(extra, best_psnr=result.best_psnr, es_psnr=result.es_psnr, final_psnr=result.final_psnr,
                best_iteration=result.best_iteration, es_iteration=result.es_iteration, es_stopped=result.es_stopped,
                iterations=result.iterations,
                seconds=round(result.seconds, 3), conv_sparsity=report["conv_sparsity"],
                conv_nonzero=report["conv_nonzero"], unpruned_params=report["unpruned_params"],
                layer_density=list(report["layer_density"].values()))


def _fresh_net(arch: dict, rewind_state, device) -> torch.nn.Module:
    net = skip_net(**arch)
    net.load_state_dict(rewind_state)
    return net.to(device)


def seed_worker_setup(run_dir: str, seed: int, device, threads: int | None) -> tuple[torch.device, ImpFolder]:
    """What every seed worker does first: set its thread count, pick the device, make the seed's folder."""
    if threads:
        torch.set_num_threads(threads)
    folder = ImpFolder(run_dir)
    folder.seed_dir(seed).mkdir(parents=True, exist_ok=True)
    return resolve_device(device), folder


def _run_seed(config: dict, task: Task, seed: int, run_dir: str, device: str | None, threads: int | None,
              progress: bool) -> None:
    """Run (or resume) IMP and its baselines for one seed; writes everything under seed_<seed>/."""
    _run_seeds(config, task, [seed], run_dir, device, threads, progress, batch=False)


def _run_seeds_batched(config: dict, task: Task, seeds: Sequence[int], run_dir: str, device: str | None,
                       progress: bool) -> None:
    """All seeds in this process, each round's fits as one batched model (:func:`lipkit.batched.fit_seeds`)."""
    _run_seeds(config, task, seeds, run_dir, device, None, progress, batch=True)


def _fit_many(nets, operator, observation, *, task: Task, reference, masks, seeds, device, progress, label: str,
              batch: bool) -> list[tuple[FitResult, bool]]:
    """Fit ``nets[i]`` with ``seeds[i]`` and ``masks[i]``; returns (result, retried) per net.

    With ``batch`` and several nets, the fits run together as one vmapped model. If one of them
    diverges, all are refitted one by one with :func:`_fit_guarded` (backtracking is per seed).
    """
    if batch and len(nets) > 1:
        from lipkit.batched import fit_seeds

        states = [{k: v.detach().clone() for k, v in net.state_dict().items()} for net in nets]
        try:
            results = fit_seeds(nets, operator, observation, seeds=seeds, masks=masks, settings=task.settings,
                                reference=reference, metric=task.metric, method="batched", device=device,
                                progress=progress, desc=f"{label} ({len(nets)} seeds)")
            return [(r, False) for r in results]
        except FitDivergedError:
            for net, state in zip(nets, states):
                net.load_state_dict(state)
    return [_fit_guarded(net, operator, observation, task=task, reference=reference, masks=m, seed=s,
                         device=device, progress=progress, desc=f"seed {s} {label}")
            for net, m, s in zip(nets, masks, seeds)]


def _rewind_state(config: dict, search_op, search_target, task: Task, seed: int, folder: ImpFolder, dev):
    """The seed's rewind point θ (θ0, or the dense weights after ``rewind_iteration`` steps), saved once."""
    rewind_file = folder.rewind(seed)
    if rewind_file.exists():
        return load_file(str(rewind_file))
    with seeded(seed, "weights"):
        net = skip_net(**config["arch"])  # θ0: the seed's initialisation, built on the CPU
    if config["rewind_iteration"] > 0:
        fit(net, search_op, search_target, settings=replace(task.settings, num_iter=config["rewind_iteration"]),
            seed=seed, device=dev, progress=False)
        net.cpu()
    rewind_state = OrderedDict((k, v.detach().cpu().clone()) for k, v in net.state_dict().items())
    save_state(rewind_file, rewind_state)
    return rewind_state


def _run_seeds(config: dict, task: Task, seeds: Sequence[int], run_dir: str, device: str | None,
               threads: int | None, progress: bool, *, batch: bool) -> None:
    """Run (or resume) IMP and its baselines for ``seeds``, round by round; each seed's files go
    under seed_<seed>/. With ``batch``, each round's fits of all seeds run as one batched model."""
    for seed in seeds:
        dev, folder = seed_worker_setup(run_dir, seed, device, threads)
    arch, rounds, rate = config["arch"], config["rounds"], config["rate"]
    search_clean = config["search_on"] == "clean"
    search_op = Identity() if search_clean else task.operator
    search_target = task.clean if search_clean else task.observation
    rewind = {s: _rewind_state(config, search_op, search_target, task, s, folder, dev) for s in seeds}

    probe = skip_net(**arch)
    keep_dense = input_weight_names(probe) if config["keep_input_convs_dense"] else []
    for seed in seeds:
        masks_file = folder.masks(seed, 0)
        if not masks_file.exists():
            save_masks(masks_file, dense_masks(probe))

    def fit_all(todo, masks, operator, observation, reference, label):
        nets = [_fresh_net(arch, rewind[s], dev) for s in todo]
        fits = _fit_many(nets, operator, observation, task=task, reference=reference, masks=masks, seeds=todo,
                         device=dev, progress=progress, label=label, batch=batch)
        return nets, fits

    for k in range(rounds + 1):
        # the next round's masks are written with every record, so a run can be extended later
        # (folders from before that need the last round fitted again to get them)
        todo = [s for s in seeds if not (folder.record(s, k).exists() and folder.masks(s, k + 1).exists())]
        if not todo:
            continue
        masks = [load_masks(folder.masks(s, k)) for s in todo]
        nets, searches = fit_all(todo, masks, search_op, search_target, None if search_clean else task.clean,
                                 f"round {k} (search)")
        if search_clean:
            eval_nets, evaluations = fit_all(todo, masks, task.operator, task.observation, task.clean,
                                             f"round {k} (evaluate)")
        else:
            eval_nets, evaluations = nets, searches
        for seed, net, eval_net, m, (_, retried), (evaluation, retried_eval) in zip(
                todo, nets, eval_nets, masks, searches, evaluations):
            final_weights = conv_weights_of(net)
            report = sparsity_report(eval_net, m)
            to_pil(evaluation.best_output).save(folder.image(seed, k))
            if k == 0:
                save_state(folder.dense_final(seed), final_weights)
            new_masks = global_prune(final_weights, m, rate, method=config["method"], keep_dense=keep_dense,
                                     seed=seed, key=("imp", k))
            save_masks(folder.masks(seed, k + 1), new_masks)
            write_json(folder.record(seed, k),
                        _record(evaluation, report, method="imp", seed=seed, round=k,
                                nominal_sparsity=1 - (1 - rate) ** k, search_on=config["search_on"],
                                diverged_retry=retried or retried_eval))

    # Baselines, from the same rewind point and evaluated the same way.
    shapes = dense_masks(probe)
    chains, dense_finals = {}, {}

    def baseline_masks(name: str, seed: int, k: int):
        if name == "random_global":
            if seed not in chains:
                chains[seed] = random_global(shapes, rounds, rate, seed=seed)
            return chains[seed][k]
        if name == "random_layerwise":
            return random_like(load_masks(folder.masks(seed, k)), seed=seed, key=("random_layerwise", k))
        if seed not in dense_finals:
            dense_finals[seed] = load_file(str(folder.dense_final(seed)))
        return one_shot_magnitude(dense_finals[seed], 1 - (1 - rate) ** k, keep_dense=keep_dense)

    for name in config["baselines"]:
        for seed in seeds:
            folder.record(seed, 1, name).parent.mkdir(exist_ok=True)
        for k in range(1, rounds + 1):
            todo = [s for s in seeds if not folder.record(s, k, name).exists()]
            if not todo:
                continue
            masks = [baseline_masks(name, s, k) for s in todo]
            nets, fits = fit_all(todo, masks, task.operator, task.observation, task.clean, f"{name} {k}")
            for seed, net, m, (result, retried) in zip(todo, nets, masks, fits):
                write_json(folder.record(seed, k, name),
                            _record(result, sparsity_report(net, m), method=name, seed=seed, round=k,
                                    nominal_sparsity=1 - (1 - rate) ** k, diverged_retry=retried))


# --- the run ------------------------------------------------------------------------------------
class ImpRun:
    """A run folder: its config, per-round records and tickets.

    ``max_round`` limits the records to rounds 0 .. max_round (a folder may hold more rounds
    than the experiment reading it asked for).
    """

    def __init__(self, run_dir: str | os.PathLike, max_round: int | None = None):
        self.dir = Path(run_dir)
        self.folder = ImpFolder(run_dir)
        self.max_round = max_round
        if not self.folder.config.exists():
            raise FileNotFoundError(f"{self.dir} is not an IMP run folder (no config.json)")
        self.config = json.loads(self.folder.config.read_text())

    @property
    def rounds(self) -> int:
        """The last round this view covers (the folder may hold more)."""
        stored = self.config["rounds"]
        return stored if self.max_round is None else min(stored, self.max_round)

    @property
    def seeds(self) -> list[int]:
        return self.folder.seeds()

    def records(self, method: str | None = None) -> list[dict]:
        """Every finished evaluation, IMP rounds and baselines, as dicts."""
        out = []
        for s in self.seeds:
            for f in self.folder.records(s, BASELINES):
                rec = json.loads(f.read_text())
                if self.max_round is not None and rec["round"] > self.max_round:
                    continue
                if method is None or rec["method"] == method:
                    out.append(rec)
        return out

    def curve(self, method: str = "imp", key: str = "best_psnr") -> dict:
        """Per round: mean and std over seeds of ``key`` and of the measured sparsity."""
        by_round: dict[int, list[dict]] = {}
        for r in self.records(method):
            by_round.setdefault(r["round"], []).append(r)
        rounds = sorted(by_round)
        vals = [np.array([r[key] for r in by_round[k]], dtype=float) for k in rounds]
        return dict(round=rounds,
                    sparsity=[float(np.mean([r["conv_sparsity"] for r in by_round[k]])) for k in rounds],
                    unpruned_params=[float(np.mean([r["unpruned_params"] for r in by_round[k]])) for k in rounds],
                    mean=[float(v.mean()) for v in vals], std=[float(v.std()) for v in vals],
                    n=[len(v) for v in vals])

    def round_for_parameters(self, n_params: float, method: str = "imp") -> dict:
        """The round whose tickets have about ``n_params`` parameters left (closest in ratio).

        Counts are the measured ``unpruned_params`` (nonzero conv weights plus all biases and
        BatchNorm parameters), averaged over seeds. Returns ``dict(round, parameters, ratio)``.
        """
        import math

        c = self.curve(method)
        if not c["round"]:
            raise ValueError(f"{self.dir} has no finished {method} rounds")
        i = min(range(len(c["round"])), key=lambda j: abs(math.log(c["unpruned_params"][j] / n_params)))
        return dict(round=c["round"][i], parameters=c["unpruned_params"][i],
                    ratio=round(c["unpruned_params"][i] / n_params, 4))

    def ticket(self, seed: int, round: int) -> Ticket:
        """Ticket ``round`` of ``seed``: its masks, the seed's rewind weights and the run's metadata."""
        masks_file = self.folder.masks(seed, round)
        if not masks_file.exists():
            raise FileNotFoundError(f"no ticket for seed {seed}, round {round} in {self.dir}")
        masks = load_masks(masks_file)
        rewind = OrderedDict(load_file(str(self.folder.rewind(seed))))
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
        rows = [{k: r[k] for k in ("method", "seed", "round", "nominal_sparsity", "conv_sparsity", "conv_nonzero",
                                   "unpruned_params", "best_psnr", "es_psnr", "final_psnr", "best_iteration",
                                   "es_iteration", "seconds")}
                for r in self.records()]
        return dict(config=self.config, lipkit_version=lipkit.__version__, records=rows)

    def write_summary(self) -> Path:
        path = self.folder.summary
        write_json(path, self.summary())
        return path


def imp(task: Task, *, rounds: int = 16, rate: float = 0.2, seeds: Sequence[int] = (0,),
        search_on: str = "observation", rewind_iteration: int = 0, keep_input_convs_dense: bool = False,
        method: str = "magnitude", arch: dict | None = None, baselines: Iterable[str] = (),
        run_dir: str | os.PathLike, workers: int | None = None, device: str | None = None,
        batch_seeds: bool | None = None, progress: bool = True) -> ImpRun:
    """Run (or resume) single-image IMP on ``task`` into ``run_dir``; returns the :class:`ImpRun`.

    Args:
        task: from :func:`lipkit.tasks.make_task`; its settings are the per-round fit settings.
        rounds: pruning rounds R; tickets 0 (dense) .. R are evaluated.
        rate: fraction of the remaining conv weights pruned per round, in (0, 1).
        seeds: one IMP chain per seed (initialisation, input z and noise stream).
        search_on: "observation" (realistic) or "clean" (the official code: fit the clean image).
        rewind_iteration: 0 rewinds to θ0; j > 0 to the dense weights after j iterations.
        keep_input_convs_dense: the official code's quirk (the two convolutions reading z stay dense).
        method: "magnitude" (IMP) or "random" (random global pruning in place of magnitude).
        arch: ``skip_net`` arguments (default: the LIP backbone).
        baselines: any of "random_global", "random_layerwise", "oneshot".
        workers: processes for the seeds; default: one per CPU core on a CPU (each with
            cores/workers threads), 1 on a GPU.
        batch_seeds: fit the seeds of each round together as one batched model
            (:func:`lipkit.batched.fit_seeds`, ``method="batched"``) in this process. Default:
            on a GPU with several seeds. Results equal separate fits to float tolerance, not
            bit for bit, so a run is best finished the way it was started.
    """
    if not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be a non-negative integer, got {rounds!r}")
    check_rate(rate)
    if search_on not in SEARCH_TARGETS:
        raise ValueError(f"search_on must be one of {SEARCH_TARGETS}, got {search_on!r}")
    baselines = list(baselines)
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise ValueError(f"unknown baselines {bad}; choose from {BASELINES}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    net_config = skip_net(**(arch or {})).config
    arch_args = {k: v for k, v in net_config.items() if k != "arch"}
    config = dict(task=task.describe(), arch=arch_args, rounds=rounds, rate=rate, search_on=search_on,
                  rewind_iteration=int(rewind_iteration), keep_input_convs_dense=bool(keep_input_convs_dense),
                  method=method, baselines=baselines)

    total = len(seeds) * (rounds + 1 + len(baselines) * rounds)
    return start_run(run_dir, config, _run_seed, task, seeds, device=device, workers=workers, progress=progress,
                     total=total, batch_worker=_run_seeds_batched, batch_seeds=batch_seeds)


def start_run(run_dir, config: dict, worker, payload, seeds: Sequence[int], *, device, workers, progress: bool,
              total: int, batch_worker=None, batch_seeds: bool | None = None) -> ImpRun:
    """Create or resume the run folder ``run_dir`` for ``config`` and run ``worker`` for every seed.

    ``worker(config, payload, seed, run_dir, device, threads, progress)`` writes one seed's
    files; seeds run in worker processes on a CPU. A folder holding another config is refused,
    except that more ``rounds`` or baselines the folder does not have yet extend it. The
    returned view holds the rounds this config asks for, even when the folder has more.

    ``batch_worker(config, payload, seeds, run_dir, device, progress)``, if given, runs all seeds
    at once in this process instead; it is used when ``batch_seeds`` is true, or by default
    (None) on a GPU with several seeds.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        # more rounds or another baseline only add records: they extend the run, not redefine it
        open_config(run_dir, config, extendable={"rounds": max, "baselines": union})
        dev = resolve_device(device)
        if batch_seeds is None:
            batch_seeds = dev.type != "cpu" and len(seeds) > 1
        if batch_seeds and batch_worker is not None:
            batch_worker(config, payload, list(seeds), str(run_dir), str(dev), progress)
        else:
            _run_all(worker, config, payload, seeds, run_dir, device, workers, progress, total)
    ImpRun(run_dir).write_summary()  # the whole folder
    return ImpRun(run_dir, max_round=config["rounds"])


def _run_all(worker, config, payload, seeds, run_dir: Path, device, workers, progress, total: int) -> None:
    dev = resolve_device(device)
    if workers is None:
        workers = min(len(seeds), os.cpu_count() or 1) if dev.type == "cpu" else 1
    workers = max(1, min(workers, len(seeds)))
    if workers == 1:
        for s in seeds:
            worker(config, payload, s, str(run_dir), str(dev), None, progress)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(worker, config, payload, s, str(run_dir), str(dev), threads, False) for s in seeds]
            _watch(futures, run_dir, seeds, total, progress)
            for f in futures:
                f.result()  # re-raise a worker's error here


def _watch(futures, run_dir: Path, seeds, total: int, progress: bool) -> None:
    """Progress bar over the records the workers write, until they are done."""
    from tqdm.auto import tqdm

    def count() -> int:
        return sum(len(list(ImpFolder(run_dir).seed_dir(s).rglob("round_*.json"))) for s in seeds)

    bar = tqdm(total=total, desc="IMP rounds", disable=not progress)
    while not all(f.done() for f in futures):
        bar.n = count()
        bar.refresh()
        time.sleep(1.0)
    bar.n = count()
    bar.close()
