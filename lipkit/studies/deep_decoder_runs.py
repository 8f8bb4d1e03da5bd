"""Deep decoders fitted to the book's tasks, for the comparison at equal parameter counts.

The deep decoder of Heckel & Hand is fitted by the same :func:`lipkit.fitting.loop.fit` loop and the same
operators as the DIP tickets (denoising, the lanczos2 super-resolution operator, the inpainting
mask), with Heckel & Hand's settings: Adam 0.01, no input noise, a fixed random input at
1/2^L of the image size, and best-PSNR tracking (``PRESETS["deep_decoder"]``). Only the
iteration count is taken from the task, so both priors get the same budget.

Records are cached as JSON by content (task, width, depth, seed, settings and the code), like
:func:`lipkit.studies.transfer.transfer_many`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from typing import Sequence

from lipkit.device import resolve_device
from lipkit.fitting.loop import fit
from lipkit.models import count_parameters, deep_decoder, theta0
from lipkit.parallel import run_cached
from lipkit.fitting.settings import PRESETS, FitSettings
from lipkit.store.cache import RecordCache
from lipkit.tasks import Task


def settings_for(task: Task) -> FitSettings:
    """Heckel & Hand's settings with the task's iteration count."""
    return replace(PRESETS["deep_decoder"], num_iter=task.settings.num_iter)


def fit_deep_decoder(task: Task, k: int, *, layers: int = 5, seed: int = 0, settings: FitSettings | None = None,
                     device=None, progress: bool = False) -> dict:
    """Fit a ``[k]*layers`` deep decoder (initialised from ``seed``) to ``task``; returns its record.

    Record keys: ``k``, ``layers``, ``parameters``, ``seed``, ``target`` (kind, image, size),
    ``best_psnr``, ``es_psnr`` (at ES-WMV's pick), ``final_psnr`` (dB, the task's metric),
    ``best_iteration``, ``es_iteration``, ``iterations``, ``seconds``, ``psnr_curve``.
    """
    record, _ = _fit(task, k, layers=layers, seed=seed, settings=settings, device=device, progress=progress)
    return record


def _fit(task: Task, k: int, *, layers: int, seed: int, settings: FitSettings | None, device, progress: bool):
    settings = settings or settings_for(task)
    out_channels = task.clean.shape[0]
    net = theta0(seed, deep_decoder, k=k, layers=layers, out_channels=out_channels)
    result = fit(net, task.operator, task.observation, settings=settings, reference=task.clean, metric=task.metric,
                 seed=seed, device=resolve_device(device), progress=progress, desc=f"deep decoder k={k}")
    return result.record(k=k, layers=layers, parameters=count_parameters(net), seed=seed,
                         target=task.target()), result.best_output


def deep_decoder_runs(task: Task, widths: Sequence[int], *, layers: int = 5, seeds: Sequence[int] = (0,),
                      cache_dir: str | os.PathLike | None = None, workers: int | None = None, device=None,
                      progress: bool = True) -> list[dict]:
    """Fit a deep decoder of every width in ``widths`` for every seed; records in that order (width-major).

    With ``cache_dir``, each record is kept under its key (:class:`lipkit.store.cache.RecordCache`,
    file ``dd_<key>.json``) with its best output as PNG (path under ``image``), and found there on
    the next call with the same task, width, depth, seed, settings and code.
    """
    settings = settings_for(task)
    cache = RecordCache(cache_dir, prefix="dd_", computed_by=__name__) if cache_dir is not None else None
    combos = [(int(k), int(s)) for k in widths for s in seeds]
    keys = [cache.key(dict(task=task.describe(), k=k, layers=layers, seed=s, settings=asdict(settings)))
            if cache is not None else None for k, s in combos]
    dev = str(resolve_device(device))
    jobs = [(task, k, dict(layers=layers, seed=s, settings=settings, device=dev)) for k, s in combos]
    return run_cached(_fit_job, jobs, keys, cache, workers=workers, device=dev, desc="deep decoders",
                      progress=progress)


def _fit_job(task: Task, k: int, kwargs: dict):
    return _fit(task, k, progress=False, **kwargs)
