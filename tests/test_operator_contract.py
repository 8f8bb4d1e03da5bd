"""The contract every degradation operator keeps, checked on each (as deepinv's operator tests do)."""

import pytest
import torch

from lipkit.operators import CompressiveSensing, Denoising, Identity, Inpainting, SuperResolution
from lipkit.operators.base import image_size

SIZE = 32
OPERATORS = {  # name -> (factory, draws random numbers in observe, measures an image)
    "identity": (lambda: Identity(), False, True),
    "denoise": (lambda: Denoising(0.1), True, True),
    "sr2": (lambda: SuperResolution(2), False, True),
    "sr4": (lambda: SuperResolution(4), False, True),
    "inpaint_bernoulli": (lambda: Inpainting.bernoulli((3, SIZE, SIZE), 0.5, seed=0), False, True),
    "inpaint_text": (lambda: Inpainting.text((SIZE, SIZE)), False, True),
    "compressive": (lambda: CompressiveSensing((3, SIZE, SIZE), m=120, corruption="lip", seed=0), True, False),
}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def images(n: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.rand((n, 3, SIZE, SIZE), generator=g, dtype=dtype)


@pytest.fixture(params=sorted(OPERATORS))
def operator(request):
    factory, random, imaging = OPERATORS[request.param]
    return factory(), random, imaging


def test_one_image_and_a_batch_agree(operator):
    op, _, imaging = operator
    x = images(3)
    batch = op(x)
    single = op(x[0])
    assert batch.shape[0] == 3 and tuple(single.shape) == tuple(batch.shape[1:])
    for i in range(3):
        torch.testing.assert_close(op(x[i]), batch[i], rtol=1e-5, atol=1e-6)
    if imaging:
        assert image_size(op, batch) == (SIZE, SIZE)  # the clean size behind an observation


def test_observe_is_reproducible_and_needs_explicit_randomness(operator):
    op, random, _ = operator
    x = images(2)
    a, b = op.observe(x, seed=3), op.observe(x, seed=3)
    assert torch.equal(a, b)
    assert a.shape == op(x).shape
    if random:
        assert not torch.equal(a, op.observe(x, seed=4))
        with pytest.raises(ValueError, match="seed"):
            op.observe(x)
        with pytest.raises(ValueError, match="either"):
            op.observe(x, seed=1, generator=torch.Generator())


def test_loss_is_the_mse_of_the_forward_model(operator):
    op, _, _ = operator
    x, out = images(1), images(2)[1:]
    y = op.observe(x, seed=0)
    expected = torch.nn.functional.mse_loss(op(out), y)
    torch.testing.assert_close(op.loss(out, y), expected)
    out.requires_grad_(True)
    op.loss(out, y).backward()  # differentiable: the fitting loop needs the gradient
    assert out.grad is not None and torch.isfinite(out.grad).all()


@pytest.mark.parametrize("device", DEVICES)
def test_to_moves_buffers_and_keeps_the_numbers(operator, device):
    op, _, _ = operator
    x = images(2)
    expected = op(x)
    op.to(device)
    assert all(b.device.type == device for b in op.buffers())
    torch.testing.assert_close(op(x.to(device)).cpu(), expected, rtol=1e-5, atol=1e-5)
    op.to(torch.float64)
    assert op(images(2, torch.float64).to(device)).dtype == torch.float64
