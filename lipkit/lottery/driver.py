"""The one lottery driver: level k = prune(level k−1), rewind, train, record, for every kind of run.

Single-image IMP (:mod:`lipkit.lottery.imp`), weight-sharing IMP (:mod:`lipkit.lottery.weight_sharing`),
generator IMP (:mod:`lipkit.gan.imp`) and classification IMP (:mod:`lipkit.lottery.classify`) differ
only in their :class:`Trainer`: what a seed's rewind point is and how one level is trained and
measured. The driver owns everything else, once:

- ``rounds`` R means R pruning rounds: levels 0 (dense) .. R are trained and recorded;
- the main chain prunes ``rate`` of the remaining prunable weights of the trained level k by
  global magnitude (``criterion="random"``: at random), giving level k+1; every parameter and buffer
  is rewound to the seed's rewind point (a trainer that ``continues`` starts level k+1 from level
  k's trained state instead, as the official classification code does);
- baselines are branches off the chain (:data:`BRANCHES`): masks made from a level (random masks
  with a ticket's layer densities, one-shot magnitude of the dense fit, a random chain), trained
  from the same rewind point and recorded the same way;
- the run folder (:class:`lipkit.store.paths.ImpFolder`) gets every file after each level, so a
  run resumes after its last finished level, and the next level's masks are written with every
  record, so a run with more ``rounds`` or baselines extends a finished one;
- seeds run one after another, in worker processes on a CPU, or together (batched) when the
  trainer can.

A trainer's weights may fall into *groups* that are ranked separately (a GAN's generator "G" and
critic "D"); parameter names then start with the group (``"G.main.0.weight"``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import torch

from lipkit.data import to_pil
from lipkit.device import resolve_device
from lipkit.parallel import Engine
from lipkit.pruning.masks import dense_masks, global_prune, one_shot_magnitude, random_global, random_like
from lipkit.store.folder import (RunConfigError, RunLock, load_masks, load_tensors, open_config, read_json,
                                 save_masks, save_state, write_json)
from lipkit.lottery.identity import EXTENDABLE, name_legacy_seeds, run_id
from lipkit.store.paths import ImpFolder

Masks = "OrderedDict[str, torch.Tensor]"


@dataclass
class Trained:
    """One seed's trained level: its record's numbers, the trained prunable weights (what the next
    level is ranked by), the images to keep (restored images; ``per_image``: one file per image of
    a several-image run, numbered even when there is one) and a state to keep (or None)."""

    record: dict
    weights: Mapping[str, torch.Tensor]
    images: list[torch.Tensor] = field(default_factory=list)
    state: Mapping[str, torch.Tensor] | None = None
    per_image: bool = False


class Trainer(Protocol):
    """What a kind of run supplies to the driver."""

    method: str                       # the main chain's method name in its records ("imp", ...)
    groups: tuple[str, ...] | None    # weight groups ranked apart (None: one global ranking)
    keep_dense: Sequence[str]         # weights ranked as if dense and never pruned (the official quirk)
    batch: bool                       # whether train() fits several seeds as one batched model
    # optional: continues = True starts each level from the previous level's trained state (kept by
    # train() as Trained.state), not from the rewind point

    def network(self) -> torch.nn.Module:
        """A fresh network (its prunable weights name the masks)."""

    def rewind_state(self, seed: int) -> "OrderedDict[str, torch.Tensor]":
        """The seed's rewind point (parameters and buffers), made once and then read from the folder."""

    def train(self, level: int, seeds: Sequence[int], masks: Sequence[Masks], rewinds: Sequence[Mapping],
              heads: Sequence[dict]) -> list[Trained]:
        """Train level ``level`` for ``seeds`` (masks and rewind point of each); ``heads[i]`` starts
        seed i's record (method, seed, round, nominal sparsity)."""


