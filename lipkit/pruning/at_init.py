"""Masks chosen at initialization, before any fitting: OES, SNIP, GraSP and SynFlow, as their
papers define them, and random masks as their floor.

Every strategy ranks the prunable weights of a network at θ0 (the conv weights,
:func:`lipkit.pruning.masks.prunable_weights`, as LIP prunes) and keeps the ``density`` fraction
with the best scores, globally over all layers. The masks are ordinary lipkit masks, so a mask
found here becomes a ticket (:meth:`lipkit.pruning.tickets.Ticket.from_net` with θ0 as the rewind
point) that every fit, chapter and transfer accepts.

- **OES** (Ghosh et al., ICML 2024): keep-probabilities σ(p), one logit per weight from 0, learned
  with θ0 frozen by fitting the masked network to the observation through a concrete (binary
  Gumbel) relaxation m̃ = σ((p + Logistic noise)/τ), τ = 0.2, one sample per step and no
  straight-through estimator, plus λ·KL(Ber(σ(p)) ‖ Ber(density)) with λ = 1e-9, by Adam; the
  hard mask keeps the ``density`` largest logits (global top-k), as the authors' code does. The
  code masks every parameter (BatchNorms and biases too); here, as everywhere in lipkit, only
  the conv weights, so that densities compare with LIP's.
- **SNIP** (Lee et al., ICLR 2019): keep the largest |g ⊙ θ|, g the gradient of the fitting
  loss at θ0 (the network's output on its input z against the observation, through the task's
  operator, BatchNorm in train mode as in a fit).
- **GraSP** (Wang et al., ICLR 2020): score −θ ⊙ Hg (H the loss's Hessian, a Hessian-gradient
  product by double backpropagation) and remove the largest scores: the weights whose removal
  would most reduce the gradient flow stay.
- **SynFlow** (Tanaka et al., NeurIPS 2020): data-free. The network with every weight made
  |θ|, an all-ones input, BatchNorm as in eval mode (its running statistics: at θ0 a scale by
  |γ|/√(1+ε)), no final sigmoid (it would saturate) and no biases; score |θ ⊙ ∂R/∂θ| with R the
  sum of the output, the paper's R = 1ᵀ(∏|W|)1; pruned iteratively, 100 rounds, density^(k/100)
  kept after round k. Computed in float64 so that the products of 30 layers of |θ| neither
  overflow nor vanish. The reference code takes |b| of the biases too; in DIP's skip net the
  biases then carry the flow and the convolutions reading z are pruned away entirely.
  In a net whose every layer maps a spatially constant input to a constant output (reflection
  or replication padding, no zero padding: the LIP skip net), every activation on the all-ones
  input is one number per channel, whatever the size, so R and its gradient grow exactly with
  the output's pixel count: the scores are computed on the smallest input the net takes and
  scaled up (:func:`synflow_scores`), the same scores as at full size to float64 rounding.

- **random**: uniformly random global scores (the ``"mask_search"`` stream): every layer keeps
  about ``density`` of its weights. The floor any strategy has to beat.

:func:`find_masks` runs any of them by name and says what the mask cost: forward-backward passes
through the network (OES: its steps; SNIP: 1; GraSP: 2; SynFlow: its rounds; random: 0) and seconds.

The OES repository's own "snip", "grasp" and "synflow" differ from these (no ×θ, other scopes,
`--sparse` meaning density for some and sparsity for others; ``pruning_at_init.md`` §2).

>>> from lipkit.models import skip_net
>>> from lipkit.seeding import seeded
>>> with seeded(0, "weights"):
...     net = skip_net(num_channels_down=[8] * 5, num_channels_up=[8] * 5)
>>> masks = synflow(net, 64, 64, density=0.2, rounds=10)
>>> round(sum(float(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values()), 3)
0.2
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn

from lipkit.pruning.masks import prunable_weights

INIT_STRATEGIES = ("oes", "snip", "grasp", "synflow", "random")  # masks chosen at θ0, before any fit


def keep_top(scores: Mapping[str, torch.Tensor], density: float) -> "OrderedDict[str, torch.Tensor]":
    """{0,1} float masks keeping the ``density`` fraction (rounded) of all entries with the largest
    scores, over all tensors at once; ties at the threshold are broken by position (stable sort)."""
    if not 0 < density <= 1:
        raise ValueError(f"density (the fraction of weights kept) must be in (0, 1], got {density}")
    flat = torch.cat([s.detach().flatten().double().cpu() for s in scores.values()])
    keep = max(1, int(round(density * flat.numel())))
    chosen = torch.zeros(flat.numel(), dtype=torch.float32)
    chosen[torch.sort(flat, descending=True, stable=True).indices[:keep]] = 1
    out, start = OrderedDict(), 0
    for name, s in scores.items():
        out[name] = chosen[start:start + s.numel()].reshape(s.shape)
        start += s.numel()
    return out


def _fitting_loss(net, operator, observation, net_input):
    y = observation if observation.dim() == 4 else observation[None]
    net.train()  # BatchNorm as in a fit (on a copy: its running statistics move)
    return operator.loss(net(net_input), y)


def snip_scores(net, operator, observation, net_input) -> "OrderedDict[str, torch.Tensor]":
    """|g ⊙ θ| of every prunable weight at the network's current weights (θ0)."""
    net = copy.deepcopy(net)
    weights = prunable_weights(net)
    grads = torch.autograd.grad(_fitting_loss(net, operator, observation, net_input), list(weights.values()))
    return OrderedDict((n, (w.detach() * g).abs()) for (n, w), g in zip(weights.items(), grads))


