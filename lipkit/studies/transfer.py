"""Whether tickets travel: a ticket evaluated on another image or another task.

A ticket (masks + rewind weights, :class:`lipkit.pruning.tickets.Ticket`) found on one image and task is
fitted, from its rewind point and with its masks, to another task's observation, exactly as IMP
evaluates a ticket on its own task. The skip net is fully convolutional, so any image size works
that the architecture accepts (a multiple of 2^levels, at least 2·2^levels).

Three variants of the same job give the baselines used throughout the book:

- ``"ticket"``: the ticket's masks;
- ``"random_like"``: random masks with exactly the ticket's per-layer counts (for a channel
  ticket: random whole channels, as many per layer as the ticket keeps);
- ``"dense"``: no masks, from the same rewind weights (the dense DIP).

With ``seed`` left at the ticket's seed, transferring a ticket to the task it was found on
reproduces that IMP round's record exactly. :func:`transfer_many` runs many jobs in worker
processes and keeps every result in a content-addressed cache folder, so chapters can share
evaluations and an interrupted run resumes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from lipkit.device import resolve_device
from lipkit.fitting.loop import fit
from lipkit.fitting.memory import check_fit_memory
from lipkit.parallel import Engine, run_cached
from lipkit.pruning.masks import random_like, sparsity_report
from lipkit.store.cache import RecordCache
from lipkit.summaries import level_curve
from lipkit.tasks import Task
from lipkit.pruning.tickets import Ticket

VARIANTS = ("ticket", "random_like", "dense")


@dataclass
class TransferJob:
    """One evaluation: ``ticket`` (as ``variant``) fitted to ``task`` with fit seed ``seed``.

    ``seed`` (None: the ticket's seed) is the fit seed: z, the input noise and the random-like
    masks come from its own streams (:mod:`lipkit.seeding`), never from the ticket's weights'
    or the task's observation's random numbers. ``label`` is free text kept in the record.
    """

    ticket: Ticket
    task: Task
    variant: str = "ticket"
    seed: int | None = None
    label: str = ""

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.seed is None:
            self.seed = int(self.ticket.meta.get("seed", 0))

    def key(self, cache: RecordCache) -> str:
        """The cache key of everything that determines the result: masks, rewind weights, task,
        variant, seed, architecture (and, through the cache, the code)."""
        # the dense variant does not read the masks: tickets from one θ0 share its dense evaluation
        masks = [] if self.variant == "dense" else list(self.ticket.masks.items())
        tensors = masks + list(self.ticket.rewind.items())
        return cache.key(dict(task=self.task.describe(), variant=self.variant, seed=self.seed,
                              arch=self.ticket.meta.get("arch")), tensors)


def _source(ticket: Ticket) -> dict:
    m = ticket.meta
    return {k: m.get(k) for k in ("task", "search_image", "round", "seed", "conv_sparsity", "search_on",
                                  "image_size", "task_params", "strategy", "density")}


def _masks_for(job: TransferJob) -> dict | None:
    if job.variant == "dense":
        return None
    if job.variant == "random_like":
        if job.ticket.structure == "channel":  # shuffled weights would not be channels (nor mask their BatchNorms)
            from lipkit.pruning.channels import parameter_masks, random_channels_of

            net = job.ticket.build_net()
            return parameter_masks(net, random_channels_of(net, job.ticket.masks, seed=job.seed))
        return random_like(job.ticket.masks, seed=job.seed, key=("transfer",))
    return job.ticket.masks


def check_jobs(jobs: Sequence[TransferJob], device, workers: int | None) -> None:
    """Fail early, before any fitting: a ticket that does not fit its target image, or fits that
    will not fit in memory (``workers`` of the largest image at once)."""
    for job in jobs:
        job.ticket.check_image(*job.task.image_size)
    if jobs:
        largest = max(jobs, key=lambda j: j.task.image_size[0] * j.task.image_size[1])
        check_fit_memory(largest.ticket.build_net(), *largest.task.image_size, device=resolve_device(device),
                         what=largest.task.image, fits_at_once=Engine(device, workers).workers_for(len(jobs)))


def transfer(ticket: Ticket, task: Task, *, variant: str = "ticket", seed: int | None = None,
             device: str | None = None, progress: bool = True, label: str = "") -> dict:
    """Fit ``ticket`` to ``task`` and return the record (PSNRs in dB, measured sparsity).

    Raises :class:`lipkit.pruning.tickets.TicketMismatchError` when the task's image does not fit the
    ticket's network (e.g. smaller than 2·2^levels px or not a multiple of 2^levels).

    Record keys: ``variant``, ``label``, ``source`` (task, image, round, seed, sparsity of the
    ticket's search; ``strategy`` and ``density`` for a mask found at initialization), ``target``
    (kind, image, params, size, metric), ``seed``, ``best_psnr``,
    ``es_psnr``, ``es_iteration`` (ES-WMV's pick, see :mod:`lipkit.fitting.early_stopping`),
    ``final_psnr``, ``best_iteration``, ``conv_sparsity``, ``conv_nonzero``,
    ``unpruned_params``, ``layer_density``, ``seconds``, ``psnr_curve`` (:meth:`FitResult.psnr_curve`).
    """
    job = TransferJob(ticket, task, variant, seed, label)
    check_jobs([job], device, 1)
    record, _ = _run_job(job, device, progress)
    return record


def _run_job(job: TransferJob, device, progress):
    task = job.task
    job.ticket.check_image(*task.image_size)
    net = job.ticket.build_net()  # checks the architecture
    net.load_state_dict(job.ticket.rewind)  # unmasked rewind weights: fit() applies the variant's masks
    masks = _masks_for(job)
    dev = resolve_device(device)
    result = fit(net, task.operator, task.observation, settings=task.settings, reference=task.clean, masks=masks,
                 metric=task.metric, seed=job.seed, device=dev, progress=progress,
                 desc=f"{job.variant} -> {task.kind} {task.image}")
    report = sparsity_report(net, masks)
    record = result.record(report, variant=job.variant, label=job.label, source=_source(job.ticket),
                           target=task.target(), seed=job.seed)
    return record, result.best_output


def transfer_many(jobs: Sequence[TransferJob], *, cache_dir: str | os.PathLike | None = None,
                  workers: int | None = None, device: str | None = None, progress: bool = True) -> list[dict]:
    """Run every job (skipping those already in ``cache_dir``); records in the order of ``jobs``.

    Each record is cached in ``cache_dir`` under its key (:class:`lipkit.store.cache.RecordCache`)
    with the best output as PNG (its path under ``image``). On a CPU the jobs run in ``workers``
    processes (default: one per core) with one thread each, which on small images is faster than
    one process with all cores.
    """
    check_jobs(jobs, device, workers)  # before the cache folder is made
    cache = RecordCache(cache_dir, computed_by=__name__) if cache_dir is not None else None
    dev = str(resolve_device(device))
    return run_cached(_run_job, [(job, dev, False) for job in jobs],
                      [job.key(cache) if cache is not None else None for job in jobs], cache, workers=workers,
                      device=dev, desc="transfer", progress=progress)


def jobs_over_rounds(run, target: Task, *, random_like_rounds: Sequence[int] | None = None) -> list[TransferJob]:
    """Every ticket of ``run`` (a :class:`lipkit.lottery.imp.ImpRun`; each seed, rounds 1 .. R) fitted to
    ``target``, each followed by its ``"random_like"`` baseline at ``random_like_rounds`` (None:
    every round; ``[run.rounds]``: the sparsest only, the comparison that matters at a third of the cost)."""
    rounds = range(1, run.rounds + 1)
    with_random = set(rounds if random_like_rounds is None else random_like_rounds)
    return [TransferJob(run.ticket(s, k), target, variant) for s in run.seeds for k in rounds
            for variant in (("ticket", "random_like") if k in with_random else ("ticket",))]


def by_variant(records: Sequence[dict]) -> dict[str, list[dict]]:
    """``records`` split by their ``variant`` (every one of :data:`VARIANTS`, in order)."""
    return {v: [r for r in records if r["variant"] == v] for v in VARIANTS}


def curve(records: Sequence[dict], key: str = "best_psnr") -> dict:
    """Per source round: mean and std over records of ``key`` and of the measured sparsity.

    The same layout as :meth:`lipkit.lottery.imp.ImpRun.curve` (:func:`lipkit.summaries.level_curve`), so
    both plot alike.
    """
    return level_curve(records, level_of=lambda r: r["source"]["round"], key=key)
