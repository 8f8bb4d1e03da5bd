"""What a fit hands out: the state a callback sees after each step, the result, snapshots."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from lipkit.fitting.early_stopping import ESWMV
from lipkit.fitting.settings import FitSettings


@dataclass
class FitState:
    """What a callback sees after each optimiser step. Tensors live on the fit's device."""

    iteration: int
    net: nn.Module
    output: torch.Tensor          # (1, C, H, W), raw output of this step (noisy input)
    output_avg: torch.Tensor      # EMA of the output (equals ``output`` without EMA)
    loss: torch.Tensor            # 0-dim
    psnr: torch.Tensor | None     # 0-dim PSNR of the tracked output vs the reference, if given


@dataclass
class FitResult:
    """Outcome of :func:`fit`. Images are (C, H, W) on the CPU, or (N, C, H, W) when the network
    produced N images at once (weight-sharing fits); histories are NumPy arrays."""

    output: torch.Tensor                 # tracked output at the last iteration (EMA if enabled)
    clean_output: torch.Tensor           # net(z) without input noise, after the last step
    best_output: torch.Tensor | None     # tracked output at the best-PSNR iteration
    loss_history: np.ndarray
    psnr_history: np.ndarray | None      # raw output vs reference, per iteration
    psnr_avg_history: np.ndarray | None  # EMA output vs reference, per iteration
    tracked: str                         # "avg" or "raw": which output best/final PSNR use
    best_psnr: float | None              # oracle: the best iteration, picked with the clean image
    best_iteration: int | None           # 0-based
    final_psnr: float | None             # the last iteration
    iterations: int
    settings: FitSettings
    seed: int
    device: str
    seconds: float
    backtracks: list[int] = field(default_factory=list)
    stopped_early: bool = False
    nonfinite_steps: int = 0             # steps whose output was non-finite and undone (backtracking)
    es_psnr: float | None = None         # at the iteration ES-WMV picks, without the clean image
    es_iteration: int | None = None      # 0-based
    es_stopped: bool | None = None       # whether ES-WMV's patience ran out before the end
    es_output: torch.Tensor | None = None  # tracked output at es_iteration
    variance_history: np.ndarray | None = None  # ES-WMV's windowed variance, NaN until the window fills

    def psnr_curve(self, points: int = 200) -> list[list[float]] | None:
        """The tracked PSNR against iteration, thinned for a record: ``[[iteration, dB], ...]`` at
        about ``points`` evenly spaced iterations, the best and ES-WMV's iterations and the last
        (0-based iterations, dB rounded to 0.01). None without a reference image."""
        track = self.psnr_avg_history if self.tracked == "avg" else self.psnr_history
        if track is None or len(track) == 0:
            return None
        stride = max(1, -(-len(track) // points))
        keep = set(range(0, len(track), stride)) | {len(track) - 1}
        keep |= {i for i in (self.best_iteration, self.es_iteration) if i is not None}
        return [[i, round(float(track[i]), 2)] for i in sorted(keep)]

    RESULT_FIELDS = ("best_psnr", "es_psnr", "final_psnr", "best_iteration", "es_iteration", "es_stopped",
                     "iterations", "seconds", "threads", "device", "psnr_curve")  # what :meth:`record` adds

    def record(self, masks_report: dict | None = None, **identity) -> dict:
        """The per-fit record every study stores (IMP levels, baselines, transfers, deep decoders,
        the race): the caller's ``identity`` fields, the three PSNRs (dB) and their 0-based
        iterations, ``es_stopped``, ``iterations``, ``seconds`` (the whole fit; for seeds fitted
        together, :mod:`lipkit.fitting.batched`, the batch's wall time over its seeds), ``threads`` (of
        the process that fitted), ``device`` and the thinned ``psnr_curve``; with a
        :func:`lipkit.pruning.masks.sparsity_report` of the masks, their counts and per-layer densities."""
        out = dict(identity, best_psnr=self.best_psnr, es_psnr=self.es_psnr, final_psnr=self.final_psnr,
                   best_iteration=self.best_iteration, es_iteration=self.es_iteration, es_stopped=self.es_stopped,
                   iterations=self.iterations, seconds=round(self.seconds, 3), threads=torch.get_num_threads(),
                   device=str(self.device), psnr_curve=self.psnr_curve())
        if masks_report is not None:
            from lipkit.pruning.masks import report_fields

            out.update(report_fields(masks_report))
        return out

    def summary(self) -> dict:
        """JSON-friendly numbers of the run."""
        return dict(best_psnr=self.best_psnr, best_iteration=self.best_iteration, es_psnr=self.es_psnr,
                    es_iteration=self.es_iteration, es_stopped=self.es_stopped,
                    final_psnr=self.final_psnr, iterations=self.iterations, tracked=self.tracked,
                    seed=self.seed, device=self.device, seconds=round(self.seconds, 3),
                    backtracks=len(self.backtracks), nonfinite_steps=self.nonfinite_steps,
                    settings=asdict(self.settings))


Callback = Callable[[FitState], "bool | None"]


class Snapshots:
    """Callback keeping CPU copies of the tracked output every ``every`` iterations (and the last).

    ``frames`` is a list of (iteration, image (C,H,W)) pairs, for the book's iteration browser.
    """

    def __init__(self, every: int, num_iter: int | None = None):
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = every
        self.num_iter = num_iter
        self.frames: list[tuple[int, torch.Tensor]] = []

    def __call__(self, state: FitState) -> None:
        i = state.iteration
        last = self.num_iter is not None and i == self.num_iter - 1
        if (i + 1) % self.every == 0 or last:
            self.frames.append((i, state.output_avg[0].detach().float().cpu().clone()))


def make_result(*, output, clean, best, loss_history, psnr_history, psnr_avg_history, done: int,
                settings: FitSettings, seed: int, device, seconds: float, backtracks=(),
                stopped_early: bool = False, early_stop: ESWMV | None = None, run: int = 0,
                nonfinite_steps: int = 0) -> FitResult:
    """A :class:`FitResult` from one fit's device tensors: images (1 or N, C, H, W), histories
    (num_iter,) of which the first ``done`` entries were filled. The tracked PSNR is the EMA's
    when there is one. ``early_stop`` is the fit's ES-WMV detector, ``run`` its run (seed) index."""

    def image(t):
        return (t[0] if t.shape[0] == 1 else t).cpu().contiguous()

    def arr(t):
        return None if t is None else t[:done].cpu().numpy().astype(np.float64)

    psnr_np, psnr_avg_np = arr(psnr_history), arr(psnr_avg_history)
    track_np = psnr_avg_np if psnr_avg_np is not None else psnr_np
    has_track = track_np is not None and bool(np.isfinite(track_np).any())
    best_iteration = int(np.nanargmax(track_np)) if has_track else None
    es = {}
    if early_stop is not None:
        it = early_stop.iterations[run]
        es = dict(es_iteration=it, es_stopped=early_stop.stopped_runs[run], es_output=image(early_stop.image(run)),
                  es_psnr=None if track_np is None else float(track_np[it]),
                  variance_history=early_stop.variance_history[:, run].cpu().numpy().astype(np.float64))
    return FitResult(
        output=image(output),
        clean_output=image(clean),
        best_output=None if best is None else image(best),
        loss_history=arr(loss_history),
        psnr_history=psnr_np,
        psnr_avg_history=psnr_avg_np,
        tracked="avg" if settings.exp_weight is not None else "raw",
        best_psnr=float(track_np[best_iteration]) if has_track else None,
        best_iteration=best_iteration,
        final_psnr=None if track_np is None else float(track_np[-1]),
        iterations=done,
        settings=settings,
        seed=seed,
        device=str(device),
        seconds=seconds,
        backtracks=list(backtracks),
        stopped_early=stopped_early,
        nonfinite_steps=nonfinite_steps,
        **es,
    )
