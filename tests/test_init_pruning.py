"""Masks at initialization: each strategy keeps the density it is asked for, and its scores are
the paper's, checked on a two-weight-per-layer network computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lipkit.pruning import at_init as init_pruning
from lipkit.models import network_input, skip_net
from lipkit.operators import Denoising
from lipkit.seeding import generator, seeded


def _chain(w1, w2):
    """z (1 channel) -> 1x1 conv to 2 channels -> 1x1 conv to 1 channel, no biases."""
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.Conv2d(2, 1, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w1).view(2, 1, 1, 1))
        net[1].weight.copy_(torch.tensor(w2).view(1, 2, 1, 1))
    return net


W1, W2, A, Y = [0.5, -1.5], [2.0, 0.25], 0.8, 0.3


def _by_hand():
    """L = (o − y)², o = a·Σ w1_i w2_i: gradient, Hessian-gradient product, SynFlow's |w1_i||w2_i|."""
    o = A * (W1[0] * W2[0] + W1[1] * W2[1])
    r = o - Y
    g1 = [2 * r * A * W2[i] for i in range(2)]
    g2 = [2 * r * A * W1[i] for i in range(2)]
    # Hessian blocks: d2/dw1i dw1j = 2a² w2i w2j; d2/dw1i dw2j = 2a² w2i w1j + 2ra δij; d2/dw2i dw2j = 2a² w1i w1j
    hg1 = [sum(2 * A * A * W2[i] * W2[j] * g1[j] + (2 * A * A * W2[i] * W1[j] + (2 * r * A if i == j else 0)) * g2[j]
               for j in range(2)) for i in range(2)]
    hg2 = [sum(2 * A * A * W1[i] * W1[j] * g2[j] + (2 * A * A * W2[j] * W1[i] + (2 * r * A if i == j else 0)) * g1[j]
               for j in range(2)) for i in range(2)]
    snip = [abs(W1[i] * g1[i]) for i in range(2)], [abs(W2[i] * g2[i]) for i in range(2)]
    grasp = [-W1[i] * hg1[i] for i in range(2)], [-W2[i] * hg2[i] for i in range(2)]
    synflow = [abs(W1[i] * W2[i]) for i in range(2)], [abs(W1[i] * W2[i]) for i in range(2)]
    return snip, grasp, synflow


def _scores_of(scores):
    return [s.flatten().tolist() for s in scores.values()]


def test_snip_grasp_and_synflow_match_the_hand_computed_scores():
    snip, grasp, synflow = _by_hand()
    z, y = torch.full((1, 1, 1, 1), A), torch.full((1, 1, 1), Y)
    op = Denoising(0.1)  # its loss is the mean squared error against the observation
    got = _scores_of(init_pruning.snip_scores(_chain(W1, W2), op, y, z))
    assert got == [pytest.approx(s) for s in snip]
    got = _scores_of(init_pruning.grasp_scores(_chain(W1, W2), op, y, z))
    assert got == [pytest.approx(s) for s in grasp]
    got = _scores_of(init_pruning.synflow_scores(_chain(W1, W2), 1, 1, input_shape=(1, 1, 1, 1)))
    assert got == [pytest.approx(s) for s in synflow]
    # GraSP removes its largest scores: at half the weights, the two with the lowest −θ⊙Hg stay
    masks = init_pruning.grasp(_chain(W1, W2), op, y, z, density=0.5)
    flat = [v for s in grasp for v in s]
    kept = sorted(range(4), key=lambda i: flat[i])[:2]
    assert [i for i, m in enumerate(torch.cat([m.flatten() for m in masks.values()]).tolist()) if m] == sorted(kept)


@pytest.fixture(scope="module")
def small():
    with seeded(0, "weights"):
        net = skip_net(num_channels_down=[8] * 5, num_channels_up=[8] * 5)
    clean = torch.rand(3, 64, 64, generator=generator(0, "observation"))
    op = Denoising(25 / 255)
    return net, op, op.observe(clean, seed=0), network_input(net, 64, 64, generator=generator(0, "network_input"))