# --- baselines: branches off a level's mask -----------------------------------------------------------
@dataclass
class Branch:
    """What a baseline may use to make its masks at ``level``."""

    seed: int
    level: int
    rounds: int
    rate: float
    keep_dense: Sequence[str]
    groups: tuple[str, ...] | None
    dense: Masks                                   # level-0 masks: the shapes of the prunable weights
    chain_masks: Callable[[int], Masks]            # the main chain's masks of a level
    dense_weights: Callable[[], Mapping]           # the dense level's trained weights
    memo: dict                                     # what a baseline computes once per run


def _by_group(tensors: Mapping, groups) -> list[tuple[str | None, "OrderedDict"]]:
    if groups is None:
        return [(None, OrderedDict(tensors))]
    return [(g, OrderedDict((n, t) for n, t in tensors.items() if n.startswith(f"{g}."))) for g in groups]


def _random_global(b: Branch) -> Masks:
    out = OrderedDict()
    for group, shapes in _by_group(b.dense, b.groups):
        key = () if group is None else (group,)
        memo_key = ("random_global", b.seed, group)
        if memo_key not in b.memo:  # the whole chain once per run, not once per level
            b.memo[memo_key] = random_global(shapes, b.rounds, b.rate, seed=b.seed, key=key)
        out.update(b.memo[memo_key][b.level])
    return out


def _random_layerwise(b: Branch) -> Masks:
    return random_like(b.chain_masks(b.level), seed=b.seed, key=("random_layerwise", b.level))


def _oneshot(b: Branch) -> Masks:
    out = OrderedDict()
    for _, weights in _by_group(b.dense_weights(), b.groups):
        keep = [n for n in b.keep_dense if n in weights]
        out.update(one_shot_magnitude(weights, 1 - (1 - b.rate) ** b.level, keep_dense=keep))
    return out


BRANCHES: dict[str, Callable[[Branch], Masks]] = {
    "random_global": _random_global,        # random global pruning, `rate` of the rest per round
    "random_layerwise": _random_layerwise,  # random masks with the ticket's per-layer densities
    "oneshot": _oneshot,                    # global magnitude of the dense fit, straight to the level's sparsity
}


STRUCTURES = ("unstructured", "channel")  # what a level removes: single weights, or whole channels


def prune_level(weights: Mapping, masks: Mapping, rate: float, *, criterion: str, keep_dense: Sequence[str],
                groups, seed: int, level: int, structure: str = "unstructured", network=None) -> Masks:
    """The next level's masks: ``rate`` of the remaining weights removed, one ranking per group;
    with ``structure="channel"``, ``rate`` of the remaining channels of ``network`` (a skip net),
    ranked by their filters' mean |w| (or at random), as masks over everything that carries them
    (:mod:`lipkit.pruning.channels`)."""
    if structure == "channel":
        from lipkit.pruning.channels import channels_of, parameter_masks, prune_channels

        pruned = prune_channels(network, channels_of(network, masks), rate, weights=weights, seed=seed, key=(level,),
                                score="l1" if criterion == "magnitude" else "random")
        return parameter_masks(network, pruned)
    out = OrderedDict()
    for group, part in _by_group(weights, groups):
        key = ("imp", level) if group is None else ("imp", level, group)
        keep = [n for n in keep_dense if n in part]
        out.update(global_prune(part, {n: masks[n] for n in part}, rate, criterion=criterion, keep_dense=keep,
                                seed=seed, key=key))
    return out


# --- the loop -------------------------------------------------------------------------------------------
def _check_records(folder: ImpFolder, seeds: Sequence[int], run: str) -> None:
    for seed in seeds:
        for path in folder.records(seed, tuple(BRANCHES)):
            found = read_json(path).get("run")
            if found != run:
                raise RunConfigError(f"{path} was written by another run (run id {found}, this run is {run}); "
                                     "it will not be mixed in. Use another run folder, or delete this one.")


