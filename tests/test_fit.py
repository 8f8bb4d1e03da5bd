
import dataclasses
import numpy as np
import pytest
import torch

from lipkit.device import DeviceError
from lipkit.fitting.loop import FitDivergedError, Snapshots, fit
from lipkit.metrics import psnr
from lipkit.models import deep_decoder, skip_net
from lipkit.operators import Denoising, Inpainting, SuperResolution
from lipkit.pruning.masks import prunable_weights
from lipkit.fitting.settings import PRESETS, FitSettings
from lipkit.seeding import seeded


def tiny_net(seed=0):
    with seeded(seed, "weights"):
        return skip_net(num_input_channels=8, num_channels_down=[16, 16], num_channels_up=[16, 16],
                        num_channels_skip=[4, 4])


def smooth_image(h=32, w=32):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([xx, yy, 0.5 * (xx + yy)]).clamp(0, 1)


def test_same_seed_same_result_on_cpu():
    x = smooth_image()
    op = Denoising(0.1)
    y = op.observe(x, seed=0)
    runs = [fit(tiny_net(), op, y, settings="denoise", num_iter=15, reference=x, seed=5, device="cpu",
                progress=False) for _ in range(2)]
    assert torch.equal(runs[0].output, runs[1].output)
    np.testing.assert_array_equal(runs[0].psnr_history, runs[1].psnr_history)
    other = fit(tiny_net(), op, y, settings="denoise", num_iter=15, reference=x, seed=6, device="cpu",
                progress=False)
    assert not torch.equal(runs[0].output, other.output)


def test_fit_learns_and_reports_consistently():
    x = smooth_image()
    op = Denoising(0.1)
    y = op.observe(x, seed=0)
    r = fit(tiny_net(), op, y, num_iter=120, reference=x, exp_weight=0.9, progress=False)
    assert r.loss_history[-1] < r.loss_history[0] * 0.5
    assert r.tracked == "avg" and len(r.psnr_avg_history) == 120
    assert r.best_psnr == pytest.approx(r.psnr_avg_history.max())
    assert r.final_psnr == pytest.approx(r.psnr_avg_history[-1])
    assert r.best_psnr == pytest.approx(psnr(r.best_output, x), abs=1e-3)
    assert r.final_psnr == pytest.approx(psnr(r.output, x), abs=1e-3)
    assert r.best_psnr > psnr(y, x)  # fits structure before noise
    assert r.clean_output.shape == x.shape


def test_masks_hold_pruned_weights_at_zero():
    net = tiny_net()
    masks = {}
    for name, w in prunable_weights(net).items():
        masks[name] = (torch.rand(w.shape) > 0.7).float()
    x = smooth_image()
    op = Inpainting.bernoulli((3, 32, 32), 0.5, seed=0)
    start = {name: w.detach().clone() for name, w in prunable_weights(net).items()}
    fit(net, op, op.observe(x), num_iter=25, masks=masks, progress=False, reg_noise_std=0.03)
    params = dict(net.named_parameters())
    moved = []
    for name, m in masks.items():
        w = params[name]
        assert torch.all(w[m == 0] == 0), name
        moved.append((w != start[name])[m == 1])
        assert moved[-1].any(), name
    # the others did train (measured: 98 % of them moved; a few filters see no gradient through the masks)
    assert float(torch.cat(moved).float().mean()) > 0.9


def test_masks_are_validated():
    net = tiny_net()
    op = Denoising(0.1)
    y = op.observe(smooth_image(), seed=0)
    with pytest.raises(KeyError, match="matches no parameter"):
        fit(net, op, y, num_iter=1, masks={"nope.weight": torch.ones(1)}, progress=False)
    name = next(iter(prunable_weights(net)))
    with pytest.raises(ValueError, match="but the parameter is"):
        fit(net, op, y, num_iter=1, masks={name: torch.ones(1)}, progress=False)


def test_super_resolution_and_deep_decoder_use_the_same_loop():
    x = smooth_image(32, 32)
    op = SuperResolution(4)
    r = fit(tiny_net(), op, op.observe(x), settings="sr4", num_iter=5, reference=x, progress=False)
    assert r.output.shape == (3, 32, 32)
    dd = deep_decoder(8, layers=3)
    r = fit(dd, Denoising(0.1), Denoising(0.1).observe(x, seed=0), settings="deep_decoder", num_iter=5,
            reference=x, progress=False)
    assert r.output.shape == (3, 32, 32) and r.tracked == "raw"


def test_callbacks_snapshots_and_stop():
    x = smooth_image()
    op = Denoising(0.1)
    snaps = Snapshots(every=4, num_iter=10)
    seen = []

    def stop_at_7(state):
        seen.append(state.iteration)
        return state.iteration == 6

    r = fit(tiny_net(), op, op.observe(x, seed=0), num_iter=10, callbacks=[snaps, stop_at_7], progress=False)
    assert r.stopped_early and r.iterations == 7 and seen == list(range(7))
    assert [i for i, _ in snaps.frames] == [3]