@pytest.mark.parametrize("strategy", init_pruning.INIT_STRATEGIES)
@pytest.mark.parametrize("density", [0.05, 0.2, 0.5])
def test_each_strategy_keeps_the_density_it_is_asked_for(small, strategy, density):
    net, op, y, z = small
    before = {k: v.clone() for k, v in net.state_dict().items()}
    masks, cost = init_pruning.find_masks(strategy, net, op, y, z, density=density, oes_steps=3, synflow_rounds=5)
    assert cost["passes"] == {"oes": 3, "snip": 1, "grasp": 2, "synflow": 5, "random": 0}[strategy]
    assert cost["seconds"] >= 0
    kept = sum(float(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert kept == round(density * total)  # measured, not nominal
    assert set(masks) == {n for n, p in net.named_parameters() if p.dim() == 4}
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # θ0 untouched


def test_synflow_is_data_free_and_keeps_the_input_connected_at_high_sparsity(small):
    net, op, y, z = small
    masks = init_pruning.synflow(net, 64, 64, density=0.02, rounds=30)
    # the flow from z to the output survives (with the biases' flow counted, the convs reading z went)
    assert sum(float(s.sum()) for s in init_pruning.synflow_scores(net, 64, 64, masks).values()) > 0
    assert any(float(masks[f"{name}.weight"].sum()) > 0 for name in net.input_conv_names)
    again = init_pruning.synflow(net, 64, 64, density=0.02, rounds=30)
    assert all(torch.equal(masks[k], again[k]) for k in masks)  # no data and no randomness: one mask


@pytest.mark.parametrize("pad", ["reflection", "zero"])
def test_synflow_on_the_smallest_input_gives_the_full_size_scores(pad, monkeypatch):
    """On the all-ones input a reflection-padded skip net's activations are constant per channel,
    so its scores come from the 64 px input, scaled; a zero-padded one is computed at full size."""
    with seeded(3, "weights"):
        net = skip_net(num_channels_down=[8] * 5, num_channels_up=[8] * 5, num_channels_skip=[4] * 5, pad=pad)
    lin = init_pruning._linearized(net)
    assert init_pruning._maps_constants_to_constants(lin) == (pad == "reflection")
    shape = tuple(network_input(net, 192, 128).shape)
    fast = init_pruning.synflow_scores(net, 192, 128, input_shape=shape)  # as find_masks calls it
    masks = init_pruning.synflow(net, 192, 128, density=0.05, rounds=5, input_shape=shape)
    if pad == "reflection":
        assert init_pruning._smallest_input_shape(net, shape) == (1, 32, 64, 64)
    monkeypatch.setattr(init_pruning, "_smallest_input_shape", lambda net, shape: shape)  # always full size
    full = init_pruning.synflow_scores(net, 192, 128, input_shape=shape)
    for name in full:
        torch.testing.assert_close(fast[name], full[name], rtol=1e-11, atol=0.0)
    masks_full = init_pruning.synflow(net, 192, 128, density=0.05, rounds=5, input_shape=shape)
    assert all(torch.equal(masks[k], masks_full[k]) for k in masks)


def test_random_masks_are_the_seeds_own_and_spread_over_the_layers(small):
    net = small[0]
    a, b = init_pruning.random_masks(net, density=0.2, seed=0), init_pruning.random_masks(net, density=0.2, seed=1)
    assert all(torch.equal(a[k], init_pruning.random_masks(net, density=0.2, seed=0)[k]) for k in a)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    big = [k for k, m in a.items() if m.numel() >= 500]  # layers large enough for the fraction to settle
    assert big and all(abs(float(a[k].mean()) - 0.2) < 0.06 for k in big)


def test_keep_top_refuses_a_density_outside_0_1():
    with pytest.raises(ValueError, match="fraction of weights kept"):
        init_pruning.keep_top({"w": torch.ones(3)}, 0.0)


def test_oes_moves_its_keep_probabilities_towards_the_target_density(small):
    net, op, y, z = small
    before = {k: v.clone() for k, v in net.state_dict().items()}
    masks, history = init_pruning.oes(net, op, y, z, density=0.05, steps=60, lr=0.05, history_every=20)
    means = [m for _, m, _ in history]
    assert means[0] < 0.5 and means[-1] < means[0]  # from 0.5 (logit 0) down towards 0.05
    kept = sum(float(m.sum()) for m in masks.values())
    assert kept == round(0.05 * sum(m.numel() for m in masks.values()))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # θ0 frozen
    again, _ = init_pruning.oes(net, op, y, z, density=0.05, steps=60, lr=0.05)
    assert all(torch.equal(masks[k], again[k]) for k in masks)  # its noise is the seed's own stream
    other, _ = init_pruning.oes(net, op, y, z, density=0.05, steps=60, lr=0.05, seed=1)
    assert any(not torch.equal(masks[k], other[k]) for k in masks)


def test_a_synflow_search_scores_each_round_as_a_fresh_linearized_copy_would(small):
    """The search linearizes the net once; each round's scores equal :func:`synflow_scores` of a
    fresh copy under the same masks, whatever masks came before (here: an unrelated one first)."""
    net = small[0]
    probe = init_pruning._SynFlowProbe(net, 64, 64)
    unrelated = init_pruning.random_masks(net, density=0.3, seed=5)
    later = init_pruning.random_masks(net, density=0.6, seed=6)
    for masks in (unrelated, None, later):
        got, fresh = probe.scores(masks), init_pruning.synflow_scores(net, 64, 64, masks)
        assert all(torch.equal(got[n], fresh[n]) for n in fresh)
    rounds, masks = 4, None  # the search, round by round, from fresh copies: the same masks
    for k in range(1, rounds + 1):
        scores = init_pruning.synflow_scores(net, 64, 64, masks)
        if masks is not None:
            scores = {n: torch.where(masks[n] > 0, s, torch.full_like(s, -1.0)) for n, s in scores.items()}
        masks = init_pruning.keep_top(scores, 0.1 ** (k / rounds))
    searched = init_pruning.synflow(net, 64, 64, density=0.1, rounds=rounds)
    assert all(torch.equal(searched[n], masks[n]) for n in masks)
