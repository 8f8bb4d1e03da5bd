"""The one fitting loop: every prior (dense DIP, tickets, deep decoder) is fitted here.

``fit(net, operator, y)`` fits one network; :func:`fit_loop` is its loop, written over a leading
seed axis so that the batched seeds of :mod:`lipkit.fitting.batched` run through it too
(:mod:`lipkit.fitting.seed_axis`). It minimises ``operator.loss(net(z + σ·n), y)`` with Adam, as DIP does:
fresh input noise n each step (``reg_noise_std``), an exponential moving average of the output
(``exp_weight``), optional backtracking, and optional per-parameter masks held at zero. Methods
differ only in the loss (``loss_fn``), the network and the settings.

Given a clean ``reference``, PSNR is tracked every iteration on the device (no host sync). Every
fit reports three PSNRs, one per stopping rule: the best over the iterations (the papers' oracle,
which needs the clean image to pick the iteration), the one at the iteration that ES-WMV picks
without the clean image (:mod:`lipkit.fitting.early_stopping`), and the final one.

Speed (see ``benchmarks/``): backtracking snapshots are taken only when backtracking is on, into
buffers allocated once; the loop syncs with the host only every 100 steps (divergence check), for
the progress bar, or when backtracking or a callback asks for a number. On a CPU the process keeps
freed memory for reuse (:func:`lipkit.runtime.keep_freed_memory`). Options that change the
numbers are :class:`lipkit.runtime.SpeedOptions`, all off by default. Settings and presets live in
:mod:`lipkit.fitting.settings`, what a fit returns in :mod:`lipkit.fitting.records`.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from lipkit.device import resolve_device
from lipkit.fitting.early_stopping import ESWMV
from lipkit.fitting.records import Callback, FitResult, FitState, Snapshots
from lipkit.metrics import psnr_tensor
from lipkit.operators.base import Operator, image_size
from lipkit.models import exact_constant_channels
from lipkit.pruning.masks import empty_filters
from lipkit.runtime import SpeedOptions, keep_freed_memory, make_adam, tf32_allowed
from lipkit.fitting.seed_axis import OneNet, StackedNets
from lipkit.seeding import generator as stream_generator
from lipkit.fitting.settings import PRESETS, FitSettings, resolve_settings
from lipkit.fitting.tracking import Tracker

__all__ = ["fit", "FitDivergedError", "FitResult", "FitSettings", "FitState", "PRESETS", "Snapshots", "SpeedOptions",
           "default_input", "step_noise_generator"]


class FitDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message says at which iteration."""


