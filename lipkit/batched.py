"""Several seeds fitted at once: S independent DIP fits, with the faster mechanism for the device.

Each seed keeps everything a fit of its own would have: its network weights, masks, BatchNorm
statistics, input z and input-noise stream. :func:`fit_seeds` returns the S results that S calls
of :func:`lipkit.fit.fit` would return, to float tolerance, by one of three methods:

- ``"batched"`` (the default on a GPU): the S networks become one batched model. Their weights
  are stacked along a new seed axis and the network runs under ``torch.func.vmap``, which turns
  every convolution into a grouped convolution over the S seeds. One step is one forward and one
  backward of the batched model, and one Adam step over the stacked weights (Adam works
  elementwise, so the seeds stay independent). This fills a GPU that one small fit leaves idle.
  :func:`lipkit.imp.imp` uses it for the seeds of each round on a GPU.
- ``"processes"`` (the default on a CPU): one worker process per core, one thread each
  (:func:`lipkit.parallel.run_jobs`). A small fit cannot keep two cores busy; two fits can.
- ``"sequential"``: :func:`lipkit.fit.fit` for one seed after the other, in this process.

The batched method records every step with the same :class:`lipkit.tracking.Tracker` as ``fit``
(loss, PSNR, best output and ES-WMV for each seed), but takes no
callbacks and does no backtracking (both are per seed), nor channels-last (its convolutions are
grouped); ask for ``"sequential"`` or ``"processes"`` for those.
"""

from __future__ import annotations

import copy
import time
from typing import Callable, Sequence

import torch
from torch import nn

from lipkit.device import resolve_device
from lipkit.early_stopping import ESWMV
from lipkit.fit import (FitDivergedError, FitResult, check_finite, collapses, default_input, fit,
                        step_noise_generator)
from lipkit.models import exact_constant_channels
from lipkit.metrics import psnr_tensor
from lipkit.operators.base import Operator, image_size
from lipkit.pruning import check_masks
from lipkit.runtime import SpeedOptions, keep_freed_memory, make_adam, tf32_allowed
from lipkit.settings import FitSettings, resolve_settings
from lipkit.tracking import Tracker

SEED_MODES = ("auto", "batched", "processes", "sequential")  # how fit_seeds runs its seeds


