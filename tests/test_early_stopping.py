"""ES-WMV: the early-stopping rule every record reports beside the oracle and the final PSNR."""

import math

import numpy as np
import pytest
import torch

from lipkit.fitting.early_stopping import ESWMV
from lipkit.fitting.loop import fit
from lipkit.metrics import psnr
from lipkit.models import skip_net
from lipkit.operators import Denoising
from lipkit.seeding import seeded
from lipkit.fitting.settings import FitSettings


def synthetic_run(steps=1200, peak=400, seed=0, size=(3, 16, 16)):
    """Outputs that settle towards the clean image until ``peak`` and then jitter more and more:
    the PSNR against the clean image and the output's steadiness both peak at ``peak``."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(size, generator=g)
    frames = []
    for t in range(steps):
        jitter = 0.01 + 0.0002 * abs(t - peak)
        frames.append((clean + jitter * torch.randn(size, generator=g))[None])
    return clean, frames


def official_eswmv(frames, window, patience):
    """The official notebook's algorithm (list buffer, NumPy variance), as the reference."""
    buffer, best, best_at, wait, stopped = [], math.inf, 0, 0, False
    for t, x in enumerate(frames):
        buffer.append(x.flatten().numpy().astype(np.float64))
        if len(buffer) > window:
            buffer.pop(0)
        if len(buffer) == window:
            mean = np.mean(buffer, axis=0)
            var = np.mean([((mean - b) ** 2).sum() / b.size for b in buffer])
            if not stopped:
                if var < best:
                    best, best_at, wait = var, t, 0
                else:
                    wait += 1
                    stopped = wait >= patience
    return best_at, stopped


def test_picks_the_known_peak_and_stops_after_patience():
    clean, frames = synthetic_run()
    es = ESWMV(window=50, patience=300)
    for t, x in enumerate(frames):
        es.update(t, x)
    # the steadiest window is centred on the peak: it ends about half a window later
    assert 400 <= es.iteration <= 450
    assert es.stopped
    psnrs = [psnr(x[0], clean) for x in frames]
    assert int(np.argmax(psnrs)) == pytest.approx(400, abs=5)
    assert psnrs[es.iteration] >= psnrs[400 + 50]  # no worse than a full window late
    assert psnrs[es.iteration] > psnrs[-1] + 3  # and the final output is much worse
    assert torch.equal(es.image(), frames[es.iteration][0])
    var = es.variance_history[:, 0]
    assert torch.isnan(var[:49]).all() and not torch.isnan(var[49:]).any()


def test_matches_the_official_algorithm():
    g = torch.Generator().manual_seed(1)
    walk = torch.cumsum(0.05 * torch.randn(900, 1, 2, 4, 4, generator=g), 0)  # no peak: a hard case
    _, frames = synthetic_run(steps=900, peak=250, seed=2, size=(2, 4, 4))
    for sequence in (list(walk), frames):
        for window, patience in ((10, 40), (30, 200), (100, 1000)):
            es = ESWMV(window, patience)
            for t, x in enumerate(sequence):
                es.update(t, x)
            assert (es.iteration, es.stopped) == official_eswmv(sequence, window, patience)


def test_stop_ends_the_run_as_a_callback_and_runs_are_independent():
    _, early = synthetic_run(steps=650, peak=150, seed=3)
    _, late = synthetic_run(steps=650, peak=500, seed=4)
    both = ESWMV(window=40, patience=200)
    for t, (a, b) in enumerate(zip(early, late)):
        both.update(t, torch.cat([a, b]))
    assert 150 <= both.iterations[0] <= 190 and 500 <= both.iterations[1] <= 540
    assert both.stopped_runs == [True, False]  # the late one ran out of steps first

    class State:
        def __init__(self, t, x):
            self.iteration, self.output, self.output_avg = t, x[0], x[0]

    stopper = ESWMV(window=40, patience=200, stop=True)
    ended = next(t for t, x in enumerate(early) if stopper(State(t, x)))
    assert ended == stopper.iteration + 200


def test_a_window_that_never_fills_picks_the_last_iteration():
    es = ESWMV(window=100, patience=10)
    frames = [torch.full((1, 3, 4, 4), float(t)) for t in range(30)]
    for t, x in enumerate(frames):
        es.update(t, x)
    assert es.iteration == 29 and not es.stopped and torch.equal(es.image(), frames[-1][0])
    with pytest.raises(ValueError, match="window"):
        ESWMV(window=1)
    with pytest.raises(ValueError, match="es_window"):
        FitSettings(es_window=1)


def tiny_net(seed=0):
    with seeded(seed, "weights"):
        return skip_net(num_input_channels=8, num_channels_down=[16, 16], num_channels_up=[16, 16],
                        num_channels_skip=[4, 4])


def test_every_fit_reports_the_three_stopping_rules():
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    op = Denoising(0.1)
    y = op.observe(x, seed=0)
    r = fit(tiny_net(), op, y, settings="denoise", num_iter=60, es_window=10, es_patience=15, reference=x,
            progress=False)
    assert 9 <= r.es_iteration < 60
    assert r.es_psnr == pytest.approx(r.psnr_avg_history[r.es_iteration])
    assert psnr(r.es_output, x) == pytest.approx(r.es_psnr, abs=1e-3)  # the EMA output at that step
    assert r.best_psnr >= r.es_psnr and r.best_psnr >= r.final_psnr
    assert np.isnan(r.variance_history[:9]).all() and np.isfinite(r.variance_history[9:]).all()
    assert {"best_psnr", "es_psnr", "final_psnr", "es_iteration"} <= set(r.summary())
    # the detector as a callback ends the fit where it stops (same steps, same pick)
    stopped = fit(tiny_net(), op, y, settings="denoise", num_iter=60, reference=x, progress=False,
                  callbacks=[ESWMV(window=10, patience=15, stop=True)])
    assert r.es_stopped
    assert stopped.stopped_early and stopped.iterations == r.es_iteration + 16
    assert stopped.es_iteration == r.es_iteration and stopped.es_psnr == pytest.approx(r.es_psnr)
    off = fit(tiny_net(), op, y, settings="denoise", num_iter=5, es_window=0, reference=x, progress=False)
    assert off.es_psnr is None and off.es_iteration is None
