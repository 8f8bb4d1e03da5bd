"""Image-prior networks: DIP's ``skip`` net and Heckel & Hand's deep decoder."""

from contextlib import contextmanager

import torch
from torch import nn

from lipkit.models.common import BatchNorm2d
from lipkit.models.deep_decoder import (DeepDecoder, decodernw, deep_decoder, deep_decoder_for, deep_decoder_input,
                                       deep_decoder_parameters)
from lipkit.models.skip import SkipNet, dip_input, size_problem, skip_net

__all__ = [
    "SkipNet", "skip_net", "dip_input", "size_problem",
    "DeepDecoder", "decodernw", "deep_decoder", "deep_decoder_input", "deep_decoder_parameters", "deep_decoder_for",
    "count_parameters", "network_input", "per_image_statistics", "exact_constant_channels",
]


@contextmanager
def per_image_statistics(net):
    """Within the block, a batch of N inputs through ``net`` gives the N single-input outputs.

    Every lipkit BatchNorm of ``net`` normalises each image with its own statistics (see
    :class:`lipkit.models.common.BatchNorm2d`). Used to fit several images, each with its own
    input z, through shared weights in one batched call (weight-sharing IMP).
    """
    with _norms_set(net, "per_image"):
        yield net


@contextmanager
def exact_constant_channels(net, enabled: bool = True):
    """Within the block, every lipkit BatchNorm of ``net`` outputs exactly its bias β for an input
    channel that is constant, and passes no gradient back into it (for ``enabled``).

    What a fit needs once a mask empties a conv filter or a whole layer (layer collapse): without
    it, the BatchNorms after the emptied layer blow its rounding noise up to NaN gradients (see
    :func:`lipkit.models.common.live_channels`). Channels that vary are computed as before, bit
    for bit. :func:`lipkit.fitting.loop.fit` turns it on when its masks empty a filter
    (:func:`lipkit.pruning.masks.empty_filters`).
    """
    with _norms_set(net, "exact_constant_channels", enabled):
        yield net


@contextmanager
def _norms_set(net, flag: str, enabled: bool = True):
    """Within the block, ``flag`` is True on every lipkit BatchNorm of ``net`` (when ``enabled``)."""
    norms = [m for m in net.modules() if isinstance(m, BatchNorm2d)] if enabled else []
    saved = [getattr(m, flag) for m in norms]
    for m in norms:
        setattr(m, flag, True)
    try:
        yield
    finally:
        for m, s in zip(norms, saved):
            setattr(m, flag, s)


def theta0(seed: int, build=skip_net, **arch) -> nn.Module:
    """θ0 of ``seed``: ``build(**arch)`` (the skip net by default, or e.g. ``deep_decoder``) with its
    weights drawn from the seed's ``"weights"`` stream, on the CPU whatever torch's default device,
    so that a seed gives the same θ0 on every machine. Every study makes its initial weights here."""
    from lipkit.seeding import seeded

    with seeded(seed, "weights"), torch.device("cpu"):
        return build(**arch)


def network_input(net, height: int, width: int, *, generator=None, device=None):
    """The fixed input z a prior network needs for an H×W output.

    Skip net: DIP's U[0,0.1) noise at full resolution with ``num_input_channels`` channels.
    Deep decoder: U[0,0.1) noise at H/2^L × W/2^L with k channels.
    """
    if isinstance(net, DeepDecoder):
        return deep_decoder_input(net, height, width, generator=generator, device=device)
    if isinstance(net, SkipNet):
        problem = size_problem(net.levels, height, width)
        if problem:
            raise ValueError(problem)
        return dip_input(net.config["num_input_channels"], height, width, generator=generator, device=device)
    raise TypeError(f"don't know the input of {type(net).__name__}; pass net_input explicitly")


def count_parameters(net, *, nonzero: bool = False) -> int:
    """Number of parameters (or of nonzero parameter entries) of ``net``."""
    if nonzero:
        return int(sum(int((p != 0).sum()) for p in net.parameters()))
    return int(sum(p.numel() for p in net.parameters()))