def run_seeds(config: dict, trainer: Trainer, seeds: Sequence[int], folder: ImpFolder) -> None:
    """Run (or resume) the main chain and the baselines of ``config`` for ``seeds`` into ``folder``."""
    rounds, rate, keep_dense = config["rounds"], config["rate"], trainer.keep_dense
    run = run_id(config)
    _check_records(folder, seeds, run)
    for seed in seeds:
        folder.seed_dir(seed).mkdir(parents=True, exist_ok=True)
    rewinds = {}
    for seed in seeds:
        path = folder.rewind(seed)
        if not path.exists():
            save_state(path, trainer.rewind_state(seed))
        rewinds[seed] = load_tensors(path)
    shapes = trainer.network()
    dense = dense_masks(shapes)
    structure = config.get("structure", "unstructured")  # absent in runs made before channel pruning
    for seed in seeds:
        if not folder.masks(seed, 0).exists():
            save_masks(folder.masks(seed, 0), dense)

    def head(method, seed, level):
        return dict(method=method, seed=seed, round=level, nominal_sparsity=1 - (1 - rate) ** level, run=run)

    main = trainer.method

    def start(seed, level):
        """Where level ``level`` of ``seed`` starts: the rewind point, or the previous level's trained
        state for a trainer that ``continues`` (no rewinding)."""
        if getattr(trainer, "continues", False) and level > 0:
            return load_tensors(folder.trained(seed, level - 1, main))
        return rewinds[seed]

    def train(level, method, todo, masks):
        groups = [todo] if trainer.batch else [[s] for s in todo]
        out = []
        for part in groups:
            idx = [todo.index(s) for s in part]
            out += trainer.train(level, part, [masks[i] for i in idx], [start(s, level) for s in part],
                                 [head(method, s, level) for s in part])
        return out

    for k in range(rounds + 1):
        # the next level's masks are written with every record, so that a run can be extended later
        todo = [s for s in seeds if not (folder.record(s, k, main).exists() and folder.masks(s, k + 1).exists())]
        if not todo:
            continue
        masks = [load_masks(folder.masks(s, k)) for s in todo]
        for seed, m, done in zip(todo, masks, train(k, main, todo, masks)):
            for index, image in enumerate(done.images):
                to_pil(image).save(folder.image(seed, k, index if done.per_image else None))
            if k == 0:
                save_state(folder.dense_final(seed), done.weights)
            if done.state is not None:
                save_state(folder.trained(seed, k, main), done.state)
            save_masks(folder.masks(seed, k + 1),
                       prune_level(done.weights, m, rate, criterion=config["criterion"], keep_dense=keep_dense,
                                   groups=trainer.groups, seed=seed, level=k, structure=structure, network=shapes))
            write_json(folder.record(seed, k, main), done.record)

    dense_finals: dict[int, Mapping] = {}
    memo: dict = {}

    def dense_weights(seed: int) -> Mapping:
        if seed not in dense_finals:
            dense_finals[seed] = load_tensors(folder.dense_final(seed))
        return dense_finals[seed]

    for name in config["baselines"]:
        for k in range(1, rounds + 1):
            todo = [s for s in seeds if not folder.record(s, k, name).exists()]
            if not todo:
                continue
            masks = []
            for seed in list(todo):
                branch = Branch(seed, k, rounds, rate, keep_dense, trainer.groups, dense,
                                chain_masks=lambda level, s=seed: load_masks(folder.masks(s, level)),
                                dense_weights=lambda s=seed: dense_weights(s), memo=memo)
                mine = BRANCHES[name](branch)
                if _same_masks(mine, branch.chain_masks(k)):
                    _reuse_chain_fit(folder, seed, k, main, name)
                    todo.remove(seed)
                else:
                    masks.append(mine)
            for seed, done in zip(todo, train(k, name, todo, masks) if todo else []):
                folder.record(seed, k, name).parent.mkdir(exist_ok=True)
                if done.state is not None:
                    save_state(folder.trained(seed, k, name), done.state)
                write_json(folder.record(seed, k, name), done.record)


