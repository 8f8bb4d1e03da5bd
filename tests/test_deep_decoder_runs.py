import math

import pytest

from conftest import mean_colour

import lipkit.studies.deep_decoder_runs as ddr
from lipkit.studies.deep_decoder_runs import deep_decoder_runs, fit_deep_decoder
from lipkit.lottery.imp import imp
from lipkit.models import count_parameters, deep_decoder, deep_decoder_for, deep_decoder_parameters
from lipkit.tasks import make_task


@pytest.mark.parametrize("k,layers,channels", [(8, 5, 3), (31, 4, 3), (64, 6, 1), (128, 5, 3)])
def test_parameter_formula_counts_the_network(k, layers, channels):
    assert deep_decoder_parameters(k, layers, channels) == count_parameters(deep_decoder(k, layers, channels))


@pytest.mark.parametrize("target", [1_700, 6_878, 41_441, 100_000, 603_876])
def test_closest_width_is_the_closest(target):
    got = deep_decoder_for(target)
    brute = min(range(1, 600), key=lambda k: abs(math.log(deep_decoder_parameters(k) / target)))
    assert got["k"] == brute and got["parameters"] == deep_decoder_parameters(brute)
    assert abs(got["ratio"] - 1) < 0.1  # within 10 % for targets this size
    depth = deep_decoder_for(target, layers=[4, 5, 6])
    assert abs(math.log(depth["ratio"])) <= abs(math.log(got["ratio"])) + 1e-12
    with pytest.raises(ValueError, match="positive"):
        deep_decoder_for(0)


def test_round_for_parameters(mirror_dir, tmp_path):
    task = make_task("denoise", "set5/baby", crop=64, iters=5)
    run = imp(task, rounds=3, rate=0.5, seeds=[0], arch=dict(num_channels_down=[8] * 5, num_channels_up=[8] * 5),
              run_dir=tmp_path / "r", workers=1, progress=False)
    c = run.curve("imp")
    for k, n in zip(c["round"], c["unpruned_params"]):
        assert run.round_for_parameters(n * 1.02)["round"] == k
    assert run.round_for_parameters(1)["round"] == 3 and run.round_for_parameters(1e9)["round"] == 0


@pytest.mark.parametrize("kind", ["denoise", "sr", "inpaint"])
def test_deep_decoder_fits_every_task(mirror_dir, kind):
    task = make_task(kind, "set5/baby", crop=64, iters=60)
    rec = fit_deep_decoder(task, 16, seed=1)
    assert rec["parameters"] == deep_decoder_parameters(16) and rec["iterations"] == 60
    assert rec["target"]["metric"] == ("y" if kind == "sr" else "rgb")
    floor = float(task.metric(mean_colour(task.clean), task.clean))
    assert rec["best_psnr"] > floor + 5, (rec["best_psnr"], floor)  # it fits (measured: 6.7 to 10.1 dB above)


def test_runs_are_cached(mirror_dir, tmp_path, monkeypatch):
    task = make_task("denoise", "set5/head", crop=64, iters=10)
    first = deep_decoder_runs(task, [8, 12], seeds=[0, 1], cache_dir=tmp_path, workers=1, progress=False)
    assert [(r["k"], r["seed"]) for r in first] == [(8, 0), (8, 1), (12, 0), (12, 1)]
    assert first[0]["best_psnr"] != first[1]["best_psnr"]  # seeds differ

    def no_fitting(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setattr(ddr, "_fit_job", no_fitting)
    again = deep_decoder_runs(task, [8, 12], seeds=[0, 1], cache_dir=tmp_path, workers=1, progress=False)
    assert again == first
    assert all(r["image"].endswith(".png") for r in again)
    # a changed setting, a new schema version or changed code is another key: recomputed
    import lipkit.store.cache as cache_mod

    def recomputed(task, **patch):
        with monkeypatch.context() as m:
            for name, value in patch.items():
                m.setattr(cache_mod, name, value)
            with pytest.raises(AssertionError, match="fitted again"):
                deep_decoder_runs(task, [8], seeds=[0], cache_dir=tmp_path, workers=1, progress=False)

    recomputed(task, SCHEMA_VERSION=cache_mod.SCHEMA_VERSION + 1)
    recomputed(task, code_fingerprint=lambda module: "the code was edited")
    recomputed(make_task("denoise", "set5/head", crop=64, iters=11))
    assert deep_decoder_runs(task, [8], seeds=[0], cache_dir=tmp_path, workers=1, progress=False) == first[:1]
