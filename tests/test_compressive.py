import math

import pytest
import torch

from lipkit.operators import CompressiveSensing


def test_lip_preset_rows_noise_and_corruption():
    op = CompressiveSensing((1, 16, 16), m=250, corruption="lip", bad_fraction=0.02, noise_std=0.01, seed=3)
    assert (op.m_good, op.m_bad) == (245, 5)
    assert bool(op.bad_rows[-5:].all()) and not bool(op.bad_rows[:-5].any())
    assert torch.equal(op.A[op.bad_rows], torch.ones(5, 256))
    # clean rows are N(0, 1/m_good): check the entry variance
    assert float(op.A[~op.bad_rows].var()) == pytest.approx(1 / 245, rel=0.05)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    y = op.observe(x, seed=0)
    assert y.shape == (3, 250)
    assert torch.all(y[:, op.bad_rows] == 1e4)
    resid = y[:, ~op.bad_rows] - op(x)[:, ~op.bad_rows]
    assert float(resid.std()) == pytest.approx(0.01, rel=0.15)
    # E|Ax|^2 ~ |x|^2 for the clean rows (the scaling that makes m comparable across sizes)
    ratio = float(op(x)[:, ~op.bad_rows].pow(2).sum() / x.pow(2).sum())
    assert 0.8 < ratio < 1.2


def test_jalal_preset():
    op = CompressiveSensing((3, 8, 8), m=100, corruption="jalal", noise_std=0.01, seed=0)
    assert op.m_bad == 2
    assert torch.allclose(op.A[op.bad_rows], torch.full((2, 192), 1 / math.sqrt(2)))
    # Student-t(4) has variance 2: entries of the clean rows have variance 2/n
    assert float(op.A[~op.bad_rows].var()) == pytest.approx(2 / 192, rel=0.15)
    y = op.observe(torch.zeros(1, 3, 8, 8), seed=1)
    # every row is noisy (t(2) noise), the corrupted rows sit near y = 1
    assert torch.all(y[0, ~op.bad_rows] != 0)
    assert torch.allclose(y[0, op.bad_rows], torch.ones(2), atol=0.5)


def test_none_preset_and_reproducibility():
    op = CompressiveSensing((1, 4, 4), m=10, corruption="none", seed=5)
    assert op.m_bad == 0 and not bool(op.bad_rows.any())
    again = CompressiveSensing((1, 4, 4), m=10, corruption="none", seed=5)
    assert torch.equal(op.A, again.A)
    x = torch.rand(1, 4, 4)
    assert op.observe(x, seed=2).shape == (10,)
    assert torch.equal(op.observe(x, seed=2), op.observe(x, seed=2))
    assert not torch.equal(op.observe(x, seed=2), op.observe(x, seed=3))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="corruption must be one of"):
        CompressiveSensing((1, 4, 4), m=10, corruption="huber")
    with pytest.raises(ValueError, match="bad_fraction"):
        CompressiveSensing((1, 4, 4), m=10, bad_fraction=0.7)
    op = CompressiveSensing((1, 4, 4), m=10)
    with pytest.raises(ValueError, match="measures images shaped"):
        op(torch.zeros(1, 1, 5, 5))
    with pytest.raises(ValueError, match="seed"):
        op.observe(torch.zeros(1, 4, 4))
