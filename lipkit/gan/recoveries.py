"""Recoveries through a generator as cached records: the MOM and least-squares estimates of chapter 6.

A recovery (:class:`RecoveryJob`) is a generator (its config and weights) estimating ``images`` from
the measurements a :class:`lipkit.operators.CompressiveSensing` operator takes of them (observation
seed ``observation_seed``), by the MOM tournament (``solver="mom"``, blocks of ``block_size``) or by
least squares (``solver="erm"``), for ``iters`` iterations from the solver's ``seed``
(:mod:`lipkit.gan.mom`). Its record holds the per-image MSE (the paper's per-pixel metric, on the
generator's [-1, 1] scale), their mean and the seconds; the estimates are kept beside it as one
row of images (a PNG, :func:`estimates`).

:func:`recoveries` keeps every record under a key of everything that made it (the job, the
generator's weights, the images, the operator's matrix and the code:
:class:`lipkit.store.cache.RecordCache`), so that the chapter and its test read the same numbers and
a rebuild computes nothing again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from lipkit.gan.mom import erm, mom_tournament
from lipkit.parallel import run_cached
from lipkit.store.cache import RecordCache

SOLVERS = ("mom", "erm")


@dataclass
class RecoveryJob:
    """One recovery of ``images`` ((N, C, H, W) in [-1, 1]) through ``generator``; ``label`` says
    which generator it is (``"dense"``, ``"magnitude 2"``: chain and round of a generator-IMP run)."""

    generator: nn.Module
    operator: nn.Module
    images: torch.Tensor
    solver: str = "mom"
    block_size: int = 20
    iters: int = 1500
    seed: int = 0
    observation_seed: int = 1
    label: str = "dense"

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")

    def describe(self) -> dict:
        """What determines the record, besides the tensors of :meth:`tensors`."""
        d = dict(label=self.label, generator=dict(self.generator.config), operator=self.operator.extra_repr(),
                 images=list(self.images.shape), solver=self.solver, iters=int(self.iters), seed=int(self.seed),
                 observation_seed=int(self.observation_seed))
        if self.solver == "mom":
            d["block_size"] = int(self.block_size)
        return d

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """The generator's weights and buffers, the images and the operator's matrix."""
        return ([(f"G.{k}", v) for k, v in self.generator.state_dict().items()] + [("images", self.images)]
                + [(f"A.{k}", v) for k, v in self.operator.state_dict().items()])


def recover(job: RecoveryJob, device=None, progress: bool = False) -> tuple[dict, torch.Tensor]:
    """Run ``job``: its record and its estimates as one row of images, (C, H, N·W) in [0, 1]."""
    y = job.operator.observe(job.images, seed=job.observation_seed)
    kwargs = dict(iters=job.iters, reference=job.images, seed=job.seed, device=device, progress=progress)
    if job.solver == "mom":
        result = mom_tournament(job.generator, job.operator, y, block_size=job.block_size, **kwargs)
    else:
        result = erm(job.generator, job.operator, y, **kwargs)
    mse = [float(v) for v in result.mse]
    record = dict(job.describe(), mse=mse, mean_mse=float(result.mse.mean()), seconds=round(result.seconds, 3))
    row = torch.cat(list((result.images.clamp(-1, 1) + 1) / 2), dim=-1)
    return record, row


def recoveries(jobs: Sequence[RecoveryJob], *, cache_dir: str | os.PathLike, device=None,
               progress: bool = False) -> list[dict]:
    """The record of every job, in order, each computed once (in this process, one after another)
    and then read from ``cache_dir``."""
    cache = RecordCache(cache_dir, "recovery_", computed_by="lipkit.gan.recoveries")
    keys = [cache.key(job.describe(), job.tensors()) for job in jobs]
    return run_cached(recover, [(job, device) for job in jobs], keys, cache, workers=1, device=device,
                      desc="recoveries", progress=progress)


def estimates(record: dict) -> torch.Tensor:
    """A recovery's estimates, (N, C, H, W) in [-1, 1] (read back from its PNG, 8 bits a value)."""
    from lipkit.data import load_image

    n, channels = record["images"][0], record["images"][1]
    row = load_image(record["image"], mode="L" if channels == 1 else "RGB")
    return torch.stack(row.chunk(n, dim=-1)) * 2 - 1


def level_jobs(run, make_generator: Callable[[], nn.Module], operator: nn.Module, images: torch.Tensor,
               **solver) -> list[RecoveryJob]:
    """One MOM job per pruned level of each chain of the generator-IMP ``run`` (a
    :class:`lipkit.gan.imp.GanImpRun`), labelled ``"<criterion> <round>"``; ``make_generator()`` gives an
    untrained generator of the run's architecture, which the level's weights are loaded into."""
    jobs = []
    for criterion in run.criteria:
        for record in run.records(criterion)[1:]:
            k = record["round"]
            jobs.append(RecoveryJob(run.load_into(make_generator(), criterion, k), operator, images,
                                    label=f"{criterion} {k}", **solver))
    return jobs
