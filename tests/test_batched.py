"""Several seeds at once give what fitting each seed alone gives, by every method."""

import numpy as np
import pytest
import torch

from lipkit import seed_everything
from lipkit.batched import default_method, fit_seeds
from lipkit.fit import fit
from lipkit.models import conv_weights, skip_net
from lipkit.operators import Denoising

SEEDS = [0, 1, 2]


def tiny_net(seed=0, width=16):
    seed_everything(seed)
    return skip_net(num_input_channels=8, num_channels_down=[width, width], num_channels_up=[width, width],
                    num_channels_skip=[4, 4])


def smooth_image(h=32, w=32):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([xx, yy, 0.5 * (xx + yy)]).clamp(0, 1)


def seed_masks():
    """Seed 1 is a ticket (a fifth of its conv weights pruned, as one IMP round does); seeds 0 and 2 are dense."""
    gen = torch.Generator().manual_seed(3)
    pruned = {name + ".weight": (torch.rand(w.shape, generator=gen) > 0.2).float()
              for name, w in conv_weights(tiny_net()).items()}
    return [None, pruned, None]


def problem():
    x = smooth_image()
    op = Denoising(0.1)
    return x, op, op.observe(x, seed=0)


def fit_alone(num_iter=8, device="cpu"):
    x, op, y = problem()
    nets = [tiny_net(s) for s in SEEDS]
    results = [fit(net, op, y, settings="denoise", num_iter=num_iter, reference=x, seed=s, masks=m, device=device,
                   progress=False) for net, s, m in zip(nets, SEEDS, seed_masks())]
    return nets, results


def assert_same_fits(alone, together, atol=1e-5):
    (nets_a, res_a), (nets_b, res_b) = alone, together
    for a, b, na, nb, masks in zip(res_a, res_b, nets_a, nets_b, seed_masks()):
        assert a.seed == b.seed and a.iterations == b.iterations
        torch.testing.assert_close(b.output, a.output, atol=atol, rtol=0)
        torch.testing.assert_close(b.clean_output, a.clean_output, atol=atol, rtol=0)
        torch.testing.assert_close(b.best_output, a.best_output, atol=atol, rtol=0)
        np.testing.assert_allclose(b.loss_history, a.loss_history, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(b.psnr_history, a.psnr_history, atol=1e-3)
        np.testing.assert_allclose(b.psnr_avg_history, a.psnr_avg_history, atol=1e-3)
        assert b.best_iteration == a.best_iteration
        # conv weights agree; a bias in front of a BatchNorm does not: its gradient is rounding noise,
        # which Adam scales up to lr-sized steps, and the BatchNorm removes it from the output again
        weights_a, weights_b = conv_weights(na), conv_weights(nb)
        for name in weights_a:
            torch.testing.assert_close(weights_b[name].detach().cpu(), weights_a[name].detach().cpu(),
                                       atol=1e-4, rtol=0)
        for name, m in (masks or {}).items():
            assert torch.all(dict(nb.named_parameters())[name].detach().cpu()[m == 0] == 0), name


def fit_together(method, num_iter=8, device="cpu", **kwargs):
    x, op, y = problem()
    nets = [tiny_net(s) for s in SEEDS]
    results = fit_seeds(nets, op, y, seeds=SEEDS, masks=seed_masks(), settings="denoise", num_iter=num_iter,
                        reference=x, method=method, device=device, **kwargs)
    return nets, results


def test_batched_model_gives_each_seeds_own_fit():
    assert_same_fits(fit_alone(), fit_together("batched"))


def test_worker_processes_give_each_seeds_own_fit():
    assert_same_fits(fit_alone(), fit_together("processes", workers=2))


def test_sequential_is_fit_seed_by_seed():
    alone, together = fit_alone(4), fit_together("sequential", num_iter=4)
    for a, b in zip(alone[1], together[1]):
        assert torch.equal(a.output, b.output)


def test_default_method_follows_the_device():
    assert default_method("cpu") == "processes"
    if torch.cuda.is_available():
        assert default_method("cuda") == "batched"


def test_bad_arguments_are_refused_clearly():
    x, op, y = problem()
    with pytest.raises(ValueError, match="one seed per network"):
        fit_seeds([tiny_net(), tiny_net()], op, y, seeds=[0], device="cpu")
    with pytest.raises(ValueError, match="distinct objects"):
        net = tiny_net()
        fit_seeds([net, net], op, y, seeds=[0, 1], device="cpu")
    with pytest.raises(ValueError, match="method must be one of"):
        fit_seeds([tiny_net()], op, y, seeds=[0], method="magic", device="cpu")
    with pytest.raises(ValueError, match="does not backtrack"):
        fit_seeds([tiny_net()], op, y, seeds=[0], method="batched", backtrack=True, num_iter=1, device="cpu")
    with pytest.raises(ValueError, match="one architecture"):
        fit_seeds([tiny_net(), tiny_net(width=8)], op, y, seeds=[0, 1], method="batched", num_iter=1, device="cpu")
    with pytest.raises(KeyError, match="matches no parameter"):
        fit_seeds([tiny_net()], op, y, seeds=[0], masks=[{"nope.weight": torch.ones(1)}], method="batched",
                  num_iter=1, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batched_model_on_the_gpu():
    assert_same_fits(fit_alone(device="cuda"), fit_together("batched", device="cuda"), atol=1e-4)
    _, results = fit_together("batched", device="cuda", bf16=True, allow_tf32=True)
    assert all(torch.isfinite(r.output).all() for r in results)
