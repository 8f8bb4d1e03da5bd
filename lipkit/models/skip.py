"""The DIP ``skip`` encoder-decoder (Ulyanov et al., models/skip.py), a faithful port.

The defaults are the LIP backbone, the network the paper prunes: 32 input channels, five levels
of 128 channels with 4-channel skips, 3×3 convolutions with stride-2 downsampling, bilinear
upsampling, reflection padding, LeakyReLU(0.2), BatchNorm, bias and a sigmoid. It has 2,217,831
parameters, 2,208,768 of them conv weights in 26 Conv2d layers.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lipkit.models.common import Concat, Seq, act, bn, conv

UPSAMPLE_MODES = ("nearest", "bilinear")


def _per_scale(value, n: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries but the net has {n} scales")
        return list(value)
    return [value] * n


class SkipNet(Seq):
    """The skip net: (N, C_in, H, W) -> (N, C_out, H, W), H and W multiples of 2^levels.

    A plain DIP Sequential, plus the arguments it was built with in ``config`` so that a ticket
    or checkpoint can record and check its architecture. BatchNorm is used in train mode always,
    as in DIP: statistics come from the one image being fitted. ``eval()`` is therefore refused.
    """

    config: dict
    input_conv_names: list[str]  # the convolutions that read z (the official LIP code keeps them dense)

    def train(self, mode: bool = True) -> "SkipNet":
        if not mode:
            raise RuntimeError(
                "DIP nets keep BatchNorm in train mode (statistics of the image being fitted); "
                "eval() would switch to running averages and change the output. "
                "Use torch.no_grad() for a forward pass without gradients."
            )
        return super().train(True)

    @property
    def levels(self) -> int:
        return len(self.config["num_channels_down"])

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this (2^levels) for the encoder and decoder to line up."""
        return 2 ** self.levels


DEFAULT_LEVELS = 5  # the LIP backbone's depth