def grasp_scores(net, operator, observation, net_input) -> "OrderedDict[str, torch.Tensor]":
    """−θ ⊙ Hg of every prunable weight (g, H: gradient and Hessian of the fitting loss at θ0,
    over the prunable weights). The largest scores are the ones GraSP removes."""
    net = copy.deepcopy(net)
    weights = prunable_weights(net)
    params = list(weights.values())
    grads = torch.autograd.grad(_fitting_loss(net, operator, observation, net_input), params, create_graph=True)
    gg = sum((g * g.detach()).sum() for g in grads)  # gᵀ·stop_gradient(g): its gradient is Hg
    hg = torch.autograd.grad(gg, params)
    return OrderedDict((n, -(w.detach() * h)) for (n, w), h in zip(weights.items(), hg))


class _EvalAffine(nn.Module):
    """A BatchNorm as in eval mode with its running statistics, for SynFlow's linearized net."""

    def __init__(self, norm: nn.BatchNorm2d):
        super().__init__()
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        self.weight = nn.Parameter(scale.detach().clone())
        self.bias = nn.Parameter((norm.bias - norm.running_mean * scale).detach().clone())

    def forward(self, x):
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _linearized(net) -> nn.Module:
    """A float64 copy of ``net`` with |θ| everywhere, BatchNorms as eval-mode affines, no sigmoid
    and no biases."""
    copy_ = copy.deepcopy(net).double()
    for name, module in list(copy_.named_modules()):
        if isinstance(module, (nn.BatchNorm2d, nn.Sigmoid)):
            parent_name, _, child = name.rpartition(".")
            parent = copy_.get_submodule(parent_name) if parent_name else copy_
            setattr(parent, child, _EvalAffine(module) if isinstance(module, nn.BatchNorm2d) else nn.Identity())
    with torch.no_grad():
        for name, p in copy_.named_parameters():
            # biases are sources of flow that bypass the input: with them, the convs reading z
            # lose all their weights first (measured on the skip net); R is the paper's 1ᵀ(∏|W|)1
            p.abs_() if not name.endswith("bias") else p.zero_()
    return copy_


def synflow_scores(net, height: int, width: int, masks: Mapping[str, torch.Tensor] | None = None, *,
                   input_shape: tuple | None = None) -> "OrderedDict[str, torch.Tensor]":
    """|θ ⊙ ∂R/∂θ| of every prunable weight, R = sum of the linearized net's output on an all-ones
    input for a ``height`` × ``width`` output (weights under ``masks`` count as zero). Data-free.
    ``input_shape`` replaces the network's standard input shape (for networks lipkit does not know)."""
    return _SynFlowProbe(net, height, width, input_shape).scores(masks)


