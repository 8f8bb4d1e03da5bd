"""Iterative magnitude pruning of a pretrained generator (LIP's GAN experiments), resumable.

:func:`gan_imp` is LIP's IMP for generators (``PGAN_random_IMP.py``, without its bugs): starting
from the pretrained G and D, for rounds k = 0, 1, ..., R

1. fine-tune G and D from pretrained ⊙ masks_k on the fine-tuning images with WGAN-GP
   (:func:`lipkit.gan.wgan.train_wgangp`), masks held;
2. the fine-tuned, masked G is the generator evaluated at sparsity s_k (k = 0: dense, fine-tuned);
3. prune ``rate`` of the remaining conv weights of G and, separately, of D (one global ranking
   each, by magnitude of the fine-tuned weights), then rewind every parameter and buffer to the
   pretrained ones. Random global pruning (``criteria=("magnitude", "random")``) is the baseline.

Not copied from the official script: its hard-coded random pruning (magnitude is the default
here) and the extra 20 % random pruning at evaluation. The loop is :mod:`lipkit.lottery.driver`'s, as for
the image priors: everything is written to a run folder after each round; running again resumes
after the last finished round, and more ``rounds`` extend a finished run.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import asdict
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

import lipkit
from lipkit.lottery.imp import ImpRun
from lipkit.lottery.driver import Trained, start_run
from lipkit.lottery.settings import GanImpSettings
from lipkit.pruning.masks import conv_weights_of, mask_sparsity, measured_sparsity
from lipkit.seeding import SCHEME, derive_seed
from lipkit.store.cache import tensors_digest
from lipkit.store.folder import load_masks, load_tensors, read_json
from lipkit.pruning.tickets import Ticket
from lipkit.gan.wgan import WGANSettings, pair_digest, state_of, train_wgangp


# --- IMP for generators -------------------------------------------------------------------------------
class GanTrainer:
    """Levels of generator IMP (:class:`lipkit.lottery.driver.Trainer`): fine-tune copies of G and D from
    the pretrained weights ⊙ masks with WGAN-GP. G and D are one network to the driver (names
    ``"G.<param>"`` and ``"D.<param>"``), ranked apart (two groups). Level k's fine-tuning draws
    from the ``"gan_finetune"`` stream of (seed, k): every chain sees the same data and noise."""

    method = "imp"
    groups = ("G", "D")
    keep_dense: tuple[str, ...] = ()
    batch = False

    def __init__(self, config: dict, payload, device, progress: bool, batch: bool = False):
        import copy

        generator, critic, self.images = payload
        # copies: the caller's networks keep their (pretrained) weights
        self.pair = nn.ModuleDict({"G": copy.deepcopy(generator), "D": copy.deepcopy(critic)})
        self.pretrained = state_of(self.pair)
        self.config, self.device, self.progress = config, device, progress
        self.finetune = WGANSettings(**{**config["finetune"], "betas": tuple(config["finetune"]["betas"])})

    def network(self) -> nn.Module:
        return self.pair

    def rewind_state(self, seed: int):
        return self.pretrained

    def train(self, level, seeds, masks, rewinds, heads) -> list[Trained]:
        out = []
        for seed, m, rewind, head in zip(seeds, masks, rewinds, heads):
            self.pair.load_state_dict(rewind)  # every parameter and buffer
            part = {g: {n[len(g) + 1:]: t for n, t in m.items() if n.startswith(f"{g}.")} for g in self.groups}
            history = train_wgangp(self.pair["G"], self.pair["D"], self.images, self.finetune, g_masks=part["G"],
                                   d_masks=part["D"], seed=derive_seed(seed, "gan_finetune", level),
                                   device=self.device, progress=self.progress,
                                   desc=f"{head['method']} round {level} fine-tune")
            record = dict(head, G=measured_sparsity(self.pair["G"]), D=measured_sparsity(self.pair["D"]),
                          final_wasserstein=float(np.mean(history["wasserstein"][-50:])),
                          seconds=round(history["seconds"], 2))
            out.append(Trained(record, conv_weights_of(self.pair), state=state_of(self.pair)))
        return out


def make_gan_trainer(config, payload, device, progress, batch) -> GanTrainer:
    return GanTrainer(config, payload, device, progress)


def _part(state, which: str) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((n[len(which) + 1:], t) for n, t in state.items() if n.startswith(f"{which}."))


class GanImpRun(ImpRun):
    """A generator-IMP run folder (the layout of :class:`lipkit.store.paths.ImpFolder`), read per
    pruning criterion: "magnitude" (IMP) or "random" (random global pruning); both share level 0, the dense,
    fine-tuned pair. Records hold the measured sparsity of G and D, the final Wasserstein
    estimate and the seconds."""

    def __init__(self, run_dir: str | os.PathLike, max_round: int | None = None,
                 seeds: Sequence[int] | None = None):
        super().__init__(run_dir, max_round, seeds)
        self._random_chain: dict = {}  # the random branch's masks, drawn once per view, not once per level

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def criteria(self) -> list[str]:
        return list(self.config["criteria"])

    def _chain(self, criterion: str, k: int) -> str:
        """The stored chain of ``criterion`` at level ``k``: the driver's main chain or its random branch."""
        if criterion not in self.config["criteria"]:
            raise KeyError(f"criterion {criterion!r} was not run; the run has {self.config['criteria']}")
        return "imp" if (k == 0 or criterion == self.config["criterion"]) else "random_global"

    def record(self, criterion: str, k: int) -> dict:
        f = self.folder.record(self.seed, k, self._chain(criterion, k))
        if not f.exists():
            raise FileNotFoundError(f"round {k} of {criterion} is not finished in {self.dir}")
        return read_json(f)

    def records(self, criterion: str | None = None) -> list[dict]:
        """The finished rounds of ``criterion``'s chain, round 0 (dense, fine-tuned) first."""
        if criterion is None:
            return super().records()
        out = []
        for k in range(self.rounds + 1):
            try:
                out.append(self.record(criterion, k))
            except FileNotFoundError:
                break
        return out

    def masks(self, criterion: str, k: int, net: str = "G") -> "OrderedDict[str, torch.Tensor]":
        if self._chain(criterion, k) == "imp":
            return _part(load_masks(self.folder.masks(self.seed, k)), net)
        return _part(self._branch_masks(k), net)

    def _branch_masks(self, k: int):
        from lipkit.lottery.driver import BRANCHES, Branch

        shapes = load_masks(self.folder.masks(self.seed, 0))
        return BRANCHES["random_global"](Branch(self.seed, k, self.config["rounds"], self.config["rate"], (),
                                                GanTrainer.groups, shapes, chain_masks=None, dense_weights=None,
                                                memo=self._random_chain))

    def load_into(self, net: nn.Module, criterion: str, k: int, which: str = "G") -> nn.Module:
        """Load the fine-tuned weights of round ``k`` (masks applied) into ``net``; returns it in eval mode."""
        state = load_tensors(self.folder.trained(self.seed, k, self._chain(criterion, k)))
        net.load_state_dict(_part(state, which))
        return net.eval()

    def pretrained_into(self, net: nn.Module, which: str = "G") -> nn.Module:
        net.load_state_dict(_part(load_tensors(self.folder.rewind(self.seed)), which))
        return net.eval()

    def ticket(self, generator: nn.Module, criterion: str, k: int) -> Ticket:
        """Round ``k``'s generator ticket: its masks with the pretrained weights to rewind to."""
        masks = self.masks(criterion, k)
        rewind = _part(load_tensors(self.folder.rewind(self.seed)), "G")
        rec = self.record(criterion, k)
        return Ticket(masks, rewind, dict(arch=dict(generator.config), round=k, criterion=criterion,
                                          conv_sparsity=mask_sparsity(masks), rate=self.config["rate"],
                                          measured=rec["G"], lipkit_version=lipkit.__version__))

    def summary(self) -> dict:
        rows = [dict(criterion=c, round=r["round"], nominal_sparsity=r["nominal_sparsity"], G=r["G"], D=r["D"],
                     final_wasserstein=r["final_wasserstein"], seconds=r["seconds"])
                for c in self.criteria for r in self.records(c)]
        return dict(config=self.config, lipkit_version=lipkit.__version__, records=rows)


