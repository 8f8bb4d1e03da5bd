"""The deep decoder of Heckel & Hand (ICLR 2019), a faithful port of ``decodernw``.

An under-parameterised image prior: 1×1 convolutions without bias, bilinear ×2 upsampling,
ReLU and per-channel normalisation (BatchNorm). With ``[k]*5`` channels on an RGB image it has
6k² + 15k parameters; k=128 gives 100,224 (≈0.1M), the size LIP compares against.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lipkit.matching import closest_in_ratio
from lipkit.models.common import Seq


def _dd_conv(in_f: int, out_f: int, kernel_size: int, pad: str) -> nn.Sequential:
    # The deep decoder's conv() is DIP's without bias.
    to_pad = (kernel_size - 1) // 2
    layers: list[nn.Module] = []
    if pad == "reflection":
        layers.append(nn.ReflectionPad2d(to_pad))
        to_pad = 0
    layers.append(nn.Conv2d(in_f, out_f, kernel_size, 1, padding=to_pad, bias=False))
    return nn.Sequential(*layers)


class DeepDecoder(Seq):
    """(1, k, H/2^L, W/2^L) -> (1, C_out, H, W). Its config is kept in ``config``."""

    config: dict

    @property
    def input_channels(self) -> int:
        return self.config["num_channels_up"][0]

    @property
    def upsamplings(self) -> int:
        return len(self.config["num_channels_up"]) if self.config["upsample_mode"] != "none" else 0


def decodernw(
    num_output_channels: int = 3,
    num_channels_up: Sequence[int] = (128,) * 5,
    filter_size_up: int | Sequence[int] = 1,
    need_sigmoid: bool = True,
    pad: str = "reflection",
    upsample_mode: str = "bilinear",
    act_fun: type[nn.Module] = nn.ReLU,
    bn_before_act: bool = False,
    bn_affine: bool = True,
    upsample_first: bool = True,
) -> DeepDecoder:
    """Heckel & Hand's ``decodernw`` with every argument.

    The channel list is extended by its last entry twice, so ``[k]*5`` gives six hidden layers
    and five ×2 upsamplings. ``act_fun`` is a module class (the original passes an instance).
    """
    channels = list(num_channels_up)
    if not channels:
        raise ValueError("num_channels_up must not be empty")
    if pad not in ("zero", "reflection"):
        raise ValueError(f"pad must be 'zero' or 'reflection', got {pad!r}")
    channels = channels + [channels[-1], channels[-1]]
    n_scales = len(channels)
    if isinstance(filter_size_up, (list, tuple)):
        filter_sizes = list(filter_size_up)
    else:
        filter_sizes = [filter_size_up] * n_scales

    def upsample() -> nn.Module:
        return nn.Upsample(scale_factor=2, mode=upsample_mode,
                           align_corners=False if upsample_mode == "bilinear" else None)

    model = DeepDecoder()
    for i in range(n_scales - 1):
        if upsample_first:
            model.add(_dd_conv(channels[i], channels[i + 1], filter_sizes[i], pad))
            if upsample_mode != "none" and i != n_scales - 2:
                model.add(upsample())
        else:
            if upsample_mode != "none" and i != 0:
                model.add(upsample())
            model.add(_dd_conv(channels[i], channels[i + 1], filter_sizes[i], pad))
        if bn_before_act:
            model.add(nn.BatchNorm2d(channels[i + 1], affine=bn_affine))
        model.add(act_fun())
        if not bn_before_act:
            model.add(nn.BatchNorm2d(channels[i + 1], affine=bn_affine))
    model.add(_dd_conv(channels[-1], num_output_channels, 1, pad))
    if need_sigmoid:
        model.add(nn.Sigmoid())
    model.config = dict(
        arch="deep_decoder", num_output_channels=num_output_channels,
        num_channels_up=list(num_channels_up), filter_size_up=filter_size_up,
        need_sigmoid=need_sigmoid, pad=pad, upsample_mode=upsample_mode,
        act_fun=act_fun.__name__, bn_before_act=bn_before_act, bn_affine=bn_affine,
        upsample_first=upsample_first,
    )
    return model


def deep_decoder(k: int = 128, layers: int = 5, out_channels: int = 3, **kwargs) -> DeepDecoder:
    """``decodernw(out_channels, [k]*layers, **kwargs)``: 6k²+15k parameters for k, 5, RGB."""
    if k < 1 or layers < 1:
        raise ValueError(f"k and layers must be positive, got k={k}, layers={layers}")
    return decodernw(out_channels, [k] * layers, **kwargs)


def deep_decoder_parameters(k: int, layers: int = 5, out_channels: int = 3) -> int:
    """Parameter count of ``deep_decoder(k, layers, out_channels)``: (L+1)k² + 2(L+1)k + k·C.

    ``layers + 1`` bias-free k→k 1×1 convolutions, as many BatchNorms (2k each), and the k→C
    output convolution.

    >>> deep_decoder_parameters(128)
    100224
    """
    return (layers + 1) * k * k + 2 * (layers + 1) * k + k * out_channels


def deep_decoder_for(n_params: float, *, layers: int | Sequence[int] = 5, out_channels: int = 3) -> dict:
    """The deep decoder whose parameter count is closest to ``n_params`` in ratio
    (:func:`lipkit.matching.closest_in_ratio`).

    ``layers`` may be a list of depths to choose from as well. Returns ``dict(k, layers,
    parameters, ratio)`` with ``ratio`` = parameters / n_params.

    >>> deep_decoder_for(100_000)["k"]
    128
    >>> deep_decoder_for(603_876)
    {'k': 316, 'layers': 5, 'parameters': 603876, 'ratio': 1.0}
    """
    import math

    if not n_params > 0:
        raise ValueError(f"n_params must be positive, got {n_params}")
    candidates = []  # (depth, k): per depth, the two widths around the real root of the count
    for depth in ([layers] if isinstance(layers, int) else list(layers)):
        if depth < 1:
            raise ValueError(f"layers must be positive, got {depth}")
        a, b = depth + 1, 2 * (depth + 1) + out_channels
        k_real = (-b + math.sqrt(b * b + 4 * a * n_params)) / (2 * a)
        candidates += [(depth, k) for k in sorted({max(1, math.floor(k_real)), max(1, math.ceil(k_real))})]
    depth, k = closest_in_ratio(candidates, lambda c: deep_decoder_parameters(c[1], c[0], out_channels), n_params)
    count = deep_decoder_parameters(k, depth, out_channels)
    return dict(k=k, layers=depth, parameters=count, ratio=round(count / n_params, 4))


def deep_decoder_input(net: DeepDecoder, height: int, width: int, *,
                       generator: torch.Generator | None = None, scale: float = 0.1,
                       device=None) -> torch.Tensor:
    """The deep decoder's fixed input for an H×W output: (1, k, H/2^L, W/2^L), U[0,1)·scale.

    L is the length of the channel list given to :func:`decodernw` (5 for the defaults): a
    512×512 image gets a 16×16 input, as in Heckel & Hand's ``fit``.
    """
    factor = 2 ** len(net.config["num_channels_up"])
    if height % factor or width % factor:
        raise ValueError(
            f"a deep decoder with {len(net.config['num_channels_up'])} levels needs H and W divisible by "
            f"{factor}; got {height}x{width}. Crop the image first (lipkit.data.crop_to_multiple)."
        )
    shape = (1, net.input_channels, height // factor, width // factor)
    return torch.rand(shape, generator=generator, device=device) * scale
