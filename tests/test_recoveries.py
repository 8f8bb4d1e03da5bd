"""Recoveries as cached records (lipkit.gan.recoveries) and chapter 6's table made from them
(lipkit.book.compressive), on a tiny generator-IMP run."""

from __future__ import annotations

import pytest
import torch

from lipkit.book import compressive
from lipkit.gan import recoveries as rec
from lipkit.gan.imp import gan_imp
from lipkit.gan.mom import erm, mom_tournament
from lipkit.gan.wgan import WGANSettings
from lipkit.models.dcgan import DCGANCritic, DCGANGenerator
from lipkit.operators import CompressiveSensing

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = WGANSettings(iterations=3, batch_size=8, lr=1e-3)


def generator() -> DCGANGenerator:
    return DCGANGenerator(nz=8, ngf=4, nc=1, size=32)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    torch.manual_seed(0)
    g, d = generator(), DCGANCritic(ndf=4, nc=1, size=32)
    images = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    run = gan_imp(g, d, images, rounds=2, rate=0.2, criteria=("magnitude", "random"), finetune=FAST,
                  run_dir=tmp_path_factory.mktemp("gan_imp"), seed=0, device="cpu", progress=False)
    operator = CompressiveSensing((1, 32, 32), m=100, corruption="lip", bad_fraction=0.02, seed=0)
    return run, g.eval(), operator, images[:3], tmp_path_factory.mktemp("recoveries")


def test_a_recovery_is_the_solvers_result_and_is_computed_once(setting, monkeypatch):
    run, g, operator, x0, cache = setting
    jobs = [rec.RecoveryJob(g, operator, x0, solver="erm", iters=4),
            rec.RecoveryJob(g, operator, x0, block_size=5, iters=4)]
    erm_record, mom_record = rec.recoveries(jobs, cache_dir=cache)
    y = operator.observe(x0, seed=1)
    direct = [erm(g, operator, y, iters=4, reference=x0, seed=0, progress=False),
              mom_tournament(g, operator, y, block_size=5, iters=4, reference=x0, seed=0, progress=False)]
    for record, result in zip((erm_record, mom_record), direct):
        assert record["mse"] == [float(v) for v in result.mse]
        assert record["mean_mse"] == float(result.mse.mean())
        got = rec.estimates(record)
        assert got.shape == result.images.shape
        assert (got - result.images.clamp(-1, 1)).abs().max() <= 1 / 255 + 1e-6  # 8 bits a value
    # the same jobs again: read, not computed; another solver setting or other weights: a new record
    monkeypatch.setattr(rec, "recover", lambda *a: pytest.fail("a cached recovery ran again"))
    assert rec.recoveries(jobs, cache_dir=cache) == [erm_record, mom_record]
    with pytest.raises(pytest.fail.Exception):
        rec.recoveries([rec.RecoveryJob(g, operator, x0, block_size=10, iters=4)], cache_dir=cache)
    pruned = run.load_into(generator(), "magnitude", 1)
    with pytest.raises(pytest.fail.Exception):
        rec.recoveries([rec.RecoveryJob(pruned, operator, x0, block_size=5, iters=4)], cache_dir=cache)


def test_a_job_names_its_solver():
    with pytest.raises(ValueError, match="solver must be one of"):
        rec.RecoveryJob(generator(), None, torch.zeros(1, 1, 32, 32), solver="lasso")


def test_chapter6s_table_is_the_runs_records_and_the_recoveries(setting):
    run, g, operator, x0, cache = setting
    levels = rec.recoveries(rec.level_jobs(run, generator, operator, x0, block_size=5, iters=3), cache_dir=cache)
    assert [r["label"] for r in levels] == ["magnitude 1", "magnitude 2", "random 1", "random 2"]
    dense = rec.recoveries([rec.RecoveryJob(g, operator, x0, block_size=5, iters=3)], cache_dir=cache)[0]
    numbers, table = compressive.level_numbers(run, levels, dense, tol_factor=2, tol_abs=0.1)
    by_label = {r["label"]: r["mean_mse"] for r in levels}
    for k in (1, 2):
        assert numbers[f"ticket_mse_{k}"] == by_label[f"magnitude {k}"]
        assert numbers[f"random_mse_{k}"] == by_label[f"random {k}"]
        assert numbers[f"ticket_sparsity_{k}"] == 100 * run.record("magnitude", k)["G"]["sparsity"]
        assert numbers[f"random_d_sparsity_{k}"] == 100 * run.record("random", k)["D"]["sparsity"]
    assert numbers["ticket_beats_random"] == sum(by_label[f"magnitude {k}"] < by_label[f"random {k}"] for k in (1, 2))
    assert numbers["first_ticket_bound"] == 2 * dense["mean_mse"] + 0.1
    loose, _ = compressive.level_numbers(run, levels, dense, tol_factor=1, tol_abs=10)  # a bound every ticket meets
    assert loose["first_ticket_verdict"].startswith("stays below it")
    strict, _ = compressive.level_numbers(run, levels, dense, tol_factor=0, tol_abs=-1)  # a bound no ticket meets
    assert strict["first_ticket_verdict"] == "does not stay below it"
    assert numbers["ticket_mse_max"] == by_label["magnitude 2"] and numbers["sparsity_max"] == numbers["ticket_sparsity_2"]
    assert numbers["max_sparsity_error"] <= 2  # counts are 0.8^k of the total to within rounding
    lines = table.splitlines()
    assert len(lines) == 2 + 1 + 4 and lines[2].startswith("| dense (pretrained) | 0.00 % |")
    assert f"{by_label['random 2']:.4f}" in lines[-1]
    dense_numbers = compressive.dense_numbers(dense, dense, x0)
    assert dense_numbers["mom_erm_ratio"] == 1 and dense_numbers["background_mse"] == float((x0 + 1).pow(2).mean())
