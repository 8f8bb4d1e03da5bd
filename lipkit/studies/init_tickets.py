"""Tickets from masks chosen at initialization: a seed's θ0, a strategy's masks, and their cost.

An :class:`InitTicketJob` names everything that makes such a ticket: the task (OES, SNIP and
GraSP look at its observation), the strategy (:data:`lipkit.pruning.at_init.INIT_STRATEGIES`), the density
(fraction of conv weights kept), the seed and the architecture. Seed s gives θ0 from its
``"weights"`` stream and z from its ``"network_input"`` stream, exactly as IMP's chain of seed s
and a fit with seed s do: an init ticket, an IMP ticket and the dense DIP of one seed start from
the same weights and the same input, and the ticket is fitted with the z its mask was chosen for.

The ticket is an ordinary :class:`lipkit.pruning.tickets.Ticket` (masks, rewind weights = θ0), with
``strategy``, ``density``, ``measured_density`` and ``cost`` (forward-backward passes and seconds of the search) in its
metadata, so every fit, transfer and chapter takes it. :func:`init_tickets` makes many in worker
processes and keeps each as ticket files in a folder, under a name that hashes the job and the
code, so that a rerun loads them instead of searching again.

>>> from lipkit.tasks import make_task
>>> task = make_task("denoise", "set5/baby", crop=64, iters=10)
>>> ticket = init_ticket(InitTicketJob(task, "snip", 0.2, seed=0, width=8))
>>> ticket.meta["strategy"], round(ticket.meta["measured_density"], 3), ticket.meta["cost"]["passes"]
('snip', 0.2, 1)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lipkit.device import resolve_device
from lipkit.fitting.loop import default_input
from lipkit.pruning.at_init import INIT_STRATEGIES, find_masks
from lipkit.models import theta0
from lipkit.parallel import Engine
from lipkit.pruning.masks import mask_sparsity
from lipkit.store.cache import RecordCache
from lipkit.tasks import Task, check_task_fits
from lipkit.pruning.tickets import Ticket, TicketMismatchError, ticket_files

OES_PAPER_STEPS = 60000  # the OES code's default (its Set14 logs ran 80,000)


@dataclass
class InitTicketJob:
    """One mask at initialization: ``strategy`` at ``density`` (fraction of conv weights kept) for
    ``task``, from seed ``seed``'s θ0 and z, on a skip net of ``width`` channels per level.
    ``oes_steps`` and ``synflow_rounds`` are those strategies' own lengths."""

    task: Task
    strategy: str
    density: float
    seed: int = 0
    width: int = 128
    oes_steps: int = OES_PAPER_STEPS
    synflow_rounds: int = 100

    def __post_init__(self):
        if self.strategy not in INIT_STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose from {INIT_STRATEGIES}")
        if not 0 < self.density < 1:
            raise ValueError(f"density is the fraction of conv weights kept and must be in (0, 1), got {self.density}")
        if self.seed < 0 or self.width < 1 or self.oes_steps < 1 or self.synflow_rounds < 1:
            raise ValueError(f"seed must be >= 0 and width, oes_steps and synflow_rounds >= 1; got {self.seed}, "
                             f"{self.width}, {self.oes_steps} and {self.synflow_rounds}")

    @property
    def arch(self) -> dict:
        return dict(num_channels_down=[self.width] * 5, num_channels_up=[self.width] * 5)

    def describe(self) -> dict:
        """What determines the masks (OES's steps only for OES, SynFlow's rounds only for SynFlow)."""
        d = dict(task=self.task.describe(), strategy=self.strategy, density=float(self.density), seed=int(self.seed),
                 arch=self.arch)
        if self.strategy == "oes":
            d["oes_steps"] = int(self.oes_steps)
        if self.strategy == "synflow":
            d["synflow_rounds"] = int(self.synflow_rounds)
        return d

    def name(self, key: str) -> str:
        """File stem: strategy, image, density, seed and the first characters of the job's key."""
        percent = f"{100 * self.density:.4g}".replace(".", "p")  # no dot in a file stem: d6p4 is 6.4 %
        return f"{self.strategy}_{self.task.kind}_{self.task.image.replace('/', '-')}_d{percent}_s{self.seed}_{key[:12]}"


def init_ticket(job: InitTicketJob, device=None) -> Ticket:
    """Find ``job``'s mask at θ0 (on ``device``; default CUDA when available) and return its ticket."""
    task, dev = job.task, resolve_device(device)
    net = theta0(job.seed, **job.arch)
    check_task_fits(task, net)
    z = default_input(net, *task.image_size, job.seed).to(dev)
    masks, cost = find_masks(job.strategy, net, task.operator, task.observation.to(dev), z, density=job.density,
                             seed=job.seed, oes_steps=job.oes_steps, synflow_rounds=job.synflow_rounds)
    cost["device"] = str(dev)
    extra = dict(oes_steps=job.oes_steps) if job.strategy == "oes" else (
        dict(synflow_rounds=job.synflow_rounds) if job.strategy == "synflow" else {})
    ticket = Ticket.from_net(net, masks, round=None, seed=job.seed, task=task.kind, search_image=task.image,
                             search_on="observation", image_size=list(task.image_size), task_params=task.params,
                             strategy=job.strategy, density=float(job.density), cost=cost, **extra)
    ticket.meta["measured_density"] = 1 - mask_sparsity(ticket.masks)
    return ticket


def _load(stem: Path, job: InitTicketJob) -> Ticket:
    """The ticket at ``stem``, refused unless it was made by ``job`` (strategy, density, seed, task)."""
    ticket = Ticket.load(stem)
    m = ticket.meta
    if (m.get("strategy"), m.get("density"), m.get("seed"), m.get("search_image")) != (
            job.strategy, float(job.density), job.seed, job.task.image):
        raise TicketMismatchError(f"{stem} holds another job's ticket ({m.get('strategy')}, density {m.get('density')}, "
                                  f"seed {m.get('seed')}, {m.get('search_image')}); delete it to find this one again")
    return ticket


def init_tickets(jobs: Sequence[InitTicketJob], folder: str | os.PathLike, *, workers: int | None = None,
                 device=None, progress: bool = True) -> list[Ticket]:
    """The ticket of every job, in order: loaded from ``folder`` when it holds one made by the same
    job and code, else found (in ``workers`` processes on a CPU) and saved there."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    cache = RecordCache(folder, computed_by=__name__)
    stems = [folder / job.name(cache.key(job.describe())) for job in jobs]
    out: list[Ticket | None] = [_load(s, job) if ticket_files(s)[1].exists() else None for s, job in zip(stems, jobs)]
    todo = [i for i, t in enumerate(out) if t is None]
    dev = str(resolve_device(device))
    bar = tqdm(total=len(todo), desc="masks at initialization", disable=not progress or not todo)
    for j, ticket in Engine(dev, workers).map(init_ticket, [(jobs[i], dev) for i in todo]):
        i = todo[j]
        ticket.save(stems[i])
        out[i] = Ticket.load(stems[i])
        bar.update()
    bar.close()
    return out