class _SynFlowProbe:
    """The linearized copy of a net, its all-ones input and the output-size scale, made once for
    all of a search's rounds (a copy per round made a 100-round search of the width-32 net at 64 px
    1.45x slower: 7.0 s against 4.8 s, the same masks)."""

    def __init__(self, net, height: int, width: int, input_shape: tuple | None = None):
        from lipkit.models import network_input

        shape = tuple(input_shape or network_input(net, height, width).shape)
        self.lin = _linearized(net)
        self.weights = prunable_weights(self.lin)
        self.magnitudes = OrderedDict((n, w.detach().clone()) for n, w in self.weights.items())  # |θ|
        self.small = _smallest_input_shape(net, shape) if _maps_constants_to_constants(self.lin) else shape
        self.scale = 1.0
        if self.small != shape:
            with torch.no_grad():  # the outputs' pixel counts, on the meta device: no computation
                meta = copy.deepcopy(self.lin).to("meta")
                self.scale = (meta(torch.ones(shape, dtype=torch.float64, device="meta")).numel()
                              / meta(torch.ones(self.small, dtype=torch.float64, device="meta")).numel())

    def scores(self, masks: Mapping[str, torch.Tensor] | None = None) -> "OrderedDict[str, torch.Tensor]":
        """The scores with the weights under ``masks`` (None: none) set to zero."""
        with torch.no_grad():
            for n, w in self.weights.items():
                w.copy_(self.magnitudes[n])
                if masks is not None:
                    w.mul_(masks[n].to(w))
        out = self.lin(torch.ones(self.small, dtype=torch.float64, device=next(self.lin.parameters()).device))
        grads = torch.autograd.grad(out.sum() * self.scale, list(self.weights.values()))
        return OrderedDict((n, (w.detach() * g).abs()) for (n, w), g in zip(self.weights.items(), grads))


# Layers that map a spatially constant input to a spatially constant output (elementwise maps,
# affines per channel, resampling); convolutions and pooling count when they pad with no zeros.
_CONSTANT_LAYERS = (nn.Identity, nn.LeakyReLU, nn.ReLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Upsample,
                    nn.ReflectionPad2d, nn.ReplicationPad2d)


def _maps_constants_to_constants(lin: nn.Module) -> bool:
    """Whether every module of the linearized ``lin`` keeps a spatially constant input constant:
    Sequentials and ``Concat`` of such, and the layers above; a module lipkit cannot vouch for
    (a transposed or zero-padded conv, a custom forward) says no."""
    from lipkit.models.common import Concat, Swish

    for module in lin.modules():
        if isinstance(module, nn.Conv2d):
            if type(module) is not nn.Conv2d or (any(module.padding) and module.padding_mode == "zeros"):
                return False
        elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
            if module.padding not in (0, (0, 0)):
                return False
        elif not isinstance(module, (nn.Sequential, Concat, Swish, _EvalAffine, *_CONSTANT_LAYERS)):
            return False  # lanczos downsamplers too: at the smallest size their kernel may not fit
    return True


def _smallest_input_shape(net, shape: tuple) -> tuple:
    """The skip net's smallest input of ``shape``'s channels (2·2^levels px square), or ``shape``
    itself for other nets or when it is no larger."""
    from lipkit.models import SkipNet

    if not isinstance(net, SkipNet):
        return shape
    side = 2 * 2 ** net.levels
    return (*shape[:-2], min(side, shape[-2]), min(side, shape[-1]))


def snip(net, operator, observation, net_input, *, density: float) -> "OrderedDict[str, torch.Tensor]":
    """SNIP's masks at ``density`` (fraction of conv weights kept)."""
    return keep_top(snip_scores(net, operator, observation, net_input), density)


def grasp(net, operator, observation, net_input, *, density: float) -> "OrderedDict[str, torch.Tensor]":
    """GraSP's masks at ``density``: the lowest −θ ⊙ Hg are kept."""
    return keep_top(OrderedDict((n, -s) for n, s in grasp_scores(net, operator, observation, net_input).items()),
                    density)


