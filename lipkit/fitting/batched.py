"""Several seeds fitted at once: S independent DIP fits, with the faster mechanism for the device.

Each seed keeps everything a fit of its own would have: its network weights, masks, BatchNorm
statistics, input z and input-noise stream. :func:`fit_seeds` returns the S results that S calls
of :func:`lipkit.fitting.loop.fit` would return, to float tolerance, in one of three modes (:data:`SEED_MODES`):

- ``"batched"`` (the default on a GPU): the S networks as one batched model
  (:class:`lipkit.fitting.seed_axis.StackedNets`: weights stacked along a seed axis, the network under
  ``torch.func.vmap``, every convolution grouped over the seeds), stepped by
  :func:`lipkit.fitting.loop.fit_loop`, the same loop that fits one network. This fills a GPU that one small fit leaves
  idle; :func:`lipkit.lottery.imp.imp` uses it for the seeds of each round on a GPU. Callbacks,
  backtracking and channels-last act on one network and are refused.
- ``"processes"`` (the default on a CPU): one worker process per core, one thread each
  (:class:`lipkit.parallel.Engine`). A small fit cannot keep two cores busy; two fits can.
- ``"sequential"``: :func:`lipkit.fitting.loop.fit` for one seed after the other, in this process.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from lipkit.device import resolve_device
from lipkit.fitting.loop import FitResult, collapses, fit, fit_loop
from lipkit.models import exact_constant_channels
from lipkit.operators.base import Operator
from lipkit.runtime import SpeedOptions, tf32_allowed
from lipkit.fitting.settings import FitSettings, resolve_settings

SEED_MODES = ("auto", "batched", "processes", "sequential")  # how fit_seeds runs its seeds


def default_mode(device=None) -> str:
    """``"batched"`` on a GPU, ``"processes"`` on a CPU."""
    return "processes" if resolve_device(device).type == "cpu" else "batched"


def fit_seeds(
    nets: Sequence[nn.Module],
    operator: Operator,
    observation: torch.Tensor,
    *,
    seeds: Sequence[int],
    masks: Sequence[dict[str, torch.Tensor] | None] | None = None,
    net_inputs: Sequence[torch.Tensor] | None = None,
    settings: FitSettings | str | None = None,
    reference: torch.Tensor | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    mode: str = "auto",
    workers: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    desc: str = "seeds",
    speed: SpeedOptions | None = None,
    **overrides,
) -> list[FitResult]:
    """Fit ``nets[s]`` with seed ``seeds[s]`` (and ``masks[s]``) for every s; results in that order.

    Arguments are those of :func:`lipkit.fitting.loop.fit`, one per seed where they are sequences. The
    networks are trained in place, as ``fit`` does. ``mode`` is one of :data:`SEED_MODES`;
    ``"auto"`` is :func:`default_mode`. ``workers`` is for ``"processes"`` (default: one per
    core). ``loss_fn`` and ``metric`` must be module-level functions for ``"processes"``.
    ``speed`` (:class:`lipkit.runtime.SpeedOptions`, or its fields as keywords) applies in every
    mode; the batched one has no channels-last.
    """
    speed, overrides = SpeedOptions.split(speed, overrides)
    nets = list(nets)
    seeds = [int(s) for s in seeds]
    if not nets:
        raise ValueError("give at least one network")
    if len(seeds) != len(nets):
        raise ValueError(f"got {len(nets)} networks but {len(seeds)} seeds; give one seed per network")
    if len({id(n) for n in nets}) != len(nets):
        raise ValueError("the networks must be distinct objects (each seed trains its own)")
    masks = [None] * len(nets) if masks is None else list(masks)
    if len(masks) != len(nets):
        raise ValueError(f"got {len(masks)} mask sets for {len(nets)} networks; give one (or None) per network")
    net_inputs = [None] * len(nets) if net_inputs is None else list(net_inputs)
    if len(net_inputs) != len(nets):
        raise ValueError(f"got {len(net_inputs)} inputs for {len(nets)} networks")
    if mode not in SEED_MODES:
        raise ValueError(f"mode must be one of {SEED_MODES}, got {mode!r}")
    settings = resolve_settings(settings, **overrides)
    if mode == "auto":
        mode = default_mode(device)
        if mode == "batched" and settings.backtrack:
            mode = "sequential"  # backtracking restores one seed's weights: not batched
    options = dict(settings=settings, reference=reference, loss_fn=loss_fn, metric=metric, device=device, speed=speed)

    if mode == "sequential":
        return [fit(net, operator, observation, seed=s, masks=m, net_input=z, progress=progress,
                    desc=f"{desc} (seed {s})", **options)
                for net, s, m, z in zip(nets, seeds, masks, net_inputs)]
    if mode == "processes":
        from lipkit.parallel import Engine

        jobs = [(net, operator, observation, dict(options, seed=s, masks=m, net_input=z))
                for net, s, m, z in zip(nets, seeds, masks, net_inputs)]
        results: list[FitResult | None] = [None] * len(nets)
        for i, (result, state) in Engine(device, workers).map(_fit_and_return_state, jobs):
            nets[i].load_state_dict(state)
            results[i] = result
        return results
    if speed.channels_last:
        raise ValueError("channels_last applies to one network at a time; the batched mode runs the seeds as "
                         "grouped convolutions in the default format (use mode='sequential' for channels_last)")
    with tf32_allowed(speed.allow_tf32), exact_constant_channels(nets[0], enabled=any(map(collapses, masks))):
        return fit_loop(nets, operator, observation, seeds=seeds, masks=masks, net_inputs=net_inputs,
                        progress=progress, desc=desc, stacked=True, **options)


def _fit_and_return_state(net, operator, observation, kwargs):
    """Worker job: fit one seed, return its result and trained weights (the caller's net is a copy)."""
    result = fit(net, operator, observation, progress=False, **kwargs)
    return result, {k: v.detach().cpu() for k, v in net.state_dict().items()}
