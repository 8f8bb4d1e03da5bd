"""What a fitting loop records at every step, for S fits side by side (S = 1 for :func:`lipkit.fitting.loop.fit`).

:class:`Tracker` keeps the loss of each fit, the moving average of its output (DIP's EMA), its
PSNR against the clean image, the best output so far (the oracle's pick), feeds the ES-WMV
detector, and finds the first non-finite loss. Everything stays on the device: nothing here syncs
with the host. The one fitting loop, :func:`lipkit.fitting.loop.fit_loop`, keeps one for its S fits.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from lipkit.fitting.early_stopping import ESWMV
from lipkit.fitting.records import FitResult, make_result
from lipkit.fitting.settings import FitSettings


def moving_average(average: torch.Tensor | None, output: torch.Tensor, weight: float | None) -> torch.Tensor:
    """DIP's exponential moving average of the output: ``weight``·average + (1-weight)·output.

    Without a weight (no EMA) it is the output itself; the first output starts the average.
    """
    if weight is None:
        return output
    if average is None:
        return output.clone()
    return average * weight + output * (1 - weight)


class Tracker:
    """Per-step records of ``runs`` fits of ``num_iter`` steps; outputs are shaped (S, N, C, H, W).

    ``reference`` (N, C, H, W) enables the PSNR histories and the best output; ``measure(output,
    reference)`` gives one fit's PSNR in dB. ``detector`` (or None) is fed every step's output and
    average. The tracked output is the average when there is an EMA, else the raw output.
    """

    def __init__(self, num_iter: int, runs: int, *, reference: torch.Tensor | None,
                 measure: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], exp_weight: float | None,
                 detector: ESWMV | None, device):
        self.reference, self.measure, self.exp_weight, self.detector = reference, measure, exp_weight, detector
        self.loss = torch.zeros(num_iter, runs, device=device)
        self.restored = torch.zeros(num_iter, runs, dtype=torch.bool, device=device)  # steps undone (backtracking)
        has_ref = reference is not None
        self.psnr = torch.zeros(num_iter, runs, device=device) if has_ref else None
        self.psnr_avg = torch.zeros(num_iter, runs, device=device) if has_ref and exp_weight is not None else None
        self.best_psnr = torch.full((runs,), -math.inf, device=device)
        self.best: torch.Tensor | None = None
        self.average: torch.Tensor | None = None
        self.nonfinite_steps = 0

    def record(self, i: int, losses: torch.Tensor, output: torch.Tensor) -> torch.Tensor | None:
        """Step ``i``: losses (S,) and outputs (S, ...), detached. Returns the tracked PSNR (S,) or None."""
        self.loss[i] = losses
        self.average = moving_average(self.average, output, self.exp_weight)
        if self.detector is not None:
            self.detector.update(i, output, self.average)
        if self.reference is None:
            return None
        runs = range(output.shape[0])
        self.psnr[i] = torch.stack([self.measure(output[s], self.reference) for s in runs])
        track = self.psnr[i]
        if self.psnr_avg is not None:
            self.psnr_avg[i] = torch.stack([self.measure(self.average[s], self.reference) for s in runs])
            track = self.psnr_avg[i]
        image = self.average if self.psnr_avg is not None else output
        better = (track > self.best_psnr).view(-1, *[1] * (image.dim() - 1))
        self.best = image.clone() if self.best is None else torch.where(better, image, self.best)
        self.best_psnr = torch.maximum(self.best_psnr, track)
        return track

    def skip(self, i: int, losses: torch.Tensor) -> None:
        """Step ``i`` was undone (a non-finite output, restored by backtracking): it enters neither
        the average nor the histories, which repeat the previous step."""
        self.loss[i] = losses
        self.restored[i] = True
        self.nonfinite_steps += 1
        for history in (self.psnr, self.psnr_avg):
            if history is not None:
                history[i] = history[i - 1] if i else float("nan")

    def first_divergence(self, i: int, window: int = 100) -> tuple[int, int, float] | None:
        """(iteration, run, loss) of the first non-finite loss that was not undone, if the last
        ``window`` steps up to ``i`` hold one; else None. One host sync."""
        recent = slice(max(0, i - window + 1), i + 1)
        if (torch.isfinite(self.loss[recent]) | self.restored[recent]).all():
            return None
        bad = torch.nonzero(~(torch.isfinite(self.loss[: i + 1]) | self.restored[: i + 1]))[0]
        return int(bad[0]), int(bad[1]), float(self.loss[bad[0], bad[1]])

    def result(self, run: int, *, clean: torch.Tensor, done: int, settings: FitSettings, seed: int, device,
               seconds: float, backtracks=(), stopped_early: bool = False,
               early_stop: ESWMV | None = None) -> FitResult:
        """Fit ``run``'s :class:`lipkit.fitting.records.FitResult` after ``done`` steps; ``clean`` is its
        output without input noise."""
        return make_result(output=self.average[run], clean=clean, best=None if self.best is None else self.best[run],
                           loss_history=self.loss[:, run],
                           psnr_history=None if self.psnr is None else self.psnr[:, run],
                           psnr_avg_history=None if self.psnr_avg is None else self.psnr_avg[:, run], done=done,
                           settings=settings, seed=seed, device=device, seconds=seconds, backtracks=backtracks,
                           stopped_early=stopped_early, nonfinite_steps=self.nonfinite_steps,
                           early_stop=None if early_stop is None or not early_stop.iterations else early_stop, run=run)
