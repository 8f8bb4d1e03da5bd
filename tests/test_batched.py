"""Several seeds at once give what fitting each seed alone gives, in every mode."""

import numpy as np
import pytest
import torch

from lipkit.fitting.batched import default_mode, fit_seeds
from lipkit.fitting.loop import default_input, fit
from lipkit.models import skip_net
from lipkit.pruning.masks import prunable_weights
from lipkit.operators import Denoising
from lipkit.seeding import seeded

SEEDS = [0, 1, 2]


def tiny_net(seed=0, width=16):
    with seeded(seed, "weights"):
        return skip_net(num_input_channels=8, num_channels_down=[width, width], num_channels_up=[width, width],
                        num_channels_skip=[4, 4])


def smooth_image(h=32, w=32):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([xx, yy, 0.5 * (xx + yy)]).clamp(0, 1)


def seed_masks():
    """Seed 1 is a ticket (a fifth of its conv weights pruned, as one IMP round does); seeds 0 and 2 are dense."""
    gen = torch.Generator().manual_seed(3)
    pruned = {name: (torch.rand(w.shape, generator=gen) > 0.2).float()
              for name, w in prunable_weights(tiny_net()).items()}
    return [None, pruned, None]


def problem(dtype=torch.float32):
    x = smooth_image().to(dtype)
    op = Denoising(0.1)
    return x, op, op.observe(x, seed=0)


def inputs(nets, dtype):
    """Each seed's z as fit() draws it; given explicitly (in ``dtype``) to both sides."""
    return [default_input(net, 32, 32, s).to(dtype) for net, s in zip(nets, SEEDS)]


def fit_alone(num_iter=8, device="cpu", dtype=torch.float64):
    x, op, y = problem(dtype)
    nets = [tiny_net(s).to(dtype) for s in SEEDS]
    zs = inputs(nets, dtype)
    results = [fit(net, op, y, settings="denoise", num_iter=num_iter, reference=x, seed=s, masks=m, net_input=z,
                   device=device, progress=False, es_window=3, es_patience=2)
               for net, s, m, z in zip(nets, SEEDS, seed_masks(), zs)]
    return nets, results


def assert_same_fits(alone, together, atol=1e-9):
    # In float64, so that rounding stays far below the tolerance (measured: 3e-15 at most over
    # observation seeds 0-5). In float32 the two sides agree to rounding too, but Adam's first
    # steps (m / sqrt(v)) turn rounding-level gradient differences into lr-sized steps: over 3 to
    # 8 steps the outputs drift apart by 1e-6 to 2e-2, depending on the observation.
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
        assert (b.es_iteration, b.es_stopped) == (a.es_iteration, a.es_stopped)
        np.testing.assert_allclose(b.variance_history, a.variance_history, rtol=1e-6, equal_nan=True)
        torch.testing.assert_close(b.es_output, a.es_output, atol=atol, rtol=0)
        # conv weights agree; a bias in front of a BatchNorm does not: its gradient is rounding noise,
        # which Adam scales up to lr-sized steps, and the BatchNorm removes it from the output again
        weights_a, weights_b = prunable_weights(na), prunable_weights(nb)
        for name in weights_a:
            torch.testing.assert_close(weights_b[name].detach().cpu(), weights_a[name].detach().cpu(),
                                       atol=1e-4, rtol=0)
        for name, m in (masks or {}).items():
            assert torch.all(dict(nb.named_parameters())[name].detach().cpu()[m == 0] == 0), name


def fit_together(mode, num_iter=8, device="cpu", dtype=torch.float64, **kwargs):
    x, op, y = problem(dtype)
    nets = [tiny_net(s).to(dtype) for s in SEEDS]
    results = fit_seeds(nets, op, y, seeds=SEEDS, masks=seed_masks(), settings="denoise", num_iter=num_iter,
                        reference=x, mode=mode, device=device, net_inputs=inputs(nets, dtype), es_window=3,
                        es_patience=2, **kwargs)
    return nets, results


def test_batched_model_gives_each_seeds_own_fit():
    assert_same_fits(fit_alone(), fit_together("batched"))


def test_worker_processes_give_each_seeds_own_fit():
    assert_same_fits(fit_alone(), fit_together("processes", workers=2))


def test_batched_model_draws_each_seeds_own_input_and_noise():
    # float32 and z drawn inside: the first step's output is the same network on the same z + noise
    x, op, y = problem()
    alone = [fit(tiny_net(s), op, y, settings="denoise", num_iter=1, seed=s, progress=False) for s in SEEDS]
    together = fit_seeds([tiny_net(s) for s in SEEDS], op, y, seeds=SEEDS, settings="denoise", num_iter=1,
                         mode="batched", device="cpu")
    for a, b in zip(alone, together):
        torch.testing.assert_close(b.output, a.output, atol=1e-6, rtol=0)
    assert not torch.allclose(together[0].output, together[1].output, atol=1e-3)


def test_sequential_is_fit_seed_by_seed():
    alone, together = fit_alone(4, dtype=torch.float32), fit_together("sequential", num_iter=4, dtype=torch.float32)
    for a, b in zip(alone[1], together[1]):
        assert torch.equal(a.output, b.output)


def test_default_mode_follows_the_device():
    assert default_mode("cpu") == "processes"
    if torch.cuda.is_available():
        assert default_mode("cuda") == "batched"


def test_bad_arguments_are_refused_clearly():
    x, op, y = problem()
    with pytest.raises(ValueError, match="one seed per network"):
        fit_seeds([tiny_net(), tiny_net()], op, y, seeds=[0], device="cpu")
    with pytest.raises(ValueError, match="distinct objects"):
        net = tiny_net()
        fit_seeds([net, net], op, y, seeds=[0, 1], device="cpu")
    with pytest.raises(ValueError, match="mode must be one of"):
        fit_seeds([tiny_net()], op, y, seeds=[0], mode="magic", device="cpu")
    with pytest.raises(ValueError, match="does not backtrack"):
        fit_seeds([tiny_net()], op, y, seeds=[0], mode="batched", backtrack=True, num_iter=1, device="cpu")
    with pytest.raises(ValueError, match="one architecture"):
        fit_seeds([tiny_net(), tiny_net(width=8)], op, y, seeds=[0, 1], mode="batched", num_iter=1, device="cpu")
    with pytest.raises(KeyError, match="matches no parameter"):
        fit_seeds([tiny_net()], op, y, seeds=[0], masks=[{"nope.weight": torch.ones(1)}], mode="batched",
                  num_iter=1, device="cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batched_model_on_the_gpu():
    assert_same_fits(fit_alone(device="cuda"), fit_together("batched", device="cuda"))
    _, results = fit_together("batched", device="cuda", dtype=torch.float32, bf16=True, allow_tf32=True)
    assert all(torch.isfinite(r.output).all() for r in results)


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_bf16_with_fp64_weights_is_refused_in_one_line(mode):
    # on CUDA the backward failed deep inside autograd (an H200 window); now both loops refuse it first
    with pytest.raises(ValueError, match=r"bf16 autocast trains FP32 weights, but the network's are float64"):
        fit_together(mode, bf16=True)