def fit(
    net: nn.Module,
    operator: Operator,
    observation: torch.Tensor,
    *,
    settings: FitSettings | str | None = None,
    net_input: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
    masks: dict[str, torch.Tensor] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    callbacks: Iterable[Callback] = (),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "fit",
    speed: SpeedOptions | None = None,
    **overrides,
) -> FitResult:
    """Fit ``net`` so that ``operator(net(z))`` matches ``observation``.

    Args:
        net: the prior network; it is moved to ``device`` and trained in place.
        operator: the degradation; its ``loss`` is the objective unless ``loss_fn`` is given.
        observation: y, (C, h, w) or (N, C, h, w) in [0, 1]; N > 1 needs a ``loss_fn`` that
            compares the network's output with all N (see :mod:`lipkit.lottery.weight_sharing`).
        settings: a :class:`FitSettings`, a preset name (``"denoise"``, ``"sr4"``, ...), or None
            for the defaults (:mod:`lipkit.fitting.settings`); keyword ``overrides`` replace single fields
            (``num_iter=500``) of the settings, or of ``speed`` (``allow_tf32=True``).
        net_input: z; by default the network's standard input, drawn from ``seed``'s
            ``"network_input"`` stream.
        reference: the clean image x (C, H, W), to track PSNR. Never used in the loss.
        masks: parameter name -> {0,1} tensor; those entries start at and stay exactly zero. A
            mask that empties a filter or a whole layer (layer collapse) is fitted as exact
            arithmetic would fit it (:func:`lipkit.models.exact_constant_channels`).
        metric: ``metric(output, reference)`` -> 0-dim tensor in dB, for the PSNR histories;
            default RGB :func:`lipkit.metrics.psnr_tensor` (``psnr_y_tensor`` for DIP's SR protocol).
        callbacks: called after every step with a :class:`FitState`; returning True stops. An
            :class:`lipkit.fitting.early_stopping.ESWMV` among them is the fit's early-stopping detector
            (e.g. ``ESWMV(stop=True)`` to end the fit where it stops); otherwise one is built from
            ``settings.es_window`` and ``es_patience``.
        seed: the fit seed: z (when drawn here) and the per-step input noise come from its
            ``"network_input"`` and ``"step_noise"`` streams (:mod:`lipkit.seeding`), which share
            no random numbers with an observation or with weights made from the same number.
        device: None picks CUDA when available, else CPU.
        speed: :class:`lipkit.runtime.SpeedOptions` (TF32, channels-last, bf16, compile, fused
            Adam); all off by default, so that a seed reproduces the FP32 result.
    """
    speed, overrides = SpeedOptions.split(speed, overrides)
    with tf32_allowed(speed.allow_tf32), exact_constant_channels(net, enabled=collapses(masks)):
        return fit_loop([net], operator, observation, seeds=[seed], masks=[masks], net_inputs=[net_input],
                        settings=settings, reference=reference, loss_fn=loss_fn, metric=metric, callbacks=callbacks,
                        device=device, progress=progress, desc=desc, speed=speed, **overrides)[0]


def check_finite(observation: torch.Tensor, reference: torch.Tensor | None) -> None:
    """Refuse an observation or a clean reference holding NaN or inf: the fit or its PSNRs would
    be NaN, and records would hold them without an error."""
    for what, x in (("observation", observation), ("reference (clean) image", reference)):
        if x is not None and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"the {what} holds {bad} NaN or inf values of {x.numel()}; check how it was made "
                             "(images in [0, 1], no division by zero)")


def collapses(masks: dict[str, torch.Tensor] | None) -> bool:
    """Whether ``masks`` empty a conv filter, so that a fit needs
    :func:`lipkit.models.exact_constant_channels` to stay finite (layer collapse)."""
    return bool(masks) and any(empty_filters(masks).values())


def step_noise_generator(seed: int, device) -> torch.Generator:
    """The generator of the per-step input noise of a fit with ``seed`` (its ``"step_noise"`` stream)."""
    return stream_generator(seed, "step_noise", device=device)


def default_input(net: nn.Module, height: int, width: int, seed: int) -> torch.Tensor:
    """The network's standard input z for an H×W output, from ``seed``'s ``"network_input"``
    stream. Drawn on the CPU, so that a seed gives the same z on every device."""
    from lipkit.models import network_input

    return network_input(net, height, width, generator=stream_generator(seed, "network_input"))


