"""Channel (structured) pruning of the skip net: which channels go together, how they are ranked,
the masks that remove them, and the smaller dense network that computes the same.

A *channel group* is one convolution's output channels with everything that carries them: the
conv's bias, the BatchNorm after it, the slice of a concatenation's BatchNorm they pass through
(the skip and main branches are concatenated), and the input channels of every convolution that
reads them. Removing channel c of a group zeroes all of these. In train-mode BatchNorm a channel
that is zero stays zero only if its scale and shift are zero too (BN(0) = β), which is why the
BatchNorms are masked with the conv. The masks are ordinary lipkit masks (parameter name ->
{0,1} tensor, :func:`lipkit.pruning.masks.apply_masks`), so every fit holds them.

Example::

    >>> from lipkit.models import skip_net
    >>> net = skip_net(num_channels_down=[8] * 5, num_channels_up=[8] * 5)
    >>> groups = channel_groups(net)
    >>> len(groups), sum(g.size for g in groups)   # 5 scales x (skip, 2 down, 2 up convs); channels
    (25, 180)
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

SCORES = ("l1", "bn")
SCOPES = ("global", "layer")


@dataclass
class ChannelGroup:
    """The output channels of conv ``producer`` (a module name) and what carries them.

    ``norms``: (BatchNorm module, offset of these channels in it); ``consumers``: (conv module,
    offset of these channels among its input channels).
    """

    producer: str
    size: int
    norms: list[tuple[str, int]] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)


def _conv(seq) -> nn.Conv2d:
    """The Conv2d of DIP's ``conv`` block ([padding,] conv[, downsampler])."""
    convs = [m for m in seq if isinstance(m, nn.Conv2d)]
    if len(convs) != 1 or not isinstance(seq[-1], nn.Conv2d):
        raise ValueError("channel pruning needs strided downsampling (downsample_mode='stride'); this net "
                         "has a separate downsampling layer")
    return convs[0]


def channel_groups(net) -> list[ChannelGroup]:
    """The channel groups of a skip net (:func:`lipkit.models.skip_net`), scale by scale.

    Per scale: the skip conv (if any), the two convs of the main branch, the 3×3 and 1×1 up
    convs. The final 1×1 conv (the image's channels) and the input z are not prunable.
    """
    if getattr(net, "config", {}).get("arch") != "skip":
        raise TypeError("channel groups are defined for DIP's skip net (lipkit.models.skip_net)")
    cfg = net.config
    names = {id(m): n for n, m in net.named_modules()}
    skips, levels = cfg["num_channels_skip"], len(cfg["num_channels_down"])
    groups: list[ChannelGroup] = []
    seq = net
    previous = None  # the scale above's conv2 group: this scale's input
    above = None     # the scale above's (up conv, concatenation BN, skip width): where this scale's output goes
    for i in range(levels):
        has_skip = skips[i] != 0
        branch = seq[0]
        skip_branch, deeper = list(branch.children()) if has_skip else (None, branch)
        cat_bn, up_conv, up_bn = seq[1], _conv(seq[2]), seq[3]
        one_by_one = cfg["need1x1_up"]
        conv1, bn1, conv2, bn2 = _conv(deeper[0]), deeper[1], _conv(deeper[3]), deeper[4]
        last = i == levels - 1
        if previous is not None:  # the scale above's conv2 output is this scale's input
            previous.consumers.append((names[id(conv1)], 0))
            if has_skip:
                previous.consumers.append((names[id(_conv(skip_branch[0]))], 0))
        if has_skip:
            skip_conv = _conv(skip_branch[0])
            groups.append(ChannelGroup(names[id(skip_conv)], skips[i], [(names[id(skip_branch[1])], 0),
                                                                        (names[id(cat_bn)], 0)],
                                       [(names[id(up_conv)], 0)]))
        groups.append(ChannelGroup(names[id(conv1)], conv1.out_channels, [(names[id(bn1)], 0)],
                                   [(names[id(conv2)], 0)]))
        g2 = ChannelGroup(names[id(conv2)], conv2.out_channels, [(names[id(bn2)], 0)])
        if last:  # the deepest conv2 is upsampled into this scale's concatenation
            g2.norms.append((names[id(cat_bn)], skips[i]))
            g2.consumers.append((names[id(up_conv)], skips[i]))
        groups.append(g2)
        up = ChannelGroup(names[id(up_conv)], up_conv.out_channels, [(names[id(up_bn)], 0)])
        groups.append(up)
        out = up
        if one_by_one:
            conv1x1 = _conv(seq[5])
            up.consumers.append((names[id(conv1x1)], 0))
            out = ChannelGroup(names[id(conv1x1)], conv1x1.out_channels, [(names[id(seq[6])], 0)])
            groups.append(out)
        if above is None:  # scale 0: the final 1x1 conv reads the up path
            final = _conv(net[len(net) - 2]) if cfg["need_sigmoid"] else _conv(net[len(net) - 1])
            out.consumers.append((names[id(final)], 0))
        else:  # the up path is upsampled into the scale above's concatenation
            above_up, above_cat, offset = above
            out.norms.append((names[id(above_cat)], offset))
            out.consumers.append((names[id(above_up)], offset))
        above = (up_conv, cat_bn, skips[i])
        previous = g2
        if not last:
            seq = deeper[6]
    return groups