def test_a_given_loss_fn_is_what_the_fit_minimises():
    # weight sharing (lipkit.lottery.weight_sharing) passes its objective as loss_fn: a fit that
    # fell back to the operator's loss would fit the observation instead of the objective's target
    x = smooth_image()
    op = Denoising(0.1)
    y = op.observe(x, seed=0)
    target = 1 - x

    def to_target(out, observation):
        return ((out - target) ** 2).mean()

    r = fit(tiny_net(), op, y, num_iter=120, loss_fn=to_target, progress=False)
    assert psnr(r.output, target) > psnr(r.output, y) + 10


def test_divergence_is_detected():
    x = smooth_image()
    op = Denoising(0.1)

    def nan_loss(out, y):
        return ((out - y) ** 2).mean() * float("nan")

    with pytest.raises(FitDivergedError, match="iteration 0"):
        fit(tiny_net(), op, op.observe(x, seed=0), num_iter=3, loss_fn=nan_loss, progress=False)


class GlitchyDenoising(Denoising):
    """Denoising whose forward goes wrong while ``glitch`` is set, to force a PSNR drop."""

    glitch = False

    def forward(self, x):
        return x + 0.5 if self.glitch else x


def test_backtracking_restores_after_a_drop():
    x = smooth_image()
    op = GlitchyDenoising(0.05)
    y = op.observe(x, seed=0)
    net = tiny_net()
    saved = {}

    def glitch_at_10(state):
        op.glitch = state.iteration == 9  # active during iteration 10 only
        if state.iteration == 8:  # weights after step 9 = those of the last good forward (it. 10)
            saved.update({k: v.detach().clone() for k, v in state.net.named_parameters()})
        if state.iteration == 10:
            for k, v in state.net.named_parameters():  # restored to the last good weights, no step
                assert torch.equal(v, saved[k]), k

    r = fit(net, op, y, num_iter=15, backtrack=True, callbacks=[glitch_at_10], progress=False)
    assert r.backtracks == [10]


def test_settings_validation_and_presets():
    assert PRESETS["denoise"].reg_noise_std == pytest.approx(1 / 30) and PRESETS["denoise"].exp_weight == 0.99
    assert PRESETS["sr4"].num_iter == 2000 and PRESETS["sr4"].reg_noise_std == 0.03
    assert PRESETS["inpaint"].num_iter == 3000
    with pytest.raises(ValueError, match="num_iter"):
        FitSettings(num_iter=0)
    with pytest.raises(KeyError, match="unknown preset"):
        fit(tiny_net(), Denoising(0.1), torch.zeros(3, 32, 32), settings="nope", progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_one_is_a_clear_error():
    with pytest.raises(DeviceError, match="no usable CUDA"):
        fit(tiny_net(), Denoising(0.1), torch.zeros(3, 32, 32), num_iter=1, device="cuda", progress=False)


def test_tf32_is_off_during_a_fit_and_restored_after():
    seen = []
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)

    def look(state):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))

    x = smooth_image()
    fit(tiny_net(), Denoising(0.1), x, num_iter=2, callbacks=[look], progress=False)
    assert seen == [(False, False)] * 2
    fit(tiny_net(), Denoising(0.1), x, num_iter=1, callbacks=[look], progress=False, allow_tf32=True)
    assert seen[-1] == (True, True)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_a_nan_output_never_enters_the_average():
    class NaNAt(Denoising):
        calls = 0

        def loss(self, out, y):
            NaNAt.calls += 1
            value = super().loss(out, y)
            return value * float("nan") if NaNAt.calls in (1, 7) else value

    x = smooth_image()
    op = NaNAt(0.1)
    r = fit(tiny_net(), op, op.observe(x, seed=0), num_iter=20, exp_weight=0.9, backtrack=True, reference=x,
            progress=False)
    assert torch.isfinite(r.output).all() and np.isfinite(r.best_psnr) and np.isfinite(r.final_psnr)
    assert np.isnan(r.psnr_avg_history[0]) and np.all(np.isfinite(r.psnr_avg_history[1:]))


def test_fused_adam_is_deterministic_and_freed_memory_is_kept():
    from lipkit.runtime import keep_freed_memory, make_adam

    assert isinstance(keep_freed_memory(), bool)
    assert not make_adam(tiny_net().parameters(), 0.01).defaults["fused"]  # the reference Adam by default
    opt = make_adam(tiny_net().parameters(), 0.01, fused=True)
    assert opt.defaults["lr"] == 0.01 and opt.defaults["fused"]  # the CPU has a fused Adam kernel
    x = smooth_image()
    op = Denoising(0.1)
    y = op.observe(x, seed=0)
    runs = [fit(tiny_net(), op, y, settings="denoise", num_iter=10, seed=1, device="cpu", progress=False,
                fused_adam=fused) for fused in (True, True, False)]
    np.testing.assert_array_equal(runs[0].loss_history, runs[1].loss_history)
    assert not np.array_equal(runs[0].loss_history, runs[2].loss_history)  # it does round differently