def fit_loop(nets: Sequence[nn.Module], operator: Operator, observation: torch.Tensor, *, seeds: Sequence[int],
             masks: Sequence[dict | None], net_inputs: Sequence[torch.Tensor | None], settings, reference, loss_fn,
             metric, device, progress: bool, desc: str, speed: SpeedOptions, callbacks: Iterable[Callback] = (),
             stacked: bool = False, **overrides) -> list[FitResult]:
    """The one fitting loop, over a leading seed axis: S = ``len(nets)`` fits, one result each.

    With ``stacked=False`` it steps the one network of ``nets`` as it is (:class:`lipkit.fitting.seed_axis.OneNet`;
    what :func:`fit` does), else the S networks as one batched model
    (:class:`lipkit.fitting.seed_axis.StackedNets`; :func:`lipkit.fitting.batched.fit_seeds`). Callbacks and
    backtracking act on one network's weights, so they need ``stacked=False``. Arguments are
    :func:`fit`'s, one per seed where they are sequences.
    """
    settings = resolve_settings(settings, **overrides)
    runs = len(nets)
    if not stacked and runs != 1:
        raise ValueError(f"fitting {runs} networks needs stacked=True (lipkit.fitting.batched.fit_seeds)")
    callbacks = list(callbacks)
    if stacked and (callbacks or settings.backtrack):
        raise ValueError("the batched mode does not backtrack or take callbacks: both act on one seed's weights; "
                         "fit the seeds one by one (lipkit.fitting.batched.fit_seeds with mode='sequential' or 'processes')")
    speed.check_weights(nets[0])
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()

    y = observation if observation.dim() == 4 else observation[None]
    y = y.to(dev)
    height, width = image_size(operator, y)
    ref = None
    if reference is not None:
        ref = (reference if reference.dim() == 4 else reference[None]).to(dev)
        if tuple(ref.shape[-2:]) != (height, width):
            raise ValueError(f"reference is {tuple(ref.shape[-2:])} but the operator's image size is {(height, width)}")
    check_finite(y, ref)
    operator.to(dev)

    gens = [step_noise_generator(s, dev) for s in seeds]
    zs = [default_input(net, height, width, s) if z is None else z for net, s, z in zip(nets, seeds, net_inputs)]
    if stacked:
        model = StackedNets(nets, zs, masks, dev, compile=speed.compile)
    else:
        model = OneNet(nets[0], zs[0], masks[0], dev, channels_last=speed.channels_last, compile=speed.compile)
    z = model.z  # (S, N, C, H, W)
    model.hold_masks()
    optimizer = make_adam(model.params, settings.lr, fused=speed.fused_adam)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=speed.bf16)
    objective = loss_fn or operator.loss
    measure = metric or psnr_tensor
    detector = next((cb for cb in callbacks if isinstance(cb, ESWMV)), None)
    watch = None  # the detector this loop feeds itself (one passed in is fed as a callback)
    if detector is None and settings.es_window:
        detector = watch = ESWMV(settings.es_window, settings.es_patience)  # per seed

    n = settings.num_iter
    tracker = Tracker(n, runs, reference=ref, measure=measure, exp_weight=settings.exp_weight, detector=watch,
                      device=dev)

    # Backtracking state (DIP; one network): last good parameters (buffers allocated once) and observation PSNR.
    last_good: list[torch.Tensor] | None = None
    have_good = False
    last_obs_psnr: float | None = None
    backtracks: list[int] = []

    t0 = time.perf_counter()
    bar = tqdm(range(n), desc=desc, disable=not progress, mininterval=0.5)
    postfix_every = max(1, n // 40)
    stopped_early = False
    done = 0
    for i in bar:
        optimizer.zero_grad(set_to_none=True)
        if settings.reg_noise_std > 0:
            noise = torch.stack([torch.randn(z.shape[1:], generator=g, device=dev, dtype=z.dtype) for g in gens])
            inp = z + settings.reg_noise_std * noise
        else:
            inp = z
        with autocast:
            out = model(inp)
        out = out.float() if speed.bf16 else out  # (S, N, C, H, W); bf16 back to FP32, other dtypes kept
        losses = torch.stack([objective(out[s], y) for s in range(runs)])
        losses.sum().backward()  # seed s's weights see only seed s's loss

        skip_step = False
        nonfinite = False
        if settings.backtrack:
            with torch.no_grad():
                obs_psnr = float(psnr_tensor(operator(out[0]), y))
            nonfinite = not (math.isfinite(obs_psnr) and math.isfinite(float(losses[0].detach())))
            dropped = (i % settings.show_every != 0 and last_obs_psnr is not None
                       and obs_psnr - last_obs_psnr < -settings.backtrack_drop_db)
            if nonfinite or dropped:
                if have_good:
                    with torch.no_grad():
                        for p, saved in zip(model.weights(), last_good):
                            p.copy_(saved)
                    backtracks.append(i)
                # DIP still stepped on the stale gradient; we do not, so a NaN never reaches Adam's state
                skip_step = True
            elif i % settings.show_every:
                with torch.no_grad():
                    if last_good is None:
                        last_good = [p.detach().clone() for p in model.weights()]
                    else:
                        for p, saved in zip(model.weights(), last_good):
                            saved.copy_(p)
                have_good = True
                last_obs_psnr = obs_psnr
        if not skip_step:
            optimizer.step()
            model.hold_masks()

        with torch.no_grad():
            track = None
            if nonfinite:
                # a NaN output undone by backtracking enters neither the average nor the histories
                tracker.skip(i, losses.detach())
                cur = tracker.average if tracker.average is not None else torch.zeros_like(out)
            else:
                cur = out.detach()
                track = tracker.record(i, losses.detach(), cur)
                if skip_step:
                    tracker.restored[i] = True  # undone by backtracking after a PSNR drop
        done = i + 1

        if (i + 1) % 100 == 0 or i == n - 1:
            # one sync every 100 steps to catch divergence early
            bad = tracker.first_divergence(i)
            if bad is not None:
                which = f"seed {seeds[bad[1]]}: " if runs > 1 else ""
                remedy = "enable backtracking (backtrack=True)" if runs == 1 else "fit that seed alone with backtracking"
                raise FitDivergedError(f"{which}the loss became {bad[2]} at iteration {bad[0]}; lower lr "
                                       f"(now {settings.lr}) or {remedy}")
        if progress and ((i + 1) % postfix_every == 0 or i == n - 1):
            post = {"loss": f"{float(losses.detach().mean()):.2e}"}
            if track is not None:
                post["psnr"] = f"{float(track.mean()):.2f}"
            bar.set_postfix(post, refresh=False)
        if callbacks:
            average = tracker.average[0] if tracker.average is not None else cur[0]
            state = FitState(i, model.net, cur[0], average, losses[0].detach(), None if track is None else track[0])
            if any(bool(cb(state)) for cb in callbacks):
                stopped_early = True
                break
    bar.close()

    if tracker.average is None:
        raise FitDivergedError(f"every one of the {done} steps gave a non-finite output; lower lr (now {settings.lr})")
    with torch.no_grad(), autocast:
        clean = model(z).detach()
        clean = clean.float() if speed.bf16 else clean
    model.finish()
    seconds = time.perf_counter() - t0
    if done >= 100:  # a short fit may still be flat; a longer one that is has diverged
        with torch.no_grad():
            for s in range(runs):
                warn_if_collapsed(clean[s], y, objective, settings)
    return [tracker.result(s, clean=clean[s], done=done, settings=settings, seed=seeds[s], device=dev,
                           seconds=seconds / runs, backtracks=backtracks, stopped_early=stopped_early,
                           early_stop=detector)
            for s in range(runs)]


def warn_if_collapsed(output: torch.Tensor, observation: torch.Tensor, objective, settings: FitSettings) -> None:
    """Warn when a fit ended worse than a flat image: its loss is above the loss of the
    observation's mean everywhere, or its output's std is below a tenth of the observation's.
    Both mean that it diverged (typically too high a learning rate; measured at lr 10: 2.6 times
    the flat loss for denoising, 2.1 for ×4 SR). A sound fit is far below (0.16 for denoising at
    σ = 25, 0.004 for inpainting and SR), and a small network that underfits stays below 1 (0.91
    for chapter 5's smallest deep decoders), so neither warns."""
    flat = float(objective(torch.full_like(output, float(observation.float().mean())), observation))
    loss = float(objective(output, observation))
    out_std, obs_std = float(output.float().std()), float(observation.float().std())
    if (flat > 0 and loss > flat) or (obs_std > 0 and out_std < 0.1 * obs_std):
        warnings.warn(f"the fit collapsed: its loss is {loss:.4g} where a flat image scores {flat:.4g}, and its "
                      f"output's std is {out_std:.3f} against the observation's {obs_std:.3f}; lower the learning "
                      f"rate (now {settings.lr})", stacklevel=3)
