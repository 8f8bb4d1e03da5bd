"""Recovering images from measurements through a generator: the MOM tournament and least squares.

Both search the latent space of a fixed generator G for x̂ = G(ẑ) that explains y = A(x) + noise,
for a batch of images at once (each image has its own latents, partition and median, so a
batch of N is N independent problems solved together).

- :func:`erm`: plain least squares, min_z ‖A(G(z)) − y‖². Corrupted rows ruin it.
- :func:`mom_tournament`: the median-of-means tournament of Jalal et al. (2020),
  min_{z_f} max_{z_g} MOM_b(ℓ(z_f) − ℓ(z_g)), where ℓ(z) are the per-measurement squared
  residuals and MOM_b takes the median over blocks of ``block_size`` of the block means. Only the
  median block carries gradient, so a few wild rows cannot steer it.

The defaults are LIP's (a fresh random partition at every loss evaluation, Adam 1e-2 for both
players, 1,500 iterations, one start, last iterate). Jalal's code differs by a fixed partition,
restarts kept by the lowest tournament score, and z averaged over the last 200 iterations;
pass ``partition="fixed", restarts=2, average_last=200`` (Adam stands in for their YellowFin).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lipkit.device import resolve_device
from lipkit.seeding import generator as stream_generator

PARTITIONS = ("fresh", "fixed")


def per_pixel_mse(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, (N, C, H, W) × (N, C, H, W) -> (N,): the paper's CS metric."""
    if x.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs reference {tuple(reference.shape)}")
    return (x - reference).pow(2).flatten(1).mean(1)