def synflow(net, height: int, width: int, *, density: float, rounds: int = 100,
            input_shape: tuple | None = None) -> "OrderedDict[str, torch.Tensor]":
    """SynFlow's masks at ``density``, pruned in ``rounds`` rounds (density^(k/rounds) after round k)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    probe, masks = _SynFlowProbe(net, height, width, input_shape), None
    for k in range(1, rounds + 1):
        scores = probe.scores(masks)
        if masks is not None:  # a pruned weight stays pruned, even where kept weights score 0 too
            scores = OrderedDict((n, torch.where(masks[n].to(s.device) > 0, s, torch.full_like(s, -1.0)))
                                 for n, s in scores.items())
        masks = keep_top(scores, density ** (k / rounds))
    return masks


def oes(net, operator, observation, net_input, *, density: float, steps: int, lr: float = 0.01,
        temperature: float = 0.2, kl_weight: float = 1e-9, seed: int = 0, history_every: int = 0):
    """OES's masks at ``density`` after ``steps`` Adam steps on the keep-logits (θ0 frozen).

    Returns ``(masks, history)``: ``history`` lists (step, mean keep-probability, fitting loss)
    every ``history_every`` steps (none for 0). The relaxation noise comes from ``seed``'s
    ``"mask_search"`` stream, drawn on ``net_input``'s device (where the search runs). The paper's
    code runs 60,000 steps (80,000 for its Set14 numbers).
    """
    from torch.func import functional_call

    from lipkit.seeding import generator

    if not 0 < density < 1:
        raise ValueError(f"density (the fraction of weights kept) must be in (0, 1), got {density}")
    device = net_input.device
    work = copy.deepcopy(net).to(device).train()  # its BatchNorm statistics move, as in a fit; θ0 does not
    weights = OrderedDict((n, w.detach()) for n, w in prunable_weights(work).items())
    logits = OrderedDict((n, torch.zeros_like(w, requires_grad=True)) for n, w in weights.items())
    prior = torch.tensor(float(density), device=device)
    optimizer = torch.optim.Adam(list(logits.values()), lr=lr)
    noise = generator(seed, "mask_search", device=device)
    y = observation if observation.dim() == 4 else observation[None]
    history = []
    for step in range(1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        masked = {}
        for n, p in logits.items():
            u = torch.rand(p.shape, generator=noise, device=device).clamp_(1e-6, 1 - 1e-6)
            masked[n] = weights[n] * torch.sigmoid((p + torch.log(u) - torch.log1p(-u)) / temperature)
        fit_loss = operator.loss(functional_call(work, masked, (net_input,), strict=False), y)
        q = torch.cat([torch.sigmoid(p).flatten() for p in logits.values()])
        kl = (q * torch.log((q + 1e-6) / (prior + 1e-6))
              + (1 - q) * torch.log((1 - q + 1e-6) / (1 - prior + 1e-6))).sum()
        (fit_loss + kl_weight * kl).backward()
        optimizer.step()
        if history_every and step % history_every == 0:
            history.append((step, float(q.detach().mean()), float(fit_loss.detach())))
    return keep_top(OrderedDict((n, p.detach()) for n, p in logits.items()), density), history


def random_masks(net, *, density: float, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Random masks at ``density``: uniform scores from ``seed``'s ``"mask_search"`` stream."""
    from lipkit.seeding import generator

    noise = generator(seed, "mask_search", "random")
    return keep_top(OrderedDict((n, torch.rand(w.shape, generator=noise)) for n, w in prunable_weights(net).items()),
                    density)


def find_masks(strategy: str, net, operator, observation, net_input, *, density: float, seed: int = 0,
               oes_steps: int = 60000, synflow_rounds: int = 100):
    """The masks of ``strategy`` (one of :data:`INIT_STRATEGIES`) at ``density`` for ``net`` at θ0,
    and their cost: ``(masks, cost)`` with ``cost = {"passes": forward-backward passes, "seconds":
    wall-clock}``. The search runs on ``net_input``'s device; ``operator`` and ``observation``
    (there too) are the task's, ``seed`` the strategy's own randomness (OES, random)."""
    if strategy not in INIT_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {INIT_STRATEGIES}")
    start = time.perf_counter()
    net = copy.deepcopy(net).to(net_input.device)  # the caller's θ0 and operator stay where they are
    operator = copy.deepcopy(operator).to(net_input.device)
    if strategy == "oes":
        masks, _ = oes(net, operator, observation, net_input, density=density, steps=oes_steps, seed=seed)
        passes = oes_steps
    elif strategy == "snip":
        masks, passes = snip(net, operator, observation, net_input, density=density), 1
    elif strategy == "grasp":
        masks, passes = grasp(net, operator, observation, net_input, density=density), 2
    elif strategy == "synflow":
        masks = synflow(net, *net_input.shape[-2:], density=density, rounds=synflow_rounds,
                        input_shape=tuple(net_input.shape))
        passes = synflow_rounds
    else:
        masks, passes = random_masks(net, density=density, seed=seed), 0
    return masks, dict(passes=int(passes), seconds=round(time.perf_counter() - start, 3))
