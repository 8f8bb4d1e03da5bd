"""Channel pruning of the skip net: every channel is carried by exactly one group, the masks remove
what they say, and the compact network computes exactly what the masked one does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lipkit.pruning.channels import channel_groups, channels_of, compact, dense_channels, parameter_masks, prune_channels
from lipkit.models import network_input, skip_net
from lipkit.pruning.masks import apply_masks
from lipkit.seeding import seeded
from lipkit.pruning.tickets import TicketMismatchError

ARCHES = {"lip": dict(num_channels_down=[8] * 5, num_channels_up=[8] * 5),
          "no skips, no 1x1": dict(num_channels_down=[6, 8, 8], num_channels_up=[8, 6, 8],
                                   num_channels_skip=[0, 0, 0], need1x1_up=False),
          "uneven": dict(num_channels_down=[8, 16, 12], num_channels_up=[16, 8, 12], num_channels_skip=[4, 0, 2]),
          "zero padding, no sigmoid": dict(num_channels_down=[8] * 3, num_channels_up=[8] * 3, num_channels_skip=[2] * 3,
                                           pad="zero", need_sigmoid=False)}


def _net(arch):
    with seeded(0, "weights"):
        return skip_net(**ARCHES[arch])


def _random_channels(net, density: float, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    out = dense_channels(net)
    for name, keep in out.items():
        keep &= torch.rand(len(keep), generator=g) < density
        keep[torch.randint(len(keep), (1,), generator=g)] = True  # at least one channel a group
    return out


@pytest.mark.parametrize("arch", ARCHES)
def test_every_channel_is_in_one_group_and_every_input_channel_is_read_by_its_group(arch):
    net = _net(arch)
    convs = {n: m for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    produced = [g.producer for g in channel_groups(net)]
    final = [n for n in convs if convs[n].out_channels == 3]
    assert sorted(produced + final) == sorted(convs) and len(set(produced)) == len(produced)
    read = {n: 0 for n in convs}
    for g in channel_groups(net):
        for consumer, offset in g.consumers:
            read[consumer] += g.size
    for name, m in convs.items():  # all but the convs that read z take every input channel from groups
        expected = 0 if f"{name}.weight" in [f"{c}.weight" for c in net.input_conv_names] else m.in_channels
        assert read[name] == expected, name


@pytest.mark.parametrize("arch", ARCHES)
def test_the_compact_net_computes_what_the_masked_net_computes(arch):
    net = _net(arch)
    channels = _random_channels(net, 0.5)
    apply_masks(net, parameter_masks(net, channels))
    small = compact(net, channels)
    z = network_input(net, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # BatchNorm in train mode, as DIP uses it: batch statistics
        torch.testing.assert_close(small(z), net(z), atol=1e-5, rtol=1e-4)
    kept = sum(int(c.sum()) for c in channels.values())
    assert sum(m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)) == kept + 3
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())
    # the masked net's zeros are exactly the weights the compact net dropped
    masks = parameter_masks(net, channels)
    conv_weights = [n for n in masks if n.endswith(".weight") and n.replace(".weight", "") in
                    {k for k, m in net.named_modules() if isinstance(m, nn.Conv2d)}]
    small_convs = {n: m for n, m in small.named_modules() if isinstance(m, nn.Conv2d)}
    assert sum(int(masks[n].sum()) for n in conv_weights) == sum(m.weight.numel() for m in small_convs.values())


def test_pruning_removes_the_rate_of_the_kept_channels_by_score_and_keeps_one_a_group():
    net = _net("lip")
    dense = dense_channels(net)
    total = sum(len(v) for v in dense.values())
    once = prune_channels(net, dense, 0.5)
    assert sum(int(v.sum()) for v in once.values()) == total - round(0.5 * total)
    twice = prune_channels(net, once, 0.9, scope="layer")
    assert all(int(v.sum()) >= 1 for v in twice.values())
    assert all((twice[k] <= once[k]).all() for k in once)  # nested, as IMP's levels are
    # the channels removed are the ones with the smallest mean |w|, except a group's last one
    modules = dict(net.named_modules())
    removed = [modules[k].weight[~v].abs().flatten(1).mean(1).max() for k, v in once.items() if (~v).any()]
    kept = [modules[k].weight[v].abs().flatten(1).mean(1).min() for k, v in once.items() if int(v.sum()) > 1]
    assert max(removed) <= min(kept)
    with pytest.raises(ValueError, match="keep at least one"):
        parameter_masks(net, {k: torch.zeros_like(v) for k, v in dense.items()})


def test_channel_imp_removes_whole_channels_and_its_tickets_compact_exactly(tmp_path, mirror_dir):
    from lipkit.lottery.imp import imp
    from lipkit.tasks import make_task

    task = make_task("denoise", "set5/baby", crop=64, iters=3)
    arch = ARCHES["lip"]
    run = imp(task, rounds=2, rate=0.3, seeds=[0], arch=arch, run_dir=tmp_path / "run", workers=1, progress=False,
              structure="channel")
    assert run.config["structure"] == "channel"
    ticket = run.ticket(0, 2)
    net = ticket.build_net()  # rewound to θ0, masks applied
    channels = channels_of(net, ticket.masks)
    total = sum(len(c) for c in channels.values())
    assert sum(int(c.sum()) for c in channels.values()) == total - round(0.3 * total) - round(0.3 * (total - round(0.3 * total)))
    expected = parameter_masks(net, channels)  # whole channels: the masks are exactly their channels' expansion
    assert sorted(ticket.masks) == sorted(expected)
    assert all(torch.equal(ticket.masks[n], expected[n]) for n in expected)
    assert any(n.endswith(".bias") and not bool(m.all()) for n, m in ticket.masks.items())  # BatchNorm shifts too
    z = network_input(net, 64, 64, generator=torch.Generator().manual_seed(3))
    small = ticket.compact()  # the ticket's rewind weights, physically smaller
    with torch.no_grad():
        torch.testing.assert_close(small(z), net(z), atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in small.parameters()) == run.records("imp")[2]["unpruned_params"]
    records = run.records("imp")
    assert [r["round"] for r in records] == [0, 1, 2]
    assert records[2]["unpruned_params"] < records[1]["unpruned_params"] < records[0]["unpruned_params"]
    assert small.config["arch"] == "skip_compact"  # not buildable as a full-width skip net
    with pytest.raises(TicketMismatchError, match="unstructured"):
        imp(task, rounds=1, rate=0.5, seeds=[0], arch=arch, run_dir=tmp_path / "plain", workers=1,
            progress=False).ticket(0, 1).compact()
    with pytest.raises(ValueError, match="no branch baselines"):
        imp(task, rounds=1, seeds=[0], arch=arch, run_dir=tmp_path / "other", structure="channel",
            baselines=["random_global"])
