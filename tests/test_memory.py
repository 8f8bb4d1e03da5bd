"""The memory estimate a fit is refused by: an upper bound of what a fit really takes, computed
without touching the caller's network."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lipkit.fitting.memory import available_bytes, check_fit_memory, fit_bytes
from lipkit.models import skip_net

# The peak RSS of this process's address space (VmHWM starts afresh at exec; ru_maxrss would carry
# the forking parent's, a large pytest process, across it)
MEASURE = """
import torch
from lipkit.fitting.loop import fit
from lipkit.models import skip_net
from lipkit.operators import Denoising

def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

torch.set_num_threads(1)
net = skip_net(num_channels_down=[{w}] * 5, num_channels_up=[{w}] * 5)
before = peak()
fit(net, Denoising(0.1), torch.rand(3, {side}, {side}), settings="denoise", num_iter=2, progress=False)
print(peak() - before)
"""


@pytest.mark.parametrize("width,side", [(8, 128), (32, 256)])
def test_the_estimate_bounds_the_peak_memory_a_fit_really_takes(width, side):
    code = MEASURE.format(w=width, side=side)
    peak = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    estimate = fit_bytes(skip_net(num_channels_down=[width] * 5, num_channels_up=[width] * 5), side, side)
    assert peak <= estimate <= 4 * peak, (peak, estimate)


def test_activations_scale_with_the_pixels_and_the_net_is_left_as_it_was():
    net = skip_net(num_channels_down=[16] * 5, num_channels_up=[16] * 5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    small, large = fit_bytes(net, 256, 256), fit_bytes(net, 512, 512)
    fixed = fit_bytes(net, 0, 0)  # weights, optimiser state, the runtime
    assert (large - fixed) / (small - fixed) == pytest.approx(4, rel=1e-3)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BatchNorm's stats too


def test_a_fit_that_cannot_fit_is_refused_naming_the_estimate_and_the_way_out(monkeypatch):
    net = skip_net()
    assert 0 < check_fit_memory(net, 64, 64, device="cpu") < available_bytes("cpu")
    monkeypatch.setattr("lipkit.fitting.memory.available_bytes", lambda device: 64 * 2 ** 30)
    with pytest.raises(MemoryError, match=r"4000x3000 px\) needs about 1[0-9]{2}\.[0-9] GiB .* use --crop \d+"):
        check_fit_memory(net, 3000, 4000, device="cpu", what="a photo")
