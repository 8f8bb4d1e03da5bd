"""The arithmetic of one fitting step: floating-point operations of a forward and backward pass.

Counted by ``torch.utils.flop_counter`` on a copy of the network on the ``meta`` device, so
nothing is computed and any size is free to count. Convolutions and matrix products are
counted (2 per multiply-add); element-wise work (BatchNorm, activations, padding) is not, which
is why time per step does not fall as fast as FLOPs on small images. A masked network is
counted dense: its zeros are multiplied all the same.

>>> from lipkit.models import skip_net
>>> dense, narrow = skip_net(), skip_net(num_channels_down=[64] * 5, num_channels_up=[64] * 5)
>>> round(step_flops(dense, 64, 64) / step_flops(narrow, 64, 64), 1)   # half the width: nearly 4x fewer
3.8
"""

from __future__ import annotations

import copy

import torch


def step_flops(net: torch.nn.Module, height: int, width: int) -> int:
    """FLOPs of one training step of ``net`` (forward and backward, batch of one) for an
    ``height`` × ``width`` px output, with the network's standard input
    (:func:`lipkit.models.network_input`)."""
    from torch.utils.flop_counter import FlopCounterMode

    from lipkit.models import network_input

    shape = network_input(net, height, width).shape  # checks the size; z itself is not needed
    meta = copy.deepcopy(net).to("meta").train()
    z = torch.empty(shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        meta(z).square().mean().backward()
    return int(counter.get_total_flops())
