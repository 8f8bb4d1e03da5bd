"""Early stopping without the clean image: ES-WMV (Wang, Li, Zhuang, Chen, Liang, Sun, TMLR 2023).

While a DIP fits the structure of an image its output settles; once it starts fitting the noise
the output moves again. ES-WMV watches the *windowed moving variance* of the output,

    VAR(t) = 1/W · Σ_{w=t-W+1..t} ‖x_w − x̄_t‖² / N,   x̄_t the mean of the window's W outputs,

picks the iteration where VAR was lowest so far, and calls the fit done once VAR has not reached
a new low for ``patience`` iterations. The official code uses W = 100, patience = 1000, the raw
output of every step (the one computed from the noise-perturbed input) and reports the image at
the lowest-variance iteration; lipkit does the same and reports the *tracked* output there (the
exponential average for denoising, like the best and final PSNRs).

:class:`ESWMV` is a callback of :func:`lipkit.fitting.loop.fit`; ``fit`` runs one on every fit (settings
``es_window``, ``es_patience``) so that every record carries the PSNR a user without the clean
image would get. Its state lives on the fit's device and needs no host sync per step.

Example (a synthetic run whose output is steadiest at iteration 300):
    >>> import torch
    >>> es = ESWMV(window=20, patience=100)
    >>> g = torch.Generator().manual_seed(0)
    >>> for t in range(600):
    ...     jitter = 0.01 + 0.001 * abs(t - 300)
    ...     es.update(t, 0.5 + jitter * torch.randn(1, 3, 8, 8, generator=g))
    >>> es.stopped, 300 <= es.iteration <= 320
    (True, True)
"""

from __future__ import annotations

import torch


class ESWMV:
    """The ES-WMV detector, for B runs at once (B = 1 for :func:`lipkit.fitting.loop.fit`, S for seeds).

    ``update(iteration, output, tracked)`` takes the step's raw output and the image to keep
    (``tracked``, default the output), both shaped (B, ...). After the fit, per run:
    ``iteration`` / ``iterations`` (0-based, the lowest-variance iteration, frozen when patience
    ran out; the last iteration when the window never filled), ``stopped`` / ``stopped_runs``
    (whether patience ran out), ``image(b)`` and ``variance_history`` ((num steps, B), NaN until
    the window is full). Called as a fit callback it returns True once patience ran out if
    ``stop=True`` (one host sync per step), so the fit ends there.
    """

    def __init__(self, window: int = 100, patience: int = 1000, *, stop: bool = False):
        if window < 2:
            raise ValueError(f"window must be at least 2 iterations, got {window}")
        if patience < 1:
            raise ValueError(f"patience must be at least 1 iteration, got {patience}")
        self.window, self.patience, self.stop = int(window), int(patience), bool(stop)
        self._steps = 0
        self._last = -1
        self._history: list[torch.Tensor] = []

    # --- the detector --------------------------------------------------------------------------
    def _start(self, output: torch.Tensor, tracked: torch.Tensor) -> None:
        batch, dev = output.shape[0], output.device
        self._ring = torch.zeros((self.window, batch, output[0].numel()), device=dev, dtype=torch.float32)
        # running sums in float64: VAR is a small difference of two large ones
        self._sum = torch.zeros((batch, output[0].numel()), device=dev, dtype=torch.float64)
        self._sum_sq = torch.zeros_like(self._sum)
        self._best_var = torch.full((batch,), float("inf"), device=dev, dtype=torch.float64)
        self._best_it = torch.full((batch,), -1, device=dev, dtype=torch.long)
        self._stopped = torch.zeros(batch, device=dev, dtype=torch.bool)
        self._image = tracked.detach().clone()

    def update(self, iteration: int, output: torch.Tensor, tracked: torch.Tensor | None = None) -> None:
        """Add step ``iteration``'s raw ``output`` (B, ...) and the image to keep, ``tracked``."""
        tracked = output if tracked is None else tracked
        if self._steps == 0:
            self._start(output, tracked)
        with torch.no_grad():
            x = output.detach().reshape(output.shape[0], -1).float()
            slot = self._steps % self.window
            if self._steps >= self.window:
                old = self._ring[slot].double()
                self._sum -= old
                self._sum_sq -= old * old
            self._ring[slot] = x
            xd = x.double()
            self._sum += xd
            self._sum_sq += xd * xd
            self._steps += 1
            self._last, self._last_image = iteration, tracked.detach()
            if self._steps < self.window:
                self._history.append(torch.full((x.shape[0],), float("nan"), device=x.device))
                return
            mean = self._sum / self.window
            var = (self._sum_sq / self.window - mean * mean).mean(1)
            self._history.append(var.float())
            better = (var < self._best_var) & ~self._stopped
            self._best_var = torch.where(better, var, self._best_var)
            self._best_it = torch.where(better, torch.full_like(self._best_it, iteration), self._best_it)
            keep = better.view(-1, *([1] * (tracked.dim() - 1)))
            self._image = torch.where(keep, tracked.detach(), self._image)
            self._stopped |= (iteration - self._best_it) >= self.patience

    def __call__(self, state) -> bool:
        """Fit callback: watch ``state.output``, keep ``state.output_avg``."""
        self.update(state.iteration, state.output[None], state.output_avg[None])
        return self.stop and bool(self._stopped.all())

    # --- results -------------------------------------------------------------------------------
    @property
    def iterations(self) -> list[int]:
        """Per run: the picked iteration (the last step when the window never filled)."""
        if self._steps == 0:
            return []
        return [self._last if int(b) < 0 else int(b) for b in self._best_it.cpu()]

    @property
    def stopped_runs(self) -> list[bool]:
        """Per run: whether the variance made no new low for ``patience`` iterations."""
        return [] if self._steps == 0 else [bool(s) for s in self._stopped.cpu()]

    @property
    def iteration(self) -> int:
        """The picked iteration of the only run."""
        (it,) = self.iterations
        return it

    @property
    def stopped(self) -> bool:
        (s,) = self.stopped_runs
        return s

    def image(self, run: int = 0) -> torch.Tensor:
        """The tracked image at run ``run``'s picked iteration (the last one when none was picked)."""
        return self._last_image[run] if int(self._best_it[run]) < 0 else self._image[run]

    @property
    def variance_history(self) -> torch.Tensor:
        """(steps, B) windowed variance per step, NaN before the window is full; on the device."""
        return torch.stack(self._history) if self._history else torch.zeros(0)