def test_backtracking_snapshots_follow_the_weights():
    """The snapshot buffers are reused: a second backtrack restores the newer good weights."""
    x = smooth_image()
    op = GlitchyDenoising(0.05)
    y = op.observe(x, seed=0)
    saved = {}

    def glitch(state):
        op.glitch = state.iteration in (9, 19)
        if state.iteration == 18:
            saved.update({k: v.detach().clone() for k, v in state.net.named_parameters()})
        if state.iteration == 20:
            for k, v in state.net.named_parameters():
                assert torch.equal(v, saved[k]), k

    r = fit(tiny_net(), op, y, num_iter=22, backtrack=True, callbacks=[glitch], progress=False)
    assert r.backtracks == [10, 20]


def test_channels_last_and_bf16_options_on_the_cpu():
    x = smooth_image()
    op = Denoising(0.1)
    y = op.observe(x, seed=0)
    plain = fit(tiny_net(), op, y, settings="denoise", num_iter=6, reference=x, seed=2, progress=False)
    net = tiny_net()
    cl = fit(net, op, y, settings="denoise", num_iter=6, reference=x, seed=2, progress=False, channels_last=True)
    torch.testing.assert_close(cl.output, plain.output, atol=1e-4, rtol=0)
    assert cl.output.is_contiguous() and all(p.is_contiguous() for p in net.parameters())
    half = fit(tiny_net(), op, y, settings="denoise", num_iter=6, reference=x, seed=2, progress=False, bf16=True)
    assert half.output.dtype == torch.float32 and torch.isfinite(half.output).all()
    assert not torch.equal(half.output, plain.output)  # bf16 is not the exact reproduction
    torch.testing.assert_close(half.output, plain.output, atol=0.05, rtol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_path_options():
    x = smooth_image()
    op = Denoising(0.1)
    y = op.observe(x, seed=0)
    plain = fit(tiny_net(), op, y, settings="denoise", num_iter=6, reference=x, device="cuda", progress=False)
    fast = fit(tiny_net(), op, y, settings="denoise", num_iter=6, reference=x, device="cuda", progress=False,
               channels_last=True, allow_tf32=True, bf16=True, compile=True)
    assert plain.device.startswith("cuda") and torch.isfinite(fast.output).all()
    torch.testing.assert_close(fast.output, plain.output, atol=0.05, rtol=0)


def test_a_collapsed_fit_earns_a_warning(mirror_dir):
    import warnings

    from lipkit.tasks import make_task

    task = make_task("denoise", "set5/baby", crop=64, iters=150)
    lip = dict(num_channels_down=[32] * 5, num_channels_up=[32] * 5)
    with pytest.warns(UserWarning, match="the fit collapsed"):  # measured: output std 0.02, loss 2.6x a flat image's
        fit(skip_net(**lip), task.operator, task.observation, settings=task.settings, lr=10.0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and a sound fit does not
        fit(skip_net(**lip), task.operator, task.observation, settings=task.settings, progress=False)


def test_one_seed_is_a_plain_training_loop_bit_for_bit():
    # fit() runs the loop written over a seed axis (lipkit.fitting.loop.fit_loop); for one network it must
    # compute exactly what the plain DIP loop computes: Adam on net(z + σ·n), masks held at zero
    from lipkit.fitting.loop import default_input, step_noise_generator

    x = smooth_image()
    op = Denoising(0.1)
    y = op.observe(x, seed=0)
    gen = torch.Generator().manual_seed(5)
    masks = {name: (torch.rand(w.shape, generator=gen) > 0.3).float()
             for name, w in prunable_weights(tiny_net()).items()}
    settings = dataclasses.replace(PRESETS["denoise"], num_iter=12, exp_weight=None)
    net = tiny_net()
    result = fit(net, op, y, settings=settings, masks=masks, reference=x, seed=4, progress=False)

    plain = tiny_net()
    weights = dict(plain.named_parameters())
    z, noise = default_input(plain, 32, 32, 4), step_noise_generator(4, "cpu")
    with torch.no_grad():
        for name, m in masks.items():
            weights[name].mul_(m)
    optimizer = torch.optim.Adam(plain.parameters(), lr=settings.lr)
    losses = []
    for _ in range(settings.num_iter):
        optimizer.zero_grad()
        out = plain(z + settings.reg_noise_std * torch.randn(z.shape, generator=noise))
        loss = op.loss(out, y[None])
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for name, m in masks.items():
                weights[name].mul_(m)
        losses.append(float(loss.detach()))
    assert torch.equal(result.output, out.detach()[0])
    np.testing.assert_array_equal(result.loss_history, np.array(losses, dtype=np.float32))
    trained = dict(net.named_parameters())  # (not the BatchNorm statistics: fit's last, noise-free output moves them)
    for name, value in weights.items():
        assert torch.equal(trained[name], value), name