def _same_masks(a: Masks, b: Masks) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def _reuse_chain_fit(folder: ImpFolder, seed: int, level: int, main: str, name: str) -> None:
    """Record baseline ``name``'s level as the main chain's fit of it: its masks are the chain's
    (one-shot pruning at level 1 is IMP's first round), and the same θ, masks, observation and
    seed give the same fit, so it is not computed twice. ``same_fit_as`` says so."""
    record = dict(read_json(folder.record(seed, level, main)), method=name, same_fit_as=main)
    record.pop("search_on", None)  # the chain's own field: a baseline's fit is always on the observation
    folder.record(seed, level, name).parent.mkdir(exist_ok=True)
    trained = folder.trained(seed, level, main)
    if trained.exists():
        save_state(folder.trained(seed, level, name), load_tensors(trained))
    write_json(folder.record(seed, level, name), record)


# --- a run: lock, config, seeds in processes --------------------------------------------------------------
def seed_job(config: dict, make_trainer, payload, seeds: Sequence[int], run_dir: str, device: str,
             progress: bool, batch: bool) -> None:
    """Run ``seeds`` in this process (a worker's job): ``make_trainer(config, payload, device, progress,
    batch)`` builds the trainer."""
    trainer = make_trainer(config, payload, resolve_device(device), progress, batch)
    run_seeds(config, trainer, seeds, ImpFolder(run_dir))


def how_seeds_run(n_seeds: int, device, workers: int | None, batch_seeds: bool | None) -> tuple[bool, int]:
    """(batched, worker processes) for ``n_seeds`` seeds: batched by default on a GPU with several
    seeds; otherwise the job engine's workers for one job per seed (:class:`lipkit.parallel.Engine`)."""
    dev = resolve_device(device)
    if batch_seeds is None:
        batch_seeds = dev.type != "cpu" and n_seeds > 1
    if batch_seeds:
        return True, 1
    return False, Engine(dev, workers).workers_for(n_seeds)


def start_run(run_dir, config: dict, make_trainer, payload, seeds: Sequence[int], *, device, workers,
              progress: bool, total: int, batch_seeds: bool | None = False, what: str = "an IMP run") -> None:
    """Create or resume the run folder ``run_dir`` for ``config`` and run every seed.

    A folder holding another config is refused (:class:`lipkit.store.folder.RunConfigError`),
    except that more ``rounds`` or baselines extend it. On a CPU, seeds run in worker processes;
    with ``batch_seeds`` (default None: on a GPU with several seeds) they run together in this
    process as one batched model, if the trainer can.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        name_legacy_seeds(run_dir, config)
        open_config(run_dir, config, extendable=EXTENDABLE, what=what)
        dev = resolve_device(device)
        batch_seeds, workers = how_seeds_run(len(seeds), dev, workers, batch_seeds)
        if batch_seeds or workers == 1:
            seed_job(config, make_trainer, payload, list(seeds), str(run_dir), str(dev), progress, batch_seeds)
            return
        _seeds_in_workers(run_dir, config, make_trainer, payload, seeds, dev, workers, total, progress)


def _seeds_in_workers(run_dir: Path, config, make_trainer, payload, seeds, dev, workers: int, total: int,
                      progress: bool) -> None:
    """One job per seed on the job engine's workers (they die with this process, and so never write
    unlocked), with a progress bar over the records they write."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="IMP rounds", disable=not progress)

    def written() -> None:
        bar.n = ImpFolder(run_dir).records_written(seeds)
        bar.refresh()

    jobs = [(config, make_trainer, payload, [s], str(run_dir), str(dev), False, False) for s in seeds]
    for _ in Engine(dev, workers).map(seed_job, jobs, waiting=written if progress else None):
        pass  # a worker's error is raised here
    if progress:
        written()
    bar.close()