def median_of_means(values: torch.Tensor, block_size: int,
                    permutation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Median over blocks of the block means, per row; gradient flows through the median block only.

    Args:
        values: (N, m), one row per image.
        block_size: b; the first ⌊m/b⌋·b entries (after permuting) form M = ⌊m/b⌋ blocks.
        permutation: (N, m) or (m,) column order before blocking; ``None`` keeps the order.

    Returns:
        (loss, block): the mean of the selected block, (N,), and that block's index in the
        permuted order, (N,). With M even the upper median (sorted position M//2) is taken,
        as in Jalal et al.'s code.

    Example:
        >>> import torch
        >>> v = torch.tensor([[1., 1., 5., 5., 3., 3., 100., 100.]])
        >>> loss, block = median_of_means(v, 2)
        >>> float(loss), int(block)
        (5.0, 1)
    """
    if values.dim() != 2:
        raise ValueError(f"values must be shaped (N, m), got {tuple(values.shape)}")
    n, m = values.shape
    blocks = m // block_size if block_size >= 1 else 0
    if blocks < 1:
        raise ValueError(f"block_size={block_size} must be in [1, m={m}]")
    if permutation is not None:
        values = values.gather(1, permutation.expand(n, m) if permutation.dim() == 1 else permutation)
    means = values[:, : blocks * block_size].reshape(n, blocks, block_size).mean(2)
    block = means.detach().argsort(dim=1)[:, blocks // 2]
    return means.gather(1, block[:, None])[:, 0], block


@dataclass
class Recovery:
    """What :func:`mom_tournament` or :func:`erm` found for a batch of N images (tensors on the CPU)."""

    z: torch.Tensor                    # (N, *latent_shape), the latent of each estimate
    images: torch.Tensor               # (N, C, H, W), G(z)
    loss_history: np.ndarray           # (iters,), the objective summed over the batch, per iteration
    mse: torch.Tensor | None           # (N,), per-pixel MSE against the reference, if one was given
    mse_history: np.ndarray | None     # (iters, N), per-pixel MSE of the iterate z_f
    restart: torch.Tensor              # (N,), which restart each estimate came from
    seconds: float


def _latent_shape(generator: nn.Module, latent_shape) -> tuple[int, ...]:
    shape = latent_shape if latent_shape is not None else getattr(generator, "latent_shape", None)
    if shape is None:
        raise TypeError(f"{type(generator).__name__} has no latent_shape attribute; pass latent_shape=(...)")
    return tuple(int(s) for s in shape)


class _Frozen:
    """Generator in eval mode with frozen weights for the duration of a search; restored after."""

    def __init__(self, net: nn.Module):
        self.net = net

    def __enter__(self):
        self.training = self.net.training
        self.flags = [p.requires_grad for p in self.net.parameters()]
        self.net.eval().requires_grad_(False)
        return self.net

    def __exit__(self, *exc):
        self.net.train(self.training)
        for p, flag in zip(self.net.parameters(), self.flags):
            p.requires_grad_(flag)
        return False


def _prepare(generator, operator, y, reference, device):
    dev = resolve_device(device)
    generator.to(dev)
    operator.to(dev)
    if y.dim() != 2 or y.shape[1] != operator.m:
        raise ValueError(f"y must be shaped (N, m={operator.m}), got {tuple(y.shape)}")
    y = y.to(dev)
    if reference is not None:
        reference = reference.to(dev)
        if reference.shape[0] != y.shape[0]:
            raise ValueError(f"{reference.shape[0]} reference images for {y.shape[0]} observations")
    return dev, y, reference


def _check_common(iters: int, lr: float, restarts: int) -> None:
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")


def _keep_best(best, score, candidate: dict, restart: int):
    """Per image, keep the candidate of the restart whose score is lower (``best`` is None at first)."""
    if best is None:
        return score, candidate, torch.zeros_like(score, dtype=torch.long)
    best_score, best_cand, best_restart = best
    better = score < best_score
    merged = {k: torch.where(better.view(-1, *[1] * (v.dim() - 1)), candidate[k], v) for k, v in best_cand.items()}
    return torch.where(better, score, best_score), merged, torch.where(better, restart, best_restart)


def mom_tournament(generator: nn.Module, operator, y: torch.Tensor, *, block_size: int = 20,
                   iters: int = 1500, lr: float = 1e-2, partition: str = "fresh", restarts: int = 1,
                   average_last: int = 0, reference: torch.Tensor | None = None, latent_shape=None,
                   seed: int = 0, device=None, progress: bool = False, desc: str = "MOM") -> Recovery:
    """The MOM tournament: descent on z_f, ascent on z_g, for every image of the batch.

    Args:
        generator: G, maps (N, *latent_shape) to (N, C, H, W); kept frozen and in eval mode.
        operator: a :class:`lipkit.operators.CompressiveSensing` (``forward`` gives A·vec(x), (N, m)).
        y: observations, (N, m).
        block_size: b, measurements per block (paper: 20 of m = 1000, so 50 blocks).
        iters: tournament iterations, each one Adam step on z_f then one on z_g.
        lr: Adam learning rate of both players.
        partition: "fresh" (LIP: a new random partition at every loss evaluation) or "fixed"
            (Jalal: one random partition per image for the whole run).
        restarts: independent starts; per image the one with the lowest final tournament score
            (the MOM loss of the estimate against the last z_g) is kept.
        average_last: if > 0, the estimate is G(mean of z_f over the last ``average_last``
            iterations) (Jalal: 200); 0 takes the last iterate (LIP).
        reference: clean images (N, C, H, W) to track the per-pixel MSE of z_f at every iteration.
        latent_shape: defaults to ``generator.latent_shape``.
        seed: the starting latents and the partitions come from its ``"mom_latents"`` and
            ``"mom_partition"`` streams, independent of the operator's and observation's.
    """
    _check_common(iters, lr, restarts)
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {partition!r}")
    if not 0 <= average_last <= iters:
        raise ValueError(f"average_last must be in [0, iters={iters}], got {average_last}")
    if not 1 <= block_size <= operator.m:
        raise ValueError(f"block_size must be in [1, m={operator.m}], got {block_size}")
    latent = _latent_shape(generator, latent_shape)
    dev, y, reference = _prepare(generator, operator, y, reference, device)
    n, m = y.shape
    g_cpu, g_dev = stream_generator(seed, "mom_latents"), stream_generator(seed, "mom_partition", device=dev)

    def order() -> torch.Tensor:
        return torch.rand((n, m), generator=g_dev, device=dev).argsort(1)

    fixed = order() if partition == "fixed" else None

    def mom(x_f, x_g) -> torch.Tensor:
        diff = (operator(x_f) - y).pow(2) - (operator(x_g) - y).pow(2)
        return median_of_means(diff, block_size, fixed if fixed is not None else order())[0]

    t0 = time.perf_counter()
    losses = torch.zeros(restarts * iters, device=dev)
    mse_hist = torch.zeros(restarts * iters, n, device=dev) if reference is not None else None
    best = None
    bar = tqdm(total=restarts * iters, desc=desc, disable=not progress, leave=False)
    with _Frozen(generator) as G:
        for r in range(restarts):
            z_f = torch.randn((n, *latent), generator=g_cpu).to(dev).requires_grad_(True)
            z_g = torch.randn((n, *latent), generator=g_cpu).to(dev).requires_grad_(True)
            opt_f, opt_g = torch.optim.Adam([z_f], lr=lr), torch.optim.Adam([z_g], lr=lr)
            z_sum = torch.zeros_like(z_f)
            for it in range(iters):
                # f-step: descend on z_f; the other player's image needs no graph
                x_f = G(z_f)
                with torch.no_grad():
                    x_g = G(z_g)
                loss = mom(x_f, x_g)
                opt_f.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt_f.step()
                k = r * iters + it
                losses[k] = loss.detach().sum()
                if mse_hist is not None:
                    mse_hist[k] = per_pixel_mse(x_f.detach(), reference)
                # g-step: ascend on z_g, against the updated z_f
                with torch.no_grad():
                    x_f = G(z_f)
                loss_g = -mom(x_f, G(z_g))
                opt_g.zero_grad(set_to_none=True)
                loss_g.sum().backward()
                opt_g.step()
                if it >= iters - average_last:
                    z_sum += z_f.detach()
                bar.update()
            with torch.no_grad():
                z_hat = z_sum / average_last if average_last else z_f.detach()
                x_hat, x_g = G(z_hat), G(z_g)
                score = mom(x_hat, x_g)
            best = _keep_best(best, score, {"z": z_hat, "x": x_hat}, r)
    bar.close()
    _, cand, restart = best
    return _result(cand, losses, mse_hist, reference, restart, t0)


def erm(generator: nn.Module, operator, y: torch.Tensor, *, iters: int = 1500, lr: float = 1e-2,
        restarts: int = 1, reference: torch.Tensor | None = None, latent_shape=None, seed: int = 0,
        device=None, progress: bool = False, desc: str = "ERM") -> Recovery:
    """Least squares in latent space, min_z ‖A(G(z)) − y‖² per image, with Adam (CSGM, Bora et al. 2017).

    Arguments as :func:`mom_tournament`; with restarts, the lowest final residual is kept.
    """
    _check_common(iters, lr, restarts)
    latent = _latent_shape(generator, latent_shape)
    dev, y, reference = _prepare(generator, operator, y, reference, device)
    n = y.shape[0]
    g_cpu = stream_generator(seed, "mom_latents")
    t0 = time.perf_counter()
    losses = torch.zeros(restarts * iters, device=dev)
    mse_hist = torch.zeros(restarts * iters, n, device=dev) if reference is not None else None
    best = None
    bar = tqdm(total=restarts * iters, desc=desc, disable=not progress, leave=False)
    with _Frozen(generator) as G:
        for r in range(restarts):
            z = torch.randn((n, *latent), generator=g_cpu).to(dev).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            for it in range(iters):
                x = G(z)
                loss = (operator(x) - y).pow(2).sum(1)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                losses[r * iters + it] = loss.detach().sum()
                if mse_hist is not None:
                    mse_hist[r * iters + it] = per_pixel_mse(x.detach(), reference)
                bar.update()
            with torch.no_grad():
                z_hat = z.detach()
                x_hat = G(z_hat)
                score = (operator(x_hat) - y).pow(2).sum(1)
            best = _keep_best(best, score, {"z": z_hat, "x": x_hat}, r)
    bar.close()
    _, cand, restart = best
    return _result(cand, losses, mse_hist, reference, restart, t0)


def _result(cand, losses, mse_hist, reference, restart, t0) -> Recovery:
    x = cand["x"].detach()
    mse = per_pixel_mse(x, reference).cpu() if reference is not None else None
    return Recovery(z=cand["z"].detach().cpu(), images=x.cpu(), loss_history=losses.cpu().numpy(),
                    mse=mse, mse_history=mse_hist.cpu().numpy() if mse_hist is not None else None,
                    restart=restart.cpu(), seconds=time.perf_counter() - t0)

