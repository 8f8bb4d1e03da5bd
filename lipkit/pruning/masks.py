"""Pruning strategies, kept apart from training (as in open_lth).

A *mask set* is a dict ``{parameter name: {0,1} tensor}`` over the convolution weights of
:func:`prunable_weights`, e.g. ``{"1.1.1.1.weight": ...}``; :func:`apply_masks` zeroes them, and
every training loop (:func:`lipkit.fitting.loop.fit`, :func:`lipkit.gan.wgan.train_wgangp`) keeps them at zero. Biases and BatchNorm
parameters are never pruned. The rankings use ``torch.nn.utils.prune``: global L1 (magnitude)
or random unstructured pruning, where ``amount`` applies to the weights that remain, so k rounds
at rate r leave a density of (1-r)^k (up to rounding of one weight per round).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from lipkit.seeding import generator, seeded

Masks = "OrderedDict[str, torch.Tensor]"

PRUNING_CRITERIA = ("magnitude", "random")  # how a round picks the weights it removes


def check_rate(rate: float, what: str = "rate") -> float:
    rate = float(rate)
    if not 0 < rate < 1:
        raise ValueError(f"{what} must be in (0, 1), got {rate}: it is the fraction of the remaining weights removed")
    return rate


def prunable_weights(net: nn.Module) -> "OrderedDict[str, nn.Parameter]":
    """Parameter name -> weight of every Conv2d and ConvTranspose2d, in module order: what LIP
    prunes, in a DIP net and in a GAN's generator and critic alike. Biases, BatchNorm and linear
    layers (PGGAN's format and decision layers) stay dense."""
    return OrderedDict((f"{name}.weight", m.weight) for name, m in net.named_modules()
                       if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def input_weight_names(net: nn.Module) -> list[str]:
    """Weights of the convolutions that read the input z (kept dense by the official code)."""
    names = getattr(net, "input_conv_names", None)
    if names is None:
        raise TypeError(f"{type(net).__name__} does not say which convolutions read its input")
    return [f"{n}.weight" for n in names]


def dense_masks(net: nn.Module) -> "Masks":
    """All-ones float32 masks on the CPU over :func:`prunable_weights` (level 0)."""
    return OrderedDict((n, torch.ones(w.shape)) for n, w in prunable_weights(net).items())


def conv_weights_of(net: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """Parameter name -> detached float32 CPU copy of every prunable weight (what the rankings read)."""
    return OrderedDict((n, w.detach().float().cpu()) for n, w in prunable_weights(net).items())


def check_masks(net: nn.Module, masks: Mapping[str, torch.Tensor],
                device=None) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(parameter, mask) pairs, each mask on the parameter's device and dtype (or ``device``). A
    name that matches no parameter, or a shape that differs, is refused with a message that says which."""
    params = dict(net.named_parameters())
    pairs = []
    for name, mask in masks.items():
        if name not in params:
            close = [p for p in params if p.endswith(name) or name.endswith(p)][:3]
            raise KeyError(f"mask for {name!r} matches no parameter of {type(net).__name__}"
                           + (f" (did you mean {close}?)" if close else ""))
        p = params[name]
        if tuple(mask.shape) != tuple(p.shape):
            raise ValueError(f"mask for {name!r} is {tuple(mask.shape)} but the parameter is {tuple(p.shape)}")
        pairs.append((p, mask.to(device=device or p.device, dtype=p.dtype)))
    return pairs


def apply_masks(net: nn.Module, masks: Mapping[str, torch.Tensor]) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """Zero the pruned weights of ``net`` in place; returns the checked (parameter, mask) pairs
    (:func:`check_masks`), with which a training loop holds the zeros after every step."""
    pairs = check_masks(net, masks)
    hold(pairs)
    return pairs


def hold(pairs) -> None:
    """Zero the pruned weights again after an optimiser step: ``pairs`` from :func:`apply_masks`."""
    with torch.no_grad():
        for p, m in pairs:
            p.mul_(m)


def _holders(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> list[nn.Module]:
    """One throw-away module per tensor, so that torch.nn.utils.prune can rank plain tensors."""
    holders = []
    for name, w in weights.items():
        if name not in masks:
            raise KeyError(f"no mask for {name!r}")
        if masks[name].shape != w.shape:
            raise ValueError(f"mask for {name!r} is {tuple(masks[name].shape)} but the weight is {tuple(w.shape)}")
        h = nn.Module()
        h.register_parameter("weight", nn.Parameter(w.detach().float().cpu().clone(), requires_grad=False))
        prune.custom_from_mask(h, "weight", masks[name].detach().float().cpu())
        holders.append(h)
    return holders


def _prune_at_random(holders, rate: float, seed: int, stream: str, *key) -> None:
    """Random global pruning of ``holders`` by ``rate``, drawn from ``seed``'s ``stream``."""
    with seeded(seed, stream, *key):  # prune.RandomUnstructured draws from torch's global generator
        prune.global_unstructured([(h, "weight") for h in holders], pruning_method=prune.RandomUnstructured,
                                  amount=rate)


def global_prune(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], rate: float, *,
                 criterion: str = "magnitude", keep_dense: Iterable[str] = (), seed: int | None = None,
                 key: tuple = ()) -> "Masks":
    """One round of global unstructured pruning: remove ``rate`` of the remaining weights.

    Args:
        weights: name -> weight tensor (the trained weights for magnitude pruning).
        masks: name -> current {0,1} mask; pruned entries stay pruned.
        rate: fraction of the remaining weights to remove, in (0, 1).
        criterion: "magnitude" (global L1, one threshold over all layers) or "random".
        keep_dense: names ranked as if dense but whose masks are reset to ones afterwards: the
            official code's quirk for the two convolutions that read z.
        seed, key: the random ranking (``criterion="random"``, which needs a seed) draws from the
            ``"pruning"`` stream of ``seed`` with ``key`` (e.g. the round), see :mod:`lipkit.seeding`.
    """
    check_rate(rate)
    if criterion not in PRUNING_CRITERIA:
        raise ValueError(f"criterion must be one of {PRUNING_CRITERIA}, got {criterion!r}")
    keep_dense = set(keep_dense)
    missing = keep_dense - set(weights)
    if missing:
        raise KeyError(f"keep_dense names {sorted(missing)} are not among the pruned weights")
    ranking_masks = {n: (torch.ones_like(m) if n in keep_dense else m) for n, m in masks.items()}
    holders = _holders(weights, ranking_masks)
    if criterion == "random":
        if seed is None:
            raise ValueError("random pruning needs a seed (global_prune(..., criterion='random', seed=...))")
        _prune_at_random(holders, rate, seed, "pruning", *key)
    else:
        prune.global_unstructured([(h, "weight") for h in holders], pruning_method=prune.L1Unstructured, amount=rate)
    out = OrderedDict()
    for name, h in zip(weights, holders):
        out[name] = torch.ones_like(h.weight_mask) if name in keep_dense else h.weight_mask.detach().clone()
    return out


def one_shot_magnitude(weights: Mapping[str, torch.Tensor], sparsity: float, *, keep_dense: Iterable[str] = ()) -> "Masks":
    """Global magnitude pruning straight to ``sparsity`` (fraction of all conv weights removed)."""
    check_rate(sparsity, "sparsity")
    ones = {n: torch.ones_like(w, dtype=torch.float32, device="cpu") for n, w in weights.items()}
    return global_prune(weights, ones, sparsity, criterion="magnitude", keep_dense=keep_dense)


def random_global(shapes: Mapping[str, torch.Tensor], rounds: int, rate: float, *, seed: int,
                  key: tuple = ()) -> list["Masks"]:
    """Masks after 0..``rounds`` rounds of random global pruning at ``rate`` per round.

    Each round removes ``rate`` of the remaining weights once (the official code prunes every
    layer twice per round, ≈36%; that is not copied). Round k draws from ``seed``'s
    ``"baseline"`` stream with key ``("random_global", *key, k)`` (``key`` tells apart weight
    groups ranked separately, such as a GAN's generator and critic).
    """
    check_rate(rate)
    masks = OrderedDict((n, torch.ones(t.shape)) for n, t in shapes.items())
    chain = [masks]
    for k in range(rounds):
        holders = _holders(shapes, masks)
        _prune_at_random(holders, rate, seed, "baseline", "random_global", *key, k)
        masks = OrderedDict((name, h.weight_mask.detach().clone()) for name, h in zip(shapes, holders))
        chain.append(masks)
    return chain


def random_like(reference: Mapping[str, torch.Tensor], *, seed: int, key: tuple = ()) -> "Masks":
    """Random masks with exactly the per-layer number of kept weights of ``reference``.

    Drawn from ``seed``'s ``"baseline"`` stream with key ``("random_like", *key)``.
    """
    g = generator(seed, "baseline", "random_like", *key)
    out = OrderedDict()
    for name, m in reference.items():
        kept = int(m.sum())
        flat = torch.zeros(m.numel())
        flat[torch.randperm(m.numel(), generator=g)[:kept]] = 1
        out[name] = flat.reshape(m.shape)
    return out


def layer_densities(masks: Mapping[str, torch.Tensor]) -> "OrderedDict[str, float]":
    """Fraction of kept weights per layer, in order."""
    return OrderedDict((n, float(m.float().mean())) for n, m in masks.items())


def empty_filters(masks: Mapping[str, torch.Tensor]) -> "OrderedDict[str, int]":
    """Name -> number of output filters (slices along dim 0) of each conv mask that keep no weight.

    Such a filter outputs its bias alone, a constant map: with a whole layer emptied, *layer
    collapse*. :func:`lipkit.fitting.loop.fit` then fits with
    :func:`lipkit.models.exact_constant_channels`. Masks that are not 4-D (a channel ticket's
    biases and BatchNorms) are skipped.
    """
    return OrderedDict((n, int((m.detach().flatten(1) == 0).all(1).sum())) for n, m in masks.items() if m.dim() == 4)


def empty_layers(masks: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the conv weights whose mask keeps no weight at all (layer collapse), in order."""
    return [n for n, m in masks.items() if m.dim() == 4 and not bool(m.detach().any())]


def mask_overlap(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict:
    """Overlap of the kept weights of two mask sets: global and per-layer intersection over union."""
    if list(a) != list(b):
        raise ValueError("the two mask sets cover different layers")
    inter = union = 0
    per_layer = OrderedDict()
    for n in a:
        ka, kb = a[n].bool(), b[n].bool()
        i, u = int((ka & kb).sum()), int((ka | kb).sum())
        per_layer[n] = i / u if u else 1.0
        inter, union = inter + i, union + u
    return {"iou": inter / union if union else 1.0, "per_layer": per_layer}


def sparsity_report(net: nn.Module, masks: Mapping[str, torch.Tensor] | None = None) -> dict:
    """Measured sparsity of ``net`` under ``masks`` (or of its weights as they are).

    Returns conv-weight nonzeros and total, conv sparsity, the unpruned parameters of the whole
    net (kept conv weights plus every bias and BatchNorm parameter: the model size that compares
    with a dense network's parameter count), the parameters that are actually nonzero, the
    density of each conv layer, and the conv layers left without a weight (``empty_layers``:
    layer collapse).
    """
    params = dict(net.named_parameters())
    names = list(prunable_weights(net))
    conv_total = sum(params[n].numel() for n in names)
    if masks is not None:  # conv weights, and for channel pruning the biases and BatchNorms that go with them
        unknown = set(masks) - set(params)
        if unknown:
            raise KeyError(f"masks for {sorted(unknown)} match no parameter of the network")
        kept = {n: (masks[n].cpu() != 0) & (params[n].detach().cpu() != 0) if n in masks else params[n].detach().cpu() != 0
                for n in names}
    else:
        kept = {n: params[n].detach().cpu() != 0 for n in names}
    conv_nonzero = sum(int(k.sum()) for k in kept.values())
    other_nonzero = sum(int((p.detach() != 0).sum()) for n, p in params.items() if n not in kept)
    others = {n: p for n, p in params.items() if n not in kept}
    other_kept = sum(int((masks[n] != 0).sum()) if masks is not None and n in masks else p.numel()
                     for n, p in others.items())
    return {
        "conv_nonzero": conv_nonzero,
        "conv_total": conv_total,
        "conv_sparsity": 1 - conv_nonzero / conv_total,
        "unpruned_params": conv_nonzero + other_kept,
        "nonzero_params": conv_nonzero + other_nonzero,
        "total_params": sum(p.numel() for p in params.values()),
        "layer_density": OrderedDict((n, float(k.float().mean())) for n, k in kept.items()),
        "empty_layers": [n for n, k in kept.items() if not bool(k.any())],
    }


def report_fields(report: Mapping) -> dict:
    """What a record keeps of a :func:`sparsity_report`: the counts, the per-layer densities (in
    layer order) and the emptied layers."""
    return dict(conv_sparsity=report["conv_sparsity"], conv_nonzero=report["conv_nonzero"],
                unpruned_params=report["unpruned_params"], layer_density=list(report["layer_density"].values()),
                empty_layers=report["empty_layers"])


def mask_sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of conv weights removed by ``masks`` (the 4-D ones: channel masks also hold biases
    and BatchNorm parameters)."""
    convs = [m for m in masks.values() if m.dim() == 4] or list(masks.values())
    return 1 - sum(float(m.sum()) for m in convs) / sum(m.numel() for m in convs)


def measured_sparsity(net: nn.Module) -> dict:
    """What fraction of ``net``'s prunable weights is exactly zero, and how many parameters remain.

    Returns ``sparsity`` (zero fraction of the conv weights), ``nonzero`` and ``total`` conv
    weights, and ``params_left``: nonzero conv weights plus every other parameter.
    """
    if not prunable_weights(net):
        raise ValueError(f"{type(net).__name__} has no Conv2d or ConvTranspose2d weights to measure")
    report = sparsity_report(net)
    return dict(sparsity=report["conv_sparsity"], nonzero=report["conv_nonzero"], total=report["conv_total"],
                params_left=report["unpruned_params"])
