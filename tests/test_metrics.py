"""The metrics reproduce the DIP paper's numbers from the DIP authors' own output images."""

import math

import numpy as np
import pytest
import torch

from lipkit.metrics import psnr, psnr_y, rgb_to_y
from lipkit.paper import dip_denoising_psnr, dip_sr_psnr

SET5 = ["baby", "bird", "butterfly", "head", "woman"]
SET14 = ["baboon", "barbara", "bridge", "coastguard", "comic", "face", "flowers", "foreman", "lenna", "man",
         "monarch", "pepper", "ppt3", "zebra"]
DENOISE = ["f16", "baboon", "hill", "kodim01", "kodim02", "kodim03", "kodim12", "lena", "peppers"]


def test_psnr_basics():
    x = torch.zeros(3, 4, 4)
    assert psnr(x + 0.1, x) == pytest.approx(20.0)
    assert psnr(x, x) == math.inf
    batch = psnr(torch.stack([x + 0.1, x + 0.01]), torch.stack([x, x]))
    assert batch.shape == (2,) and batch[1] == pytest.approx(40.0)
    with pytest.raises(ValueError, match="same-size"):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 5))


def test_luma_is_bt601_studio_range():
    white, black = torch.ones(3, 1, 1), torch.zeros(3, 1, 1)
    assert float(rgb_to_y(white)) == pytest.approx(235 / 255)
    assert float(rgb_to_y(black)) == pytest.approx(16 / 255)


def test_set5_x4_reproduces_29_90(mirror_dir):
    values = [dip_sr_psnr("set5", n) for n in SET5]
    assert np.mean(values) == pytest.approx(29.90, abs=0.01)
    assert values[0] == pytest.approx(31.49, abs=0.01)  # baby


def test_set14_x4_reproduces_27_01(mirror_dir):
    values = [dip_sr_psnr("set14", n) for n in SET14]
    assert np.mean(values) == pytest.approx(27.01, abs=0.01)
    assert values[SET14.index("zebra")] == pytest.approx(25.71, abs=0.01)


def test_denoising_sigma25_reproduces_31_29(mirror_dir):
    values = [dip_denoising_psnr(n) for n in DENOISE]
    assert np.mean(values) == pytest.approx(31.29, abs=0.01)
    assert values[0] == pytest.approx(33.69, abs=0.01)  # F16


def test_psnr_y_border():
    x, ref = torch.rand(3, 32, 32), torch.rand(3, 32, 32)
    assert psnr_y(x, ref, border=4) == pytest.approx(psnr(rgb_to_y(x)[:, 4:28, 4:28], rgb_to_y(ref)[:, 4:28, 4:28]))
    with pytest.raises(ValueError, match="border"):
        psnr_y(x, ref, border=16)