def gan_imp_config(generator: nn.Module, critic: nn.Module, images: torch.Tensor, *, rounds: int,
                   finetune: WGANSettings, rate: float = 0.2, criteria: Iterable[str] = ("magnitude",),
                   seed: int = 0) -> dict:
    """What :func:`gan_imp` with these arguments runs (its ``config.json``, which names its folder:
    :func:`lipkit.lottery.identity.folder_name`): the settings, the architectures, the fine-tuning,
    and the sha256 of the rewind point (the pretrained G and D) and of the fine-tuning images, so that
    another pretraining is another run. Bad settings are refused here, before anything is written."""
    settings = GanImpSettings(rounds=rounds, rate=rate, criteria=criteria, seed=seed)
    return settings.config(generator=dict(generator.config), critic=dict(critic.config), finetune=asdict(finetune),
                           n_images=int(images.shape[0]), seeding=SCHEME, start=pair_digest(generator, critic),
                           images=tensors_digest([("images", images)])[:16])


def gan_imp(generator: nn.Module, critic: nn.Module, images: torch.Tensor, *, rounds: int, run_dir: str | os.PathLike,
            finetune: WGANSettings, rate: float = 0.2, criteria: Iterable[str] = ("magnitude",), seed: int = 0,
            device=None, progress: bool = True) -> GanImpRun:
    """Run (or resume, or extend) IMP on a pretrained generator G and critic D; returns the :class:`GanImpRun`.

    Args:
        generator, critic: the pretrained networks (their current weights are the rewind point;
            they are not changed: the run fine-tunes copies).
        images: the fine-tuning images (LIP: the first 40 % of the training set), (N, C, H, W).
        rounds: R; generators at sparsities 0 (dense, fine-tuned) and 1−(1−rate)^k, k = 1..R.
        finetune: the WGAN-GP settings of every round's fine-tuning.
        rate: fraction of the remaining conv weights pruned per round, in G and in D (one ranking each).
        criteria: any of "magnitude" (IMP) and "random" (random global pruning, the baseline);
            each has its own chain of masks, and all share round 0.
        seed: seeds the fine-tuning (the same data order and noise at round k for every criterion)
            and the random rankings.
    """
    config = gan_imp_config(generator, critic, images, rounds=rounds, finetune=finetune, rate=rate, criteria=criteria,
                            seed=seed)
    start_run(run_dir, config, make_gan_trainer, (generator, critic, images), [int(seed)], device=device, workers=1,
              progress=progress, total=rounds * len(config["criteria"]) + 1, what="a generator-IMP run")
    run = GanImpRun(run_dir)
    run.write_summary()
    return GanImpRun(run_dir, max_round=rounds, seeds=[int(seed)])