def dense_channels(net) -> "OrderedDict[str, torch.Tensor]":
    """All-kept channel masks: producer name -> bool vector."""
    return OrderedDict((g.producer, torch.ones(g.size, dtype=torch.bool)) for g in channel_groups(net))


def parameter_masks(net, channels) -> "OrderedDict[str, torch.Tensor]":
    """The {0,1} parameter masks that remove the channels ``channels`` drops: conv rows and
    biases, BatchNorm scale and shift, consumers' input columns. Every conv weight has a mask."""
    modules, params = dict(net.named_modules()), dict(net.named_parameters())
    masks: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    def mask(name: str) -> torch.Tensor:
        if name not in masks:
            masks[name] = torch.ones_like(params[name], dtype=torch.float32)
        return masks[name]

    for name, m in net.named_modules():  # every conv weight, in module order, as lipkit's masks have them
        if isinstance(m, nn.Conv2d):
            mask(f"{name}.weight")
    for g in channel_groups(net):
        keep = channels[g.producer].float()
        if int(keep.sum()) == 0:
            raise ValueError(f"every channel of {g.producer} is removed; keep at least one per group")
        mask(f"{g.producer}.weight").mul_(keep.view(-1, 1, 1, 1))
        if modules[g.producer].bias is not None:
            mask(f"{g.producer}.bias").mul_(keep)
        for norm, offset in g.norms:
            for p in ("weight", "bias"):
                mask(f"{norm}.{p}")[offset:offset + g.size].mul_(keep)
        for consumer, offset in g.consumers:
            mask(f"{consumer}.weight")[:, offset:offset + g.size].mul_(keep.view(1, -1, 1, 1))
    return masks


def _scores(group: ChannelGroup, score: str, weights, random: torch.Generator | None) -> torch.Tensor:
    if score == "random":
        return torch.rand(group.size, generator=random)
    if score == "bn":  # network slimming: the scale of the BatchNorm that follows the conv
        norm, offset = group.norms[0]
        return weights[f"{norm}.weight"].detach()[offset:offset + group.size].abs().cpu()
    w = weights[f"{group.producer}.weight"]
    w = w.detach().abs().flatten(1).cpu()  # mean |w| over a filter's live weights: comparable across fan-ins,
    return w.sum(1) / (w != 0).sum(1).clamp(min=1)  # and not lowered by the inputs pruned before


def channels_of(net, masks) -> "OrderedDict[str, torch.Tensor]":
    """The channel masks that parameter ``masks`` hold: a producer's channel is kept while its
    filter has a kept weight (a group without a mask is whole)."""
    out = dense_channels(net)
    for producer in out:
        if f"{producer}.weight" in masks:
            out[producer] = masks[f"{producer}.weight"].flatten(1).bool().any(1).cpu()
    return out