def default_method(device=None) -> str:
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
    method: str = "auto",
    workers: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    desc: str = "seeds",
    speed: SpeedOptions | None = None,
    **overrides,
) -> list[FitResult]:
    """Fit ``nets[s]`` with seed ``seeds[s]`` (and ``masks[s]``) for every s; results in that order.

    Arguments are those of :func:`lipkit.fit.fit`, one per seed where they are sequences. The
    networks are trained in place, as ``fit`` does. ``method`` is one of :data:`SEED_MODES`;
    ``"auto"`` is :func:`default_method`. ``workers`` is for ``"processes"`` (default: one per
    core). ``loss_fn`` and ``metric`` must be module-level functions for ``"processes"``.
    ``speed`` (:class:`lipkit.runtime.SpeedOptions`, or its fields as keywords) applies to every
    method; the batched one has no channels-last and no fused Adam.
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
    if method not in SEED_MODES:
        raise ValueError(f"method must be one of {SEED_MODES}, got {method!r}")
    settings = resolve_settings(settings, **overrides)
    if method == "auto":
        method = default_method(device)
        if method == "batched" and settings.backtrack:
            method = "sequential"  # backtracking restores one seed's weights: not batched
    options = dict(settings=settings, reference=reference, loss_fn=loss_fn, metric=metric, device=device, speed=speed)

    if method == "sequential":
        return [fit(net, operator, observation, seed=s, masks=m, net_input=z, progress=progress,
                    desc=f"{desc} (seed {s})", **options)
                for net, s, m, z in zip(nets, seeds, masks, net_inputs)]
    if method == "processes":
        from lipkit.parallel import run_jobs

        jobs = [(net, operator, observation, dict(options, seed=s, masks=m, net_input=z))
                for net, s, m, z in zip(nets, seeds, masks, net_inputs)]
        results: list[FitResult | None] = [None] * len(nets)
        for i, (result, state) in run_jobs(_fit_and_return_state, jobs, workers=workers, device=device):
            nets[i].load_state_dict(state)
            results[i] = result
        return results
    if speed.channels_last:
        raise ValueError("channels_last applies to one network at a time; the batched method runs the seeds as "
                         "grouped convolutions in the default format (use method='sequential' for channels_last)")
    if settings.backtrack:
        raise ValueError("the batched method does not backtrack (it is per seed); use method='sequential' "
                         "or 'processes'")
    with tf32_allowed(speed.allow_tf32), exact_constant_channels(nets[0], enabled=any(map(collapses, masks))):
        return _fit_batched(nets, operator, observation, seeds=seeds, masks=masks, net_inputs=net_inputs,
                            progress=progress, desc=desc, **options)


def _fit_and_return_state(net, operator, observation, kwargs):
    """Worker job: fit one seed, return its result and trained weights (the caller's net is a copy)."""
    result = fit(net, operator, observation, progress=False, **kwargs)
    return result, {k: v.detach().cpu() for k, v in net.state_dict().items()}


def _fit_batched(nets, operator, observation, *, seeds, masks, net_inputs, settings: FitSettings, reference,
                 loss_fn, metric, device, progress, desc, speed: SpeedOptions) -> list[FitResult]:
    from torch.func import functional_call, stack_module_state, vmap
    from tqdm.auto import tqdm

    speed.check_weights(nets[0])
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()
    n_seeds = len(nets)
    y = (observation if observation.dim() == 4 else observation[None]).to(dev)
    height, width = image_size(operator, y)
    ref = None
    if reference is not None:
        ref = (reference if reference.dim() == 4 else reference[None]).to(dev)
        if tuple(ref.shape[-2:]) != (height, width):
            raise ValueError(f"reference is {tuple(ref.shape[-2:])} but the operator's image size is {(height, width)}")
    check_finite(y, ref)
    operator.to(dev)
    shapes = [[(k, tuple(v.shape)) for k, v in net.state_dict().items()] for net in nets]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ValueError("the batched method needs networks of one architecture (same parameter names and shapes)")

    # z_s: the seed's input, drawn on the CPU exactly as fit() draws it
    zs = []
    for net, s, z in zip(nets, seeds, net_inputs):
        zs.append((default_input(net, height, width, s) if z is None else z).to(dev))
    z = torch.stack(zs)  # (S, 1, C, H, W)
    gens = [step_noise_generator(s, dev) for s in seeds]

    for net in nets:
        net.to(dev)
        net.train()
    params, buffers = stack_module_state(nets)  # name -> (S, ...) leaves; BatchNorm statistics stacked too

    # masks: name -> (S, ...); a seed without a mask for that tensor gets ones
    for net, m in zip(nets, masks):
        if m:
            check_masks(net, m, dev)
    names = sorted({name for m in masks if m for name in m})
    stacked_masks = {name: torch.stack([(m[name] if m and name in m else torch.ones(params[name].shape[1:]))
                                        .to(device=dev, dtype=params[name].dtype) for m in masks])
                     for name in names}
    masked = [params[name] for name in names]
    mask_values = [stacked_masks[name] for name in names]

    def hold_masks() -> None:
        if masked:
            with torch.no_grad():
                torch._foreach_mul_(masked, mask_values)

    hold_masks()
    optimizer = make_adam(list(params.values()), settings.lr)

    skeleton = copy.deepcopy(nets[0]).to("meta")  # the architecture; weights come from params/buffers

    def one_net(p, b, x):
        return functional_call(skeleton, (p, b), (x,))

    batched = vmap(one_net, in_dims=(0, 0, 0))
    if speed.compile:
        batched = torch.compile(batched)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=speed.bf16)
    objective = loss_fn or operator.loss
    measure = metric or psnr_tensor

    n = settings.num_iter
    detector = ESWMV(settings.es_window, settings.es_patience) if settings.es_window else None  # per seed
    tracker = Tracker(n, n_seeds, reference=ref, measure=measure, exp_weight=settings.exp_weight, detector=detector,
                      device=dev)

    t0 = time.perf_counter()
    done = 0
    for i in tqdm(range(n), desc=desc, disable=not progress, mininterval=0.5):
        optimizer.zero_grad(set_to_none=True)
        if settings.reg_noise_std > 0:
            noise = torch.stack([torch.randn(zs[0].shape, generator=g, device=dev, dtype=z.dtype) for g in gens])
            inp = z + settings.reg_noise_std * noise
        else:
            inp = z
        with autocast:
            out = batched(params, buffers, inp)
        out = out.float() if speed.bf16 else out  # (S, 1, C, H, W); bf16 back to FP32, other dtypes kept
        losses = torch.stack([objective(out[s], y) for s in range(n_seeds)])
        losses.sum().backward()  # seed s's weights see only seed s's loss
        optimizer.step()
        hold_masks()

        with torch.no_grad():
            tracker.record(i, losses.detach(), out.detach())
        done = i + 1
        if (i + 1) % 100 == 0 or i == n - 1:  # one host sync every 100 steps, as in fit()
            bad = tracker.first_divergence(i)
            if bad is not None:
                raise FitDivergedError(
                    f"seed {seeds[bad[1]]}: the loss became {bad[2]} at iteration {bad[0]}; lower lr "
                    f"(now {settings.lr}) or fit that seed alone with backtracking"
                )

    with torch.no_grad(), autocast:
        clean = batched(params, buffers, z)
        clean = clean.float() if speed.bf16 else clean
    seconds = time.perf_counter() - t0

    # trained weights and statistics back into the caller's networks, as fit() leaves them
    with torch.no_grad():
        for s, net in enumerate(nets):
            for name, t in net.named_parameters():
                t.copy_(params[name][s])
            for name, t in net.named_buffers():
                t.copy_(buffers[name][s])

    return [tracker.result(s, clean=clean[s], done=done, settings=settings, seed=seeds[s], device=dev,
                           seconds=seconds / n_seeds, early_stop=detector)
            for s in range(n_seeds)]
