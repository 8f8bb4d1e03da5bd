import pytest
import torch

from lipkit.models import skip_net, theta0
from lipkit.pruning.masks import (prunable_weights, conv_weights_of, dense_masks, global_prune, input_weight_names,
                            layer_densities, mask_overlap, mask_sparsity, one_shot_magnitude, random_global,
                            random_like, sparsity_report)
from lipkit.seeding import seeded


def small_net():
    with seeded(0, "weights"):
        return skip_net(num_channels_down=[16] * 5, num_channels_up=[16] * 5)


def test_round_k_sparsity_is_one_minus_point8_to_the_k():
    net = small_net()
    weights, masks = conv_weights_of(net), dense_masks(net)
    total = sum(m.numel() for m in masks.values())
    remaining = total
    for k in range(1, 9):
        masks = global_prune(weights, masks, 0.2)
        remaining -= round(0.2 * remaining)  # torch's prune: the amount applies to what remains
        kept = sum(int(m.sum()) for m in masks.values())
        assert kept == remaining
        assert abs(kept - total * 0.8 ** k) <= k  # one weight of rounding per round at most
        assert sparsity_report(net, masks)["conv_sparsity"] == pytest.approx(1 - kept / total)


def test_magnitude_is_global_and_keeps_the_largest():
    net = small_net()
    weights = conv_weights_of(net)
    masks = global_prune(weights, dense_masks(net), 0.5)
    kept = torch.cat([w[m.bool()].abs() for w, m in zip(weights.values(), masks.values())])
    dropped = torch.cat([w[~m.bool()].abs() for w, m in zip(weights.values(), masks.values())])
    assert kept.min() >= dropped.max()  # one threshold across all layers
    dens = list(layer_densities(masks).values())
    assert max(dens) - min(dens) > 0.2  # layers end up with different densities


def test_pruned_weights_stay_pruned_and_biases_are_never_pruned():
    net = small_net()
    weights = conv_weights_of(net)
    m1 = global_prune(weights, dense_masks(net), 0.3)
    boosted = {n: w * 0 + 100.0 for n, w in weights.items()}  # even if the pruned weights grew back ...
    m2 = global_prune(boosted, m1, 0.3)
    for n in m1:
        assert torch.all(m2[n][m1[n] == 0] == 0)  # ... they stay pruned
    assert all(n.endswith(".weight") for n in m2) and set(m2) == set(prunable_weights(net))


def test_official_quirk_keeps_input_convs_dense():
    net = small_net()
    names = input_weight_names(net)
    assert names == ["1.0.1.1.weight", "1.1.1.1.weight"]
    masks = dense_masks(net)
    for _ in range(3):
        masks = global_prune(conv_weights_of(net), masks, 0.5, keep_dense=names)
    assert all(torch.all(masks[n] == 1) for n in names)
    assert mask_sparsity(masks) < 1 - 0.5 ** 3  # the dense input convs show in the measured sparsity


def test_random_baselines():
    net = small_net()
    shapes = dense_masks(net)
    chain = random_global(shapes, 3, 0.2, seed=0)
    assert [round(mask_sparsity(m), 4) for m in chain] == [0.0, 0.2, 0.36, 0.488]  # not the 36%/round bug
    assert chain[2] is not chain[1] and torch.equal(random_global(shapes, 3, 0.2, seed=0)[3]["1.1.1.1.weight"],
                                                    chain[3]["1.1.1.1.weight"])
    ticket = global_prune(conv_weights_of(net), shapes, 0.7)
    like = random_like(ticket, seed=1)
    for n in ticket:
        assert int(like[n].sum()) == int(ticket[n].sum())  # exactly the ticket's per-layer counts
    assert mask_overlap(ticket, like)["iou"] < 0.5
    assert mask_overlap(ticket, ticket)["iou"] == 1.0


def test_one_shot_magnitude():
    net = small_net()
    masks = one_shot_magnitude(conv_weights_of(net), 0.9)
    assert mask_sparsity(masks) == pytest.approx(0.9, abs=1e-4)


@pytest.mark.parametrize("rate", [0, 1, -0.2, 1.5])
def test_rate_outside_0_1_is_refused(rate):
    net = small_net()
    with pytest.raises(ValueError, match="must be in \\(0, 1\\)"):
        global_prune(conv_weights_of(net), dense_masks(net), rate)


def test_sparsity_report_counts_everything():
    # θ0 of a seed, not the global generator's state: after some draws a weight is exactly 0.0 and is
    # rightly counted as not kept (after tests/test_gan.py's torch.manual_seed(0), one is)
    net = theta0(0)
    rep = sparsity_report(net, dense_masks(net))
    assert rep["conv_total"] == 2_208_768 and rep["unpruned_params"] == 2_217_831
    assert len(rep["layer_density"]) == 26