def skip_net(
    num_input_channels: int = 32,
    num_output_channels: int = 3,
    num_channels_down: Sequence[int] = (128, 128, 128, 128, 128),
    num_channels_up: Sequence[int] = (128, 128, 128, 128, 128),
    num_channels_skip: Sequence[int] = (4, 4, 4, 4, 4),
    filter_size_down: int | Sequence[int] = 3,
    filter_size_up: int | Sequence[int] = 3,
    filter_skip_size: int = 1,
    need_sigmoid: bool = True,
    need_bias: bool = True,
    pad: str = "reflection",
    upsample_mode: str | Sequence[str] = "bilinear",
    downsample_mode: str | Sequence[str] = "stride",
    act_fun: str = "LeakyReLU",
    need1x1_up: bool = True,
) -> SkipNet:
    """Build DIP's ``skip`` network. Every argument of the original is supported.

    Note that DIP's own defaults differ (2 input channels, [16, 32, 64, 128, 128], zero padding,
    nearest upsampling); the defaults here are the LIP/DIP-denoising configuration. Bilinear
    upsampling uses ``align_corners=False``.
    """
    down, up, skip = list(num_channels_down), list(num_channels_up), list(num_channels_skip)
    if not (len(down) == len(up) == len(skip)):
        raise ValueError(
            f"num_channels_down/up/skip must have equal lengths, got {len(down)}, {len(up)}, {len(skip)}"
        )
    n_scales = len(down)
    if n_scales == 0:
        raise ValueError("the skip net needs at least one scale")
    upsample_mode = _per_scale(upsample_mode, n_scales, "upsample_mode")
    for m in upsample_mode:
        if m not in UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {m!r}")
    downsample_mode = _per_scale(downsample_mode, n_scales, "downsample_mode")
    filter_size_down = _per_scale(filter_size_down, n_scales, "filter_size_down")
    filter_size_up = _per_scale(filter_size_up, n_scales, "filter_size_up")
    last_scale = n_scales - 1

    model = SkipNet()
    model_tmp: Seq = model
    input_depth = num_input_channels
    for i in range(n_scales):
        deeper, skip_branch = Seq(), Seq()
        if skip[i] != 0:
            model_tmp.add(Concat(1, skip_branch, deeper))
        else:
            model_tmp.add(deeper)
        model_tmp.add(bn(skip[i] + (up[i + 1] if i < last_scale else down[i])))

        if skip[i] != 0:
            skip_branch.add(conv(input_depth, skip[i], filter_skip_size, bias=need_bias, pad=pad))
            skip_branch.add(bn(skip[i]))
            skip_branch.add(act(act_fun))

        first_deeper = conv(input_depth, down[i], filter_size_down[i], 2, bias=need_bias, pad=pad,
                            downsample_mode=downsample_mode[i])
        deeper.add(first_deeper)
        if i == 0:
            reads_input = [first_deeper] + ([skip_branch[0]] if skip[i] != 0 else [])
        deeper.add(bn(down[i]))
        deeper.add(act(act_fun))
        deeper.add(conv(down[i], down[i], filter_size_down[i], bias=need_bias, pad=pad))
        deeper.add(bn(down[i]))
        deeper.add(act(act_fun))

        deeper_main = Seq()
        if i == last_scale:
            k = down[i]  # the deepest scale has nothing below it
        else:
            deeper.add(deeper_main)
            k = up[i + 1]
        mode = upsample_mode[i]
        deeper.add(nn.Upsample(scale_factor=2, mode=mode, align_corners=False if mode == "bilinear" else None))

        model_tmp.add(conv(skip[i] + k, up[i], filter_size_up[i], 1, bias=need_bias, pad=pad))
        model_tmp.add(bn(up[i]))
        model_tmp.add(act(act_fun))
        if need1x1_up:
            model_tmp.add(conv(up[i], up[i], 1, bias=need_bias, pad=pad))
            model_tmp.add(bn(up[i]))
            model_tmp.add(act(act_fun))

        input_depth = down[i]
        model_tmp = deeper_main

    model.add(conv(up[0], num_output_channels, 1, bias=need_bias, pad=pad))
    if need_sigmoid:
        model.add(nn.Sigmoid())

    model.input_conv_names = sorted(
        name for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and any(m is c for seq in reads_input for c in seq.modules())
    )
    model.config = dict(
        arch="skip",
        num_input_channels=num_input_channels, num_output_channels=num_output_channels,
        num_channels_down=down, num_channels_up=up, num_channels_skip=skip,
        filter_size_down=filter_size_down, filter_size_up=filter_size_up,
        filter_skip_size=filter_skip_size, need_sigmoid=need_sigmoid, need_bias=need_bias,
        pad=pad, upsample_mode=upsample_mode, downsample_mode=downsample_mode,
        act_fun=act_fun, need1x1_up=need1x1_up,
    )
    return model


def size_problem(levels: int, height: int, width: int) -> str | None:
    """Why an H×W image does not fit a skip net with ``levels`` levels, or None when it does.

    H and W must be multiples of 2^levels for encoder and decoder to line up, and at least
    2·2^levels: at 2^levels the deepest level is 1×1 and train-mode BatchNorm refuses one pixel.
    """
    m = 2 ** levels
    if height % m or width % m or min(height, width) < 2 * m:
        return (f"the skip net has {levels} levels, so H and W must be multiples of {m} and at least {2 * m} px; "
                f"got {height}x{width}. Crop the image first (lipkit.data.crop_to_multiple(x, {m})).")
    return None


def dip_input(channels: int, height: int, width: int, *, generator: torch.Generator | None = None,
              fill: str = "noise", scale: float = 0.1, device=None) -> torch.Tensor:
    """DIP's fixed network input z, shape (1, channels, height, width).

    ``fill='noise'``: uniform [0, 1) times ``scale`` (DIP's ``var=1/10`` is this scale, not a
    variance). ``fill='meshgrid'``: two ramps in [0, 1] (needs ``channels=2``).
    """
    if fill == "noise":
        z = torch.rand((1, channels, height, width), generator=generator, device=device)
        return z * scale
    if fill == "meshgrid":
        if channels != 2:
            raise ValueError("meshgrid input needs channels=2")
        ys = torch.linspace(0, 1, height, device=device)
        xs = torch.linspace(0, 1, width, device=device)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([xx, yy])[None]
    raise ValueError(f"fill must be 'noise' or 'meshgrid', got {fill!r}")
