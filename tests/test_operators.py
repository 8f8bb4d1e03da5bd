import numpy as np
import pytest
import torch

from lipkit.operators import Denoising, Inpainting, SuperResolution, bicubic_upsample
from lipkit.resample import downsampler_kernel


def test_lanczos2_kernel_x4():
    k = downsampler_kernel(4, "lanczos2")
    assert k.shape == (16, 16)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    # extreme taps quoted in the reference (DIP's Downsampler, lanczos2, phase 0.5, x4)
    assert k.min() == pytest.approx(-0.00489, abs=5e-6)
    assert k.max() == pytest.approx(0.05746, abs=5e-6)
    np.testing.assert_allclose(k, k.T)            # separable and symmetric
    np.testing.assert_allclose(k, k[::-1, ::-1])  # centred between pixels (phase 0.5)


def test_lanczos2_kernel_x8_and_operator_kernel():
    assert downsampler_kernel(8, "lanczos2").shape == (32, 32)
    op = SuperResolution(4)
    np.testing.assert_allclose(op.kernel.numpy(), downsampler_kernel(4, "lanczos2"), rtol=1e-6)


def test_super_resolution_shapes_and_values():
    op = SuperResolution(4)
    x = torch.rand(2, 3, 64, 96)
    y = op(x)
    assert y.shape == (2, 3, 16, 24)
    # a constant image stays constant (kernel sums to 1, replication padding)
    assert torch.allclose(op(torch.full((3, 32, 32), 0.3)), torch.full((3, 8, 8), 0.3), atol=1e-6)
    # the depthwise convolution equals DIP's dense diagonal convolution
    k = op.kernel
    dense = torch.zeros(3, 3, *k.shape)
    for c in range(3):
        dense[c, c] = k
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (6, 6, 6, 6), mode="replicate"), dense, stride=4)
    assert torch.allclose(y, ref, atol=1e-6)
    # differentiable
    x.requires_grad_(True)
    op(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_super_resolution_observation_is_pil_lanczos():
    x = torch.rand(3, 32, 48)
    y = SuperResolution(4).observe(x)
    assert y.shape == (3, 8, 12) and y.min() >= 0 and y.max() <= 1
    up = bicubic_upsample(y, 4)
    assert up.shape == x.shape


@pytest.mark.parametrize("factor", [1, 0, 17, 2.5, True])
def test_super_resolution_factor_out_of_range(factor):
    with pytest.raises(ValueError, match="factor"):
        SuperResolution(factor)


@pytest.mark.parametrize("factor", range(2, 17))
def test_every_factor_gives_the_low_resolution_size(factor):
    # odd factors too: their (K - f) padding is odd, and the extra pixel goes after (it was lost: 31 vs 32)
    op = SuperResolution(factor)
    x = torch.rand(1, 3, 6 * factor, 4 * factor)
    assert op(x).shape == (1, 3, 6, 4)
    assert op.observe(x).shape == (1, 3, 6, 4)


@pytest.mark.parametrize("factor", [3, 5])
def test_an_odd_factor_task_is_built_and_fitted(mirror_dir, factor):
    from lipkit.fitting.loop import fit
    from lipkit.models import skip_net
    from lipkit.tasks import make_task

    task = make_task("sr", "set5/baby", factor=factor, crop=32 * factor, iters=2)
    assert task.clean.shape[-1] == 32 * factor and task.observation.shape[-1] == 32
    full = make_task("sr", "set5/baby", factor=factor, iters=2)  # whole image: cut to a multiple of 32 and f
    assert full.clean.shape[-1] % (32 * factor) == 0
    result = fit(skip_net(num_channels_down=[8] * 5, num_channels_up=[8] * 5), task.operator, task.observation,
                 settings=task.settings, reference=task.clean, progress=False)
    assert result.iterations == 2
    with pytest.raises(ValueError, match="multiple of the super-resolution factor 3"):
        make_task("sr", "set5/baby", factor=3, crop=64)


def test_super_resolution_size_not_multiple():
    with pytest.raises(ValueError, match="multiple of the factor 4"):
        SuperResolution(4)(torch.rand(3, 30, 32))


def test_denoising_observation():
    op = Denoising(25 / 255)
    x = torch.full((3, 64, 64), 0.5)
    y1, y2 = op.observe(x, seed=3), op.observe(x, seed=3)
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, op.observe(x, seed=4))
    assert float((y1 - x).std()) == pytest.approx(25 / 255, rel=0.05)
    edge = op.observe(torch.ones(3, 16, 16), seed=0)
    assert edge.max() <= 1 and edge.min() >= 0  # clipped
    assert torch.equal(op(x), x)


@pytest.mark.parametrize("sigma", [0, -0.1, 25, 300])
def test_denoising_sigma_out_of_range(sigma):
    with pytest.raises(ValueError, match="sigma"):
        Denoising(sigma)


def test_denoising_needs_explicit_randomness():
    with pytest.raises(ValueError, match="seed"):
        Denoising(0.1).observe(torch.zeros(3, 4, 4))


def test_inpainting_file_mask(mirror_dir):
    op = Inpainting.from_file("dip/kate_mask")
    assert op.mask.shape == (1, 512, 512)
    assert op.known_fraction == pytest.approx(0.9568, abs=1e-4)
    x = torch.rand(3, 512, 512)
    y = op.observe(x)
    assert torch.equal(y, x * op.mask)


def test_inpainting_bernoulli_per_channel():
    op = Inpainting.bernoulli((3, 128, 128), zero_fraction=0.5, seed=0)
    assert op.mask.shape == (3, 128, 128)
    assert op.known_fraction == pytest.approx(0.5, abs=0.01)
    assert not torch.equal(op.mask[0], op.mask[1])  # independent per channel, as DIP/LIP
    shared = Inpainting.bernoulli((3, 32, 32), 0.5, seed=0, per_channel=False)
    assert shared.mask.shape == (1, 32, 32)
    assert torch.equal(Inpainting.bernoulli((3, 8, 8), 0.5, seed=1).mask,
                       Inpainting.bernoulli((3, 8, 8), 0.5, seed=1).mask)


def test_inpainting_text_mask():
    op = Inpainting.text((128, 128))
    assert op.mask.shape == (1, 128, 128)
    assert 0.02 < 1 - op.known_fraction < 0.5


def test_inpainting_bad_masks():
    op = Inpainting(torch.ones(1, 32, 32))
    with pytest.raises(ValueError, match="mask is 32x32 but the image is 64x64"):
        op(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="0 \\(missing\\) or 1"):
        Inpainting(torch.full((1, 8, 8), 0.5))
    with pytest.raises(ValueError, match="channels"):
        Inpainting(torch.ones(2, 8, 8))(torch.rand(3, 8, 8))
