"""S prior networks as one model whose inputs and outputs carry a leading seed axis.

:func:`lipkit.fitting.loop.fit_loop`, the one fitting loop, steps any of these:

- :class:`OneNet` (S = 1): the network as it is, in place, so that a fit of one seed computes
  exactly what a plain training loop computes (channels-last, ``torch.compile`` and backtracking
  available);
- :class:`StackedNets` (S ≥ 1): the S networks' weights stacked along a new leading axis and the
  architecture run under ``torch.func.vmap``, which turns every convolution into a grouped one
  over the seeds: one forward, one backward and one Adam step for all S. Adam works elementwise,
  so the seeds stay independent; :mod:`lipkit.fitting.batched` uses it to fill a GPU.

Both hold their pruned weights at zero with one ``_foreach_mul_`` over the masked tensors
(``hold_masks``). Inputs are (S, N, C, H, W) and outputs (S, N, C, H, W).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from lipkit.pruning.masks import check_masks


class _Masked:
    """The masked tensors and their {0,1} masks, held at zero after every optimiser step."""

    masked: list[torch.Tensor]
    mask_values: list[torch.Tensor]

    def hold_masks(self) -> None:
        if self.masked:
            with torch.no_grad():
                torch._foreach_mul_(self.masked, self.mask_values)  # one call for all masked tensors


class OneNet(_Masked):
    """One network, trained in place. ``z`` is its input (N, C, H, W) and ``masks`` a name ->
    {0,1} tensor dict (or None); with ``channels_last`` the network, its input and masks are in
    that memory format until :meth:`finish`."""

    runs = 1

    def __init__(self, net: nn.Module, z: torch.Tensor, masks: dict | None, device, *, channels_last: bool = False,
                 compile: bool = False):
        self.net, self.channels_last = net, channels_last
        net.to(device)
        net.train()
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        z = z.to(device)
        if channels_last:
            net.to(memory_format=memory_format)
            z = z.contiguous(memory_format=memory_format) if z.dim() == 4 else z
        self.z = z[None]
        pairs = check_masks(net, masks, device) if masks else []
        self.masked = [p for p, _ in pairs]
        self.mask_values = [m.contiguous(memory_format=memory_format) if m.dim() == 4 else m for _, m in pairs]
        self.params = [p for p in net.parameters() if p.requires_grad]
        self._forward = torch.compile(net) if compile else net

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._forward(inputs[0])[None]

    def weights(self) -> list[torch.Tensor]:
        """Every parameter, in order (what backtracking saves and restores)."""
        return list(self.net.parameters())

    def finish(self) -> None:
        """Back to the default memory format, as the caller gave the network."""
        if self.channels_last:
            self.net.to(memory_format=torch.contiguous_format)


class StackedNets(_Masked):
    """``nets`` (one architecture) as one batched model; ``zs`` their inputs (N, C, H, W) and
    ``masks`` one name -> {0,1} dict (or None) each. The weights live in stacked (S, ...) tensors
    until :meth:`finish` copies them back into ``nets``."""

    def __init__(self, nets: Sequence[nn.Module], zs: Sequence[torch.Tensor], masks: Sequence[dict | None], device,
                 *, compile: bool = False):
        from torch.func import functional_call, stack_module_state, vmap

        shapes = [[(k, tuple(v.shape)) for k, v in net.state_dict().items()] for net in nets]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("the batched mode needs networks of one architecture (same parameter names and shapes)")
        self.nets, self.runs = list(nets), len(nets)
        for net in nets:
            net.to(device)
            net.train()
        self.z = torch.stack([z.to(device) for z in zs])
        self.stacked, self.buffers = stack_module_state(nets)  # name -> (S, ...); BatchNorm statistics too
        for net, m in zip(nets, masks):
            if m:
                check_masks(net, m, device)
        names = sorted({name for m in masks if m for name in m})  # a seed without a mask for a tensor gets ones
        self.masked = [self.stacked[name] for name in names]
        self.mask_values = [torch.stack([(m[name] if m and name in m else torch.ones(self.stacked[name].shape[1:]))
                                         .to(device=device, dtype=self.stacked[name].dtype) for m in masks])
                            for name in names]
        self.params = list(self.stacked.values())
        skeleton = copy.deepcopy(nets[0]).to("meta")  # the architecture; weights come from the stacked tensors

        def one_net(p, b, x):
            return functional_call(skeleton, (p, b), (x,))

        batched = vmap(one_net, in_dims=(0, 0, 0))
        self._forward = torch.compile(batched) if compile else batched

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._forward(self.stacked, self.buffers, inputs)

    def finish(self) -> None:
        """Trained weights and statistics back into the caller's networks, as a fit of one leaves them."""
        with torch.no_grad():
            for s, net in enumerate(self.nets):
                for name, t in net.named_parameters():
                    t.copy_(self.stacked[name][s])
                for name, t in net.named_buffers():
                    t.copy_(self.buffers[name][s])
