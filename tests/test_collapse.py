"""Layer collapse: a mask that empties a conv (or one of its filters) still gives a finite fit
that computes what exact arithmetic computes, and IMP goes on past it and reports it."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import mean_colour

from lipkit.fitting.batched import fit_seeds
from lipkit.fitting.loop import collapses, fit
from lipkit.lottery.imp import ImpRun
from lipkit.metrics import psnr_tensor
from lipkit.models import exact_constant_channels, per_image_statistics, skip_net
from lipkit.operators import Identity
from lipkit.pruning.masks import conv_weights_of, dense_masks, empty_filters, empty_layers, one_shot_magnitude, sparsity_report
from lipkit.seeding import seeded

DEEP_FIRST_CONV = "1.1.1.1.weight"  # the deep branch's first conv: everything below level 0 reads it


def _net(width: int, seed: int = 0) -> nn.Module:
    with seeded(seed, "weights"):
        return skip_net(num_channels_down=[width] * 5, num_channels_up=[width] * 5)


def _collapsed(width: int, seed: int = 0):
    net = _net(width, seed)
    masks = dense_masks(net)
    masks[DEEP_FIRST_CONV].zero_()
    with torch.no_grad():
        dict(net.named_parameters())[DEEP_FIRST_CONV].zero_()
    return net, masks


def _step(net, z, target):
    net.zero_grad()
    out = net(z)
    ((out - target) ** 2).mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}


def test_empty_filters_and_layers_are_counted():
    net = _net(8)
    masks = dense_masks(net)
    assert not collapses(masks) and not any(empty_filters(masks).values()) and empty_layers(masks) == []
    masks["3.1.weight"][2] = 0  # one filter of a conv emptied
    assert empty_filters(masks)["3.1.weight"] == 1 and empty_layers(masks) == [] and collapses(masks)
    masks[DEEP_FIRST_CONV].zero_()
    assert empty_layers(masks) == [DEEP_FIRST_CONV] and empty_filters(masks)[DEEP_FIRST_CONV] == 8
    assert sparsity_report(net, masks)["empty_layers"] == [DEEP_FIRST_CONV]


@pytest.mark.parametrize("width", [8, 32])
def test_an_emptied_conv_gives_finite_gradients_and_none_inside_the_dead_branch(width):
    torch.manual_seed(0)
    z, target = torch.rand(1, 32, 64, 64) * 0.1, torch.rand(1, 3, 64, 64)
    net, _ = _collapsed(width)
    with exact_constant_channels(net):
        out, grads = _step(net, z, target)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads.values())
    # in exact arithmetic the branch below the emptied conv is constant, so it learns nothing
    dead = {n: g for n, g in grads.items() if n.startswith("1.1.")}
    assert dead and all(bool((g == 0).all()) for g in dead.values())
    assert grads["3.1.weight"].abs().sum() > 0  # the live part of the net learns


def test_a_collapsed_net_computes_what_exact_arithmetic_does():
    """The emptied branch is a constant per channel, which the BatchNorm after the concatenation
    maps to its bias β: the same output as the net whose branch outputs exact zeros."""

    class Zeros(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.channels = channels

        def forward(self, x):
            return x.new_zeros(x.shape[0], self.channels, *x.shape[2:])

    torch.manual_seed(1)
    net, _ = _collapsed(8)
    with torch.no_grad():
        for m in net.modules():  # a trained net: β and γ away from their initial 0 and 1
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    z = torch.rand(1, 32, 64, 64) * 0.1
    reference = _net(8)
    reference.load_state_dict(net.state_dict())
    reference[0]._modules["1"] = Zeros(8)  # the concatenation's deep branch
    with exact_constant_channels(net), torch.no_grad():
        got = net(z)
    with torch.no_grad():
        want = reference(z)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_live_channels_are_computed_bit_for_bit_as_before():
    torch.manual_seed(2)
    z, target = torch.rand(1, 32, 64, 64) * 0.1, torch.rand(1, 3, 64, 64)
    a, b = _net(8), _net(8)
    out_a, grads_a = _step(a, z, target)
    with exact_constant_channels(b):
        out_b, grads_b = _step(b, z, target)
    assert torch.equal(out_a, out_b) and all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)
    assert all(torch.equal(x, y) for x, y in zip(a.buffers(), b.buffers()))  # running statistics too


def test_per_image_statistics_keep_the_guard():
    torch.manual_seed(3)
    net, _ = _collapsed(8)
    z, target = torch.rand(2, 32, 64, 64) * 0.1, torch.rand(2, 3, 64, 64)
    with per_image_statistics(net), exact_constant_channels(net):
        out, grads = _step(net, z, target)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("width", [8, 32])
def test_a_fit_passes_an_emptied_conv(width):
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    net, masks = _collapsed(width)
    result = fit(net, Identity(), x, masks=masks, num_iter=120, reference=x, progress=False)
    assert result.nonfinite_steps == 0 and torch.isfinite(result.output).all()
    floor = float(psnr_tensor(mean_colour(x), x))  # 10.80 dB
    # it still fits the noise, beyond any constant colour (measured: 11.18 dB at width 8, 12.63 at 32)
    assert result.best_psnr > floor + 0.2, (result.best_psnr, floor)
    assert bool((dict(net.named_parameters())[DEEP_FIRST_CONV] == 0).all())
    assert not any(m.exact_constant_channels for m in net.modules() if hasattr(m, "exact_constant_channels"))


def test_batched_seeds_pass_an_emptied_conv_and_agree_with_fits_alone():
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    pairs = [_collapsed(8, s) for s in (0, 1)]
    alone = [fit(_collapsed(8, s)[0], Identity(), x, masks=m, seed=s, num_iter=30, reference=x, progress=False)
             for s, (_, m) in zip((0, 1), pairs)]
    batched = fit_seeds([n for n, _ in pairs], Identity(), x, seeds=[0, 1], masks=[m for _, m in pairs],
                        mode="batched", num_iter=30, reference=x, device="cpu")
    for a, b in zip(alone, batched):
        assert torch.isfinite(b.output).all()
        assert b.best_psnr == pytest.approx(a.best_psnr, abs=0.05)


def test_the_paper_sparsity_empties_convs_of_the_128_wide_net_and_still_fits():
    net = _net(128)
    masks = one_shot_magnitude(conv_weights_of(net), 0.99)
    assert len(empty_layers(masks)) >= 5  # measured: 15 of 26 convs at 99 % (global magnitude of θ0)
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    result = fit(net, Identity(), x, masks=masks, num_iter=3, reference=x, progress=False, es_window=0)
    assert result.nonfinite_steps == 0 and torch.isfinite(result.output).all()


def test_imp_goes_on_past_layer_collapse_and_reports_it(mirror_dir, tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "lipkit", "imp", "--task", "denoise", "--image", "set5/baby", "--crop", "64",
           "--iters", "30", "--width", "8", "--rate", "0.9", "--rounds", "4", "--workers", "1", "--quiet",
           "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    run = ImpRun(out)
    records = sorted(run.records("imp"), key=lambda r: r["round"])
    assert [r["round"] for r in records] == [0, 1, 2, 3, 4]
    assert all(r["best_psnr"] == r["best_psnr"] and r["final_psnr"] == r["final_psnr"] for r in records)  # no NaN
    collapsed = run.empty_layers()
    assert collapsed and min(collapsed) >= 1 and {str(k): v for k, v in collapsed.items()} == printed["empty_layers"]
    for r in records:
        assert r["empty_layers"] == collapsed.get(r["round"], [])
        assert len(r["empty_layers"]) == sum(d == 0 for d in r["layer_density"])
