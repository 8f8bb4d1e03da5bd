"""Building blocks of DIP's ``models/common.py``, ported with the same module layout.

Module names follow DIP's monkey-patched ``Module.add``: children of a Sequential are named
"1", "2", ..., so state-dict keys match checkpoints written by the DIP and LIP code.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from lipkit.resample import Downsampler


class Seq(nn.Sequential):
    """``nn.Sequential`` whose ``add`` names children "1", "2", ... like DIP's patched Module."""

    def add(self, module: nn.Module) -> "Seq":
        self.add_module(str(len(self) + 1), module)
        return self


class Concat(nn.Module):
    """Run every branch on the input and concatenate along ``dim``.

    Branch outputs that differ in size (only when H or W is not a multiple of 2^levels) are
    centre-cropped to the smallest, as in DIP.
    """

    def __init__(self, dim: int, *branches: nn.Module):
        super().__init__()
        self.dim = dim
        for idx, module in enumerate(branches):
            self.add_module(str(idx), module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [module(x) for module in self._modules.values()]
        h = min(o.shape[2] for o in outs)
        w = min(o.shape[3] for o in outs)
        if any(o.shape[2] != h or o.shape[3] != w for o in outs):
            cropped = []
            for o in outs:
                dh, dw = (o.shape[2] - h) // 2, (o.shape[3] - w) // 2
                cropped.append(o[:, :, dh:dh + h, dw:dw + w])
            outs = cropped
        return torch.cat(outs, dim=self.dim)


class Swish(nn.Module):
    """x·sigmoid(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


ACTIVATIONS = ("LeakyReLU", "Swish", "ELU", "ReLU", "none")


def act(act_fun: str | Callable[[], nn.Module] = "LeakyReLU") -> nn.Module:
    """DIP's activation factory. 'LeakyReLU' is LeakyReLU(0.2, inplace=True)."""
    if not isinstance(act_fun, str):
        return act_fun()
    if act_fun == "LeakyReLU":
        return nn.LeakyReLU(0.2, inplace=True)
    if act_fun == "Swish":
        return Swish()
    if act_fun == "ELU":
        return nn.ELU()
    if act_fun == "ReLU":
        return nn.ReLU()
    if act_fun == "none":
        return nn.Sequential()
    raise ValueError(f"act_fun must be one of {ACTIVATIONS} or a module factory, got {act_fun!r}")


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that can normalise each image of a batch on its own.

    A DIP fits one image, so its BatchNorm statistics are those of that image. With
    ``per_image = True`` a batch of N inputs is normalised image by image (the statistics a
    batch of one would use), so N inputs through shared weights in one call give exactly the
    N single-image outputs. Running statistics are not updated then: DIP nets never use them.
    State-dict keys are those of ``nn.BatchNorm2d``.
    """

    per_image: bool = False
    exact_constant_channels: bool = False  # set by lipkit.models.exact_constant_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_image = self.per_image and x.shape[0] > 1 and self.training
        weight = self.weight
        if self.exact_constant_channels and self.training and weight is not None:
            weight = weight * live_channels(x, self.eps, per_image).to(weight.dtype)
        if per_image:
            return nn.functional.instance_norm(x, None, None, weight, self.bias, use_input_stats=True,
                                               eps=self.eps)
        if weight is self.weight:
            return super().forward(x)
        momentum = self.momentum  # the running statistics move as nn.BatchNorm2d moves them
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked) if momentum is None else momentum
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, weight, self.bias, True,
                                        momentum or 0.0, self.eps)


def live_channels(x: torch.Tensor, eps: float, per_image: bool = False) -> torch.Tensor:
    """(C,) bool: which channels of ``x`` (N, C, H, W) vary over the image (over the batch too,
    unless ``per_image``, where a channel must be constant in every image to count as constant).

    A conv whose mask keeps no weight of a filter (layer collapse) outputs its bias: a constant
    map, and so does everything that reads only such maps. Train-mode BatchNorm then sees a
    variance of 0 plus rounding noise and scales it by 1/sqrt(eps) ≈ 316 forward and back;
    through the BatchNorms of a collapsed branch the gradients overflow to inf and NaN at the
    first step. In exact arithmetic the branch gets no gradient and each BatchNorm outputs its
    bias β. A BatchNorm whose gain is 0 on the constant channels computes exactly that, and β
    keeps its gradient. A channel counts as constant when its variance is below
    eps·1e-4 + (1e-5·mean)²: rounding noise of a constant is below it, and a live channel of a
    DIP net is orders of magnitude above (its BatchNorm would scale it to less than 1 % anyway).
    The statistics are taken on a grid of every k-th pixel (at least 16 per side), which a
    constant map passes and a live one does not.
    """
    step = max(1, min(x.shape[-2], x.shape[-1]) // 16)
    sample = x.detach()[..., ::step, ::step]
    var, mean = torch.var_mean(sample, dim=(2, 3) if per_image else (0, 2, 3), correction=0)
    constant = var <= eps * 1e-4 + (1e-5 * mean) ** 2
    return ~(constant.all(0) if per_image else constant)


def bn(num_features: int) -> BatchNorm2d:
    return BatchNorm2d(num_features)


PADS = ("zero", "reflection")
DOWNSAMPLE_MODES = ("stride", "avg", "max", "lanczos2", "lanczos3")


def _reflection_pad1_backward(grad: torch.Tensor) -> torch.Tensor:
    """The gradient of a 1-pixel reflection pad: (..., H+2, W+2) -> (..., H, W), H, W >= 4.

    The same numbers, bit for bit, as PyTorch's ``reflection_pad2d_backward``, which adds every
    output pixel's gradient into a zeroed input in row-major order: an edge pixel receives two
    terms (any order gives the same float), a corner four, summed here in that order. It is a
    copy and a few thin slices instead of a scatter over the whole image (about 4x faster).
    """
    g = grad
    out = g[..., 1:-1, 1:-1].clone()
    out[..., 1, :] += g[..., 0, 1:-1]
    out[..., -2, :] += g[..., -1, 1:-1]
    out[..., :, 1] += g[..., 1:-1, 0]
    out[..., :, -2] += g[..., 1:-1, -1]
    h, w = g.shape[-2] - 2, g.shape[-1] - 2
    # the four corners at once: corner (1, 1) reads output rows {0, 2} x cols {0, 2}, and so on
    rows = g[..., [0, 2, h - 1, h + 1], :]  # (..., 4, W+2): row pairs of the top and bottom corners
    ra, rb = rows[..., 0::2, :], rows[..., 1::2, :]  # (..., 2, W+2) each
    cols = [0, 2, w - 1, w + 1]
    a0, a1, b0, b1 = ra[..., cols[0::2]], ra[..., cols[1::2]], rb[..., cols[0::2]], rb[..., cols[1::2]]
    out[..., 1:h - 1:h - 3, 1:w - 1:w - 3] = ((a0 + a1) + b0) + b1  # rows {1, h-2} x cols {1, w-2}
    return out


class _ReflectionPad1(torch.autograd.Function):
    """1-pixel reflection padding with the fast, bit-identical backward above."""

    generate_vmap_rule = True  # plain tensor ops in both directions, so torch.func.vmap works

    @staticmethod
    def forward(x):
        return nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return _reflection_pad1_backward(grad)


class ReflectionPad(nn.ReflectionPad2d):
    """``nn.ReflectionPad2d`` with a faster backward for the 1-pixel pad of 3x3 convolutions.

    Same outputs and gradients bit for bit (tested); at 128 px the pads' backward took ~5% of a
    DIP step on one CPU thread, mostly scattering into a zeroed tensor. A zero pad (DIP puts one
    in front of every 1x1 convolution, and it keeps the state-dict names) passes the input
    through instead of copying it. GPU tensors (where it was not measured), other pads, inputs
    under 4 px, and inputs under 2^18 elements use PyTorch's own: for those the Python-level backward costs more than it saves (measured
    break-even between 131k and 147k elements on one CPU thread; e.g. 128 channels at 32 px,
    or the quick profile's 32 channels at 64 px, stay on PyTorch's kernel).
    """

    min_numel = 1 << 18

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == (0, 0, 0, 0):
            return x
        if (self.padding == (1, 1, 1, 1) and x.requires_grad and x.device.type == "cpu"
                and x.shape[-1] >= 4 and x.shape[-2] >= 4 and x.numel() >= self.min_numel):
            return _ReflectionPad1.apply(x)
        return super().forward(x)


def conv(in_f: int, out_f: int, kernel_size: int, stride: int = 1, bias: bool = True,
         pad: str = "zero", downsample_mode: str = "stride") -> nn.Sequential:
    """DIP's ``conv``: [ReflectionPad2d] + Conv2d [+ pooling or Downsampler], as a Sequential.

    With ``downsample_mode`` other than 'stride', the convolution runs at stride 1 and a
    separate downsampling layer follows it.
    """
    if pad not in PADS:
        raise ValueError(f"pad must be one of {PADS}, got {pad!r}")
    downsampler = None
    if stride != 1 and downsample_mode != "stride":
        if downsample_mode == "avg":
            downsampler = nn.AvgPool2d(stride, stride)
        elif downsample_mode == "max":
            downsampler = nn.MaxPool2d(stride, stride)
        elif downsample_mode in ("lanczos2", "lanczos3"):
            downsampler = Downsampler(out_f, stride, kernel_type=downsample_mode, phase=0.5, preserve_size=True)
        else:
            raise ValueError(f"downsample_mode must be one of {DOWNSAMPLE_MODES}, got {downsample_mode!r}")
        stride = 1
    padder = None
    to_pad = (kernel_size - 1) // 2
    if pad == "reflection":
        padder = ReflectionPad(to_pad)
        to_pad = 0
    convolver = nn.Conv2d(in_f, out_f, kernel_size, stride, padding=to_pad, bias=bias)
    return nn.Sequential(*[m for m in (padder, convolver, downsampler) if m is not None])
