"""The one fitting loop: every prior (dense DIP, tickets, deep decoder) is fitted here.

``fit(net, operator, y)`` minimises ``operator.loss(net(z + σ·n), y)`` with Adam, as DIP does:
fresh input noise n each step (``reg_noise_std``), an exponential moving average of the output
(``exp_weight``), optional backtracking, and optional per-parameter masks held at zero. Methods
differ only in the loss (``loss_fn``), the network and the settings.

Given a clean ``reference``, PSNR is tracked every iteration on the device (no host sync). Every
fit reports three PSNRs, one per stopping rule: the best over the iterations (the papers' oracle,
which needs the clean image to pick the iteration), the one at the iteration that ES-WMV picks
without the clean image (:mod:`lipkit.early_stopping`), and the final one.

Speed (see ``benchmarks/``): backtracking snapshots are taken only when backtracking is on, into
buffers allocated once; the loop syncs with the host only every 100 steps (divergence check), for
the progress bar, or when backtracking or a callback asks for a number. On a CPU the process keeps
freed memory for reuse (see :func:`keep_freed_memory`). Options that change the numbers, all off
by default so that a seed reproduces the FP32 result of the reference code: ``fused_adam``,
``channels_last``, ``allow_tf32``, ``bf16`` autocast and ``compile``.
"""

from __future__ import annotations

import ctypes
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lipkit.device import resolve_device
from lipkit.early_stopping import ESWMV
from lipkit.metrics import psnr_tensor
from lipkit.operators.base import Operator, image_size
from lipkit.seeding import generator as stream_generator


class FitDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message says at which iteration."""


@dataclass(frozen=True)
class FitSettings:
    """Hyper-parameters of one fit. ``PRESETS`` holds DIP's per-task values."""

    num_iter: int = 3000
    lr: float = 0.01
    reg_noise_std: float = 0.0       # std of the Gaussian noise added to z at every step
    exp_weight: float | None = None  # EMA weight of the output (DIP denoising: 0.99)
    backtrack: bool = False          # DIP's fallback when the observation PSNR drops
    backtrack_drop_db: float = 5.0
    show_every: int = 100            # DIP skips the backtracking check on multiples of this
    es_window: int = 100             # ES-WMV's variance window (0: no early-stopping detector)
    es_patience: int = 1000          # ES-WMV stops after this many steps without a new low

    def __post_init__(self):
        if self.num_iter < 1:
            raise ValueError(f"num_iter must be >= 1, got {self.num_iter}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.reg_noise_std < 0:
            raise ValueError(f"reg_noise_std must be >= 0, got {self.reg_noise_std}")
        if self.exp_weight is not None and not 0 <= self.exp_weight < 1:
            raise ValueError(f"exp_weight must be in [0, 1) or None, got {self.exp_weight}")
        if self.es_window != 0 and self.es_window < 2:
            raise ValueError(f"es_window must be 0 (off) or at least 2 iterations, got {self.es_window}")
        if self.es_patience < 1:
            raise ValueError(f"es_patience must be at least 1 iteration, got {self.es_patience}")


PRESETS: dict[str, FitSettings] = {
    # DIP notebooks and the LIP code (see shared reference): Adam 0.01 throughout.
    "denoise": FitSettings(num_iter=3000, reg_noise_std=1 / 30, exp_weight=0.99),
    "sr4": FitSettings(num_iter=2000, reg_noise_std=0.03),
    "sr8": FitSettings(num_iter=4000, reg_noise_std=0.05),
    "inpaint": FitSettings(num_iter=3000, reg_noise_std=0.03),
    # Heckel & Hand: no input noise, fixed input, best-PSNR tracking.
    "deep_decoder": FitSettings(num_iter=1900, reg_noise_std=0.0),
}


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
    es_psnr: float | None = None         # at the iteration ES-WMV picks, without the clean image
    es_iteration: int | None = None      # 0-based
    es_stopped: bool | None = None       # whether ES-WMV's patience ran out before the end
    es_output: torch.Tensor | None = None  # tracked output at es_iteration
    variance_history: np.ndarray | None = None  # ES-WMV's windowed variance, NaN until the window fills

    def summary(self) -> dict:
        """JSON-friendly numbers of the run."""
        return dict(best_psnr=self.best_psnr, best_iteration=self.best_iteration, es_psnr=self.es_psnr,
                    es_iteration=self.es_iteration, es_stopped=self.es_stopped,
                    final_psnr=self.final_psnr, iterations=self.iterations, tracked=self.tracked,
                    seed=self.seed, device=self.device, seconds=round(self.seconds, 3),
                    backtracks=len(self.backtracks), settings=asdict(self.settings))


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


def check_masks(net: nn.Module, masks: dict[str, torch.Tensor], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(parameter, mask on ``device``) pairs; a name that matches no parameter, or a shape that
    differs, is refused with a message that says which."""
    params = dict(net.named_parameters())
    pairs = []
    for name, mask in masks.items():
        if name not in params:
            close = [p for p in params if p.endswith(name) or name.endswith(p)][:3]
            raise KeyError(f"mask for {name!r} matches no parameter of the network" +
                           (f" (did you mean {close}?)" if close else ""))
        p = params[name]
        if tuple(mask.shape) != tuple(p.shape):
            raise ValueError(f"mask for {name!r} is {tuple(mask.shape)} but the parameter is {tuple(p.shape)}")
        pairs.append((p, mask.to(device=device, dtype=p.dtype)))
    return pairs


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
    allow_tf32: bool = False,
    channels_last: bool = False,
    bf16: bool = False,
    compile: bool = False,
    fused_adam: bool = False,
    **overrides,
) -> FitResult:
    """Fit ``net`` so that ``operator(net(z))`` matches ``observation``.

    Args:
        net: the prior network; it is moved to ``device`` and trained in place.
        operator: the degradation; its ``loss`` is the objective unless ``loss_fn`` is given.
        observation: y, (C, h, w) or (N, C, h, w) in [0, 1]; N > 1 needs a ``loss_fn`` that
            compares the network's output with all N (see :mod:`lipkit.weight_sharing`).
        settings: a :class:`FitSettings`, a preset name (``"denoise"``, ``"sr4"``, ...), or None
            for the defaults; keyword ``overrides`` replace single fields (``num_iter=500``).
        net_input: z; by default the network's standard input, drawn from ``seed``'s
            ``"network_input"`` stream.
        reference: the clean image x (C, H, W), to track PSNR. Never used in the loss.
        masks: parameter name -> {0,1} tensor; those entries start at and stay exactly zero.
        metric: ``metric(output, reference)`` -> 0-dim tensor in dB, for the PSNR histories;
            default RGB :func:`lipkit.metrics.psnr_tensor` (``psnr_y_tensor`` for DIP's SR protocol).
        callbacks: called after every step with a :class:`FitState`; returning True stops. An
            :class:`lipkit.early_stopping.ESWMV` among them is the fit's early-stopping detector
            (e.g. ``ESWMV(stop=True)`` to end the fit where it stops); otherwise one is built from
            ``settings.es_window`` and ``es_patience``.
        seed: the fit seed: z (when drawn here) and the per-step input noise come from its
            ``"network_input"`` and ``"step_noise"`` streams (:mod:`lipkit.seeding`), which share
            no random numbers with an observation or with weights made from the same number.
        device: None picks CUDA when available, else CPU.
        allow_tf32: let CUDA convolutions and matmuls use TF32. PyTorch enables it for cuDNN
            convolutions by default; lipkit turns it off during a fit (full FP32, as the DIP and
            LIP papers ran) unless asked. No effect on the CPU.
        channels_last: run the network in channels-last memory format (faster convolutions on
            recent GPUs; slower on this project's CPUs). The net is returned in the default format.
        bf16: run the network's forward under bfloat16 autocast (GPU speed; changes the numbers).
            Loss, optimiser state and weights stay FP32.
        compile: ``torch.compile`` the network. Pays a compilation (minutes on a small CPU) in
            every new process; measured on 2 CPU cores it did not pay off (``benchmarks/``).
        fused_adam: the fused Adam kernel (faster; other numbers, see :func:`make_adam`).
    """
    with tf32_allowed(allow_tf32):
        return _fit(net, operator, observation, settings=settings, net_input=net_input, reference=reference,
                    masks=masks, loss_fn=loss_fn, metric=metric, callbacks=callbacks, seed=seed, device=device,
                    progress=progress, desc=desc, channels_last=channels_last, bf16=bf16, compile=compile,
                    fused_adam=fused_adam, **overrides)


def step_noise_generator(seed: int, device) -> torch.Generator:
    """The generator of the per-step input noise of a fit with ``seed`` (its ``"step_noise"`` stream)."""
    return stream_generator(seed, "step_noise", device=device)


def default_input(net: nn.Module, height: int, width: int, seed: int) -> torch.Tensor:
    """The network's standard input z for an H×W output, from ``seed``'s ``"network_input"``
    stream. Drawn on the CPU, so that a seed gives the same z on every device."""
    from lipkit.models import network_input

    return network_input(net, height, width, generator=stream_generator(seed, "network_input"))


def resolve_settings(settings: FitSettings | str | None, **overrides) -> FitSettings:
    """A :class:`FitSettings` from settings, a preset name or None, with single fields replaced."""
    if isinstance(settings, str):
        if settings not in PRESETS:
            raise KeyError(f"unknown preset {settings!r}; choose from {sorted(PRESETS)}")
        settings = PRESETS[settings]
    return replace(settings or FitSettings(), **overrides)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_freed_memory_kept = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process instead of returning it to the OS at once.

    A fit allocates and frees the same activations every step. With glibc's defaults, blocks
    of a few MB are handed back to the kernel and faulted in again, zero-filled, on the next
    step: measured at 64 px on this project's CPU, 6,600 page faults and 10% of the step time
    in the kernel. Raising the mmap threshold to glibc's maximum (32 MiB) and the trim
    threshold to 1 GiB removes that; blocks above 32 MiB (full-resolution activations at
    256 px and more) still go back. Numbers are unchanged; resident memory stays at its peak.
    Called by :func:`fit` on the CPU, once per process. Returns whether the setting applied
    (False off glibc, or with ``LIPKIT_KEEP_FREED_MEMORY=0``).
    """
    global _freed_memory_kept
    if _freed_memory_kept:
        return True
    import os

    if not sys.platform.startswith("linux") or os.environ.get("LIPKIT_KEEP_FREED_MEMORY") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _freed_memory_kept = ok
    return ok


def moving_average(average: torch.Tensor | None, output: torch.Tensor, weight: float | None) -> torch.Tensor:
    """DIP's exponential moving average of the output: ``weight``·average + (1-weight)·output.

    Without a weight (no EMA) it is the output itself; the first output starts the average.
    """
    if weight is None:
        return output
    if average is None:
        return output.clone()
    return average * weight + output * (1 - weight)


def make_adam(params, lr: float, *, fused: bool = False) -> torch.optim.Adam:
    """Adam as DIP uses it (default betas, no weight decay).

    ``fused=True`` uses the fused kernel (CPU and CUDA): one pass over all parameters, about
    5 ms a step at 64 px on one CPU thread instead of 12 ms. It is deterministic but rounds
    differently, and over a short fit that is not negligible: on chapter 1's ×4 zebra crop
    (150 iterations) the best Y-PSNR moved by -0.66, -0.10 and -0.61 dB for seeds 0, 1, 2.
    The default is therefore PyTorch's standard implementation, the one the DIP and LIP code
    ran; devices without a fused kernel fall back to it.
    """
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except RuntimeError:  # a device without a fused Adam kernel
            pass
    return torch.optim.Adam(params, lr=lr)


class tf32_allowed:
    """Set the TF32 switches for the duration of a fit and restore them afterwards."""

    def __init__(self, allow: bool):
        self.allow = allow

    def __enter__(self):
        self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = self.allow
        torch.backends.cuda.matmul.allow_tf32 = self.allow

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved
        return False


def _fit(net, operator, observation, *, settings, net_input, reference, masks, loss_fn, metric, callbacks, seed,
         device, progress, desc, channels_last, bf16, compile, fused_adam, **overrides) -> FitResult:
    settings = resolve_settings(settings, **overrides)
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
    net.to(dev)
    operator.to(dev)
    net.train()

    gen = step_noise_generator(seed, dev)
    if net_input is None:
        net_input = default_input(net, height, width, seed)
    z = net_input.to(dev)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        net.to(memory_format=memory_format)
        z = z.contiguous(memory_format=memory_format) if z.dim() == 4 else z

    mask_pairs = check_masks(net, masks, dev) if masks else []
    masked = [p for p, _ in mask_pairs]
    mask_values = [m.contiguous(memory_format=memory_format) if m.dim() == 4 else m for _, m in mask_pairs]

    def hold_masks() -> None:
        if masked:
            with torch.no_grad():
                torch._foreach_mul_(masked, mask_values)  # one call for all masked tensors

    hold_masks()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = make_adam(params, settings.lr, fused=fused_adam)
    forward = torch.compile(net) if compile else net
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)
    objective = loss_fn or operator.loss
    measure = metric or psnr_tensor
    callbacks = list(callbacks)
    detector = next((cb for cb in callbacks if isinstance(cb, ESWMV)), None)
    watch = None  # the detector this loop feeds itself (one passed in is fed as a callback)
    if detector is None and settings.es_window:
        detector = watch = ESWMV(settings.es_window, settings.es_patience)

    n = settings.num_iter
    loss_hist = torch.zeros(n, device=dev)
    restored = torch.zeros(n, dtype=torch.bool, device=dev)  # steps undone by backtracking
    psnr_hist = torch.zeros(n, device=dev) if ref is not None else None
    psnr_avg_hist = torch.zeros(n, device=dev) if (ref is not None and settings.exp_weight is not None) else None
    best_psnr = torch.tensor(-math.inf, device=dev)
    best_out: torch.Tensor | None = None
    out_avg: torch.Tensor | None = None

    # Backtracking state (DIP): last good parameters (buffers allocated once) and observation PSNR.
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
            noise = torch.randn(z.shape, generator=gen, device=dev, dtype=z.dtype)
            inp = z + settings.reg_noise_std * noise
        else:
            inp = z
        if bf16:
            with autocast:
                out = forward(inp)
            out = out.float()
        else:
            out = forward(inp)
        loss = objective(out, y)
        loss.backward()

        skip_step = False
        nonfinite = False
        if settings.backtrack:
            with torch.no_grad():
                obs_psnr = float(psnr_tensor(operator(out), y))
            nonfinite = not (math.isfinite(obs_psnr) and math.isfinite(float(loss.detach())))
            dropped = (i % settings.show_every != 0 and last_obs_psnr is not None
                       and obs_psnr - last_obs_psnr < -settings.backtrack_drop_db)
            if nonfinite or dropped:
                if have_good:
                    with torch.no_grad():
                        for p, saved in zip(net.parameters(), last_good):
                            p.copy_(saved)
                    backtracks.append(i)
                # DIP still stepped on the stale gradient; we do not, so a NaN never reaches Adam's state
                skip_step = True
                restored[i] = True
            elif i % settings.show_every:
                with torch.no_grad():
                    if last_good is None:
                        last_good = [p.detach().clone() for p in net.parameters()]
                    else:
                        for p, saved in zip(net.parameters(), last_good):
                            saved.copy_(p)
                have_good = True
                last_obs_psnr = obs_psnr
        if not skip_step:
            optimizer.step()
            hold_masks()

        with torch.no_grad():
            loss_hist[i] = loss.detach()
            p_track = None
            if nonfinite:
                # a NaN output was undone by backtracking: it must not enter the average or the histories
                cur = out_avg if out_avg is not None else torch.zeros_like(out)
                for hist in (psnr_hist, psnr_avg_hist):
                    if hist is not None:
                        hist[i] = hist[i - 1] if i else float("nan")
            else:
                cur = out.detach()
                out_avg = moving_average(out_avg, cur, settings.exp_weight)
                if watch is not None:
                    watch.update(i, cur[None], out_avg[None])
                if ref is not None:
                    p_raw = measure(cur, ref)
                    psnr_hist[i] = p_raw
                    p_track = p_raw
                    if psnr_avg_hist is not None:
                        p_track = measure(out_avg, ref)
                        psnr_avg_hist[i] = p_track
                    tracked_img = out_avg if psnr_avg_hist is not None else cur
                    better = p_track > best_psnr
                    best_out = tracked_img.clone() if best_out is None else torch.where(better, tracked_img, best_out)
                    best_psnr = torch.maximum(best_psnr, p_track)
        done = i + 1

        if (i + 1) % 100 == 0 or i == n - 1:
            # one sync every 100 steps to catch divergence early
            window = slice(max(0, i - 99), i + 1)
            if not (torch.isfinite(loss_hist[window]) | restored[window]).all():
                bad_at = int(torch.nonzero(~(torch.isfinite(loss_hist[: i + 1]) | restored[: i + 1]))[0])
                raise FitDivergedError(
                    f"the loss became {float(loss_hist[bad_at])} at iteration {bad_at}; lower lr "
                    f"(now {settings.lr}) or enable backtracking (backtrack=True)"
                )
        if progress and ((i + 1) % postfix_every == 0 or i == n - 1):
            post = {"loss": f"{float(loss.detach()):.2e}"}
            if p_track is not None:
                post["psnr"] = f"{float(p_track):.2f}"
            bar.set_postfix(post, refresh=False)
        if callbacks:
            state = FitState(i, net, cur, out_avg, loss.detach(), p_track)
            if any(bool(cb(state)) for cb in callbacks):
                stopped_early = True
                break
    bar.close()

    if out_avg is None:
        raise FitDivergedError(f"every one of the {done} steps gave a non-finite output; lower lr (now {settings.lr})")
    with torch.no_grad(), autocast:
        clean = forward(z).detach()
        clean = clean.float() if bf16 else clean
    if channels_last:
        net.to(memory_format=torch.contiguous_format)
    seconds = time.perf_counter() - t0
    return make_result(output=out_avg, clean=clean, best=best_out, loss_history=loss_hist, psnr_history=psnr_hist,
                       psnr_avg_history=psnr_avg_hist, done=done, settings=settings, seed=seed, device=dev,
                       seconds=seconds, backtracks=backtracks, stopped_early=stopped_early,
                       early_stop=None if detector is None or not detector.iterations else detector)


def make_result(*, output, clean, best, loss_history, psnr_history, psnr_avg_history, done: int,
                settings: FitSettings, seed: int, device, seconds: float, backtracks=(),
                stopped_early: bool = False, early_stop: ESWMV | None = None, run: int = 0) -> FitResult:
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
        **es,
    )
