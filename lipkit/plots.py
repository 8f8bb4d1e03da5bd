"""Matplotlib figures used by the book. Each function returns the Figure it drew."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> (H, W, C) or (H, W) array for ``imshow``."""
    arr = x.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[2] == 1 else arr


def show_images(images: Sequence[torch.Tensor], titles: Sequence[str] | None = None,
                ncols: int | None = None, size: float = 2.6, suptitle: str | None = None):
    """Images side by side (C,H,W tensors; different sizes are fine), one title each."""
    n = len(images)
    ncols = ncols or n
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            img = to_numpy_image(images[k])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[k], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_psnr_curves(result, *, baseline_psnr: float | None = None, baseline_label: str = "observation",
                     title: str | None = None, ax=None):
    """PSNR against iteration for one :class:`lipkit.fit.FitResult`.

    Draws the raw output and, when the fit used one, its moving average; marks the best
    iteration, and draws ``baseline_psnr`` (e.g. of the noisy input) as a dashed line.
    """
    if result.psnr_history is None:
        raise ValueError("the fit had no reference image, so there is no PSNR history to plot")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
    else:
        fig = ax.figure
    it = np.arange(1, len(result.psnr_history) + 1)
    ax.plot(it, result.psnr_history, lw=0.8, alpha=0.6, label="output")
    if result.psnr_avg_history is not None:
        ax.plot(it, result.psnr_avg_history, lw=1.4, label="moving average of output")
    if result.best_iteration is not None:
        ax.axvline(result.best_iteration + 1, color="k", lw=0.8, ls=":")
        ax.plot([result.best_iteration + 1], [result.best_psnr], "k*", ms=9,
                label=f"best: {result.best_psnr:.2f} dB at it. {result.best_iteration + 1}")
    if baseline_psnr is not None:
        ax.axhline(baseline_psnr, color="gray", ls="--", lw=1, label=f"{baseline_label}: {baseline_psnr:.2f} dB")
    curves = [result.psnr_history] + ([result.psnr_avg_history] if result.psnr_avg_history is not None else [])
    finite = np.concatenate([c[np.isfinite(c)] for c in curves])
    if finite.size:
        # start below the noisy baseline and the bulk of the curves; the first iterations are off-scale
        lo = min(np.percentile(finite, 5), baseline_psnr if baseline_psnr is not None else np.inf) - 1
        ax.set_ylim(lo, np.max(finite) + 1.0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("PSNR vs clean image (dB)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    if own:
        fig.tight_layout()
    return fig