def prune_channels(net, channels, rate: float, *, score: str = "l1", scope: str = "global", weights=None,
                   seed: int | None = None, key: tuple = ()):
    """The next level's channel masks: ``rate`` of the kept channels removed, by ``score`` (``"l1"``,
    ``"bn"`` or ``"random"``, drawn from ``seed``'s ``"pruning"`` stream with ``key``) of ``weights``
    (name -> tensor; default: ``net``'s own), over all groups (``global``) or in each group
    (``layer``); every group keeps at least one channel. Returns a new dict."""
    if score not in SCORES + ("random",) or scope not in SCOPES:
        raise ValueError(f"score must be one of {SCORES + ('random',)} and scope one of {SCOPES}, "
                         f"got {score!r}, {scope!r}")
    random = None
    if score == "random":
        from lipkit.seeding import generator

        if seed is None:
            raise ValueError("random channel pruning needs a seed")
        random = generator(seed, "pruning", "channels", *key)
    groups = channel_groups(net)
    out = OrderedDict((k, v.clone()) for k, v in channels.items())
    if weights is None:
        weights = dict(net.named_parameters())
    scored = [(g, _scores(g, score, weights, random)) for g in groups]
    if scope == "layer":
        for g, s in scored:
            kept = out[g.producer].nonzero().flatten()
            n = min(int(round(rate * len(kept))), len(kept) - 1)
            out[g.producer][kept[torch.argsort(s[kept])[:n]]] = False
        return out
    candidates = [(float(s[c]), g.producer, int(c)) for g, s in scored for c in out[g.producer].nonzero().flatten()]
    n, removed = int(round(rate * len(candidates))), 0
    for _, producer, c in sorted(candidates):  # lowest first; a group's last channel is passed over
        if removed == n:
            break
        if int(out[producer].sum()) > 1:
            out[producer][c] = False
            removed += 1
    return out


def random_channels_like(channels, *, seed: int, key: tuple = ()) -> "OrderedDict[str, torch.Tensor]":
    """Random channel masks with exactly as many kept channels per group as ``channels``: random
    channel pruning at a ticket's layer widths. Drawn from ``seed``'s ``"baseline"`` stream with key
    ``("random_channels", *key)``."""
    from lipkit.seeding import generator

    g = generator(seed, "baseline", "random_channels", *key)
    out = OrderedDict()
    for producer, keep in channels.items():
        new = torch.zeros(len(keep), dtype=torch.bool)
        new[torch.randperm(len(keep), generator=g)[:int(keep.sum())]] = True
        out[producer] = new
    return out


def random_channels_of(net, masks, *, seed: int) -> "OrderedDict[str, torch.Tensor]":
    """The random channels that stand in for the channel ticket ``masks`` of ``net`` (as many kept
    channels per group): one draw per seed, the same in every study that uses it (chapter 7's race
    and ``transfer --variants random_like``)."""
    return random_channels_like(channels_of(net, masks), seed=seed)


def compact(net, channels) -> nn.Module:
    """A physically smaller copy of ``net`` without the channels ``channels`` drops, with ``net``'s
    current weights: it computes what ``net`` computes under :func:`parameter_masks` (train-mode
    BatchNorm included), to float rounding. Its ``config`` (``arch="skip_compact"``) records the
    kept channel counts."""
    small = copy.deepcopy(net)
    modules = dict(small.named_modules())
    out_keep: dict[str, torch.Tensor] = {}
    in_keep: dict[str, list[tuple[int, torch.Tensor]]] = {}
    norm_keep: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for g in channel_groups(net):
        keep = channels[g.producer].bool()
        out_keep[g.producer] = keep
        for norm, offset in g.norms:
            norm_keep.setdefault(norm, []).append((offset, keep))
        for consumer, offset in g.consumers:
            in_keep.setdefault(consumer, []).append((offset, keep))

    def index(total: int, parts: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
        full = torch.ones(total, dtype=torch.bool)
        for offset, keep in parts:
            full[offset:offset + len(keep)] = keep
        return full.nonzero().flatten()

    with torch.no_grad():
        for name, m in list(modules.items()):
            if isinstance(m, nn.Conv2d):
                rows = index(m.out_channels, [(0, out_keep[name])] if name in out_keep else [])
                cols = index(m.in_channels, in_keep.get(name, []))
                new = nn.Conv2d(len(cols), len(rows), m.kernel_size, m.stride, m.padding, bias=m.bias is not None)
                new.weight.copy_(m.weight[rows][:, cols])
                if m.bias is not None:
                    new.bias.copy_(m.bias[rows])
            elif isinstance(m, nn.BatchNorm2d) and name in norm_keep:
                idx = index(m.num_features, norm_keep[name])
                new = type(m)(len(idx))  # lipkit's BatchNorm, so that per-image statistics still apply
                new.eps, new.momentum = m.eps, m.momentum
                for p in ("weight", "bias", "running_mean", "running_var"):
                    getattr(new, p).copy_(getattr(m, p)[idx])
                new.num_batches_tracked.copy_(m.num_batches_tracked)
            else:
                continue
            parent, _, child = name.rpartition(".")
            setattr(modules[parent] if parent else small, child, new.to(m.weight.device))
    # not a config skip_net() can build: tickets and checks refuse it rather than build the full widths
    small.config = dict(net.config, arch="skip_compact", kept_channels={k: int(v.sum()) for k, v in out_keep.items()})
    return small
