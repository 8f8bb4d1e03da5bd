"""The book's experiments: the dense fits of the reproduction page are IMP's round 0."""

import pytest

from lipkit.experiments import Experiments


@pytest.mark.usefixtures("mirror_dir")
def test_dense_jobs_fit_what_imp_round_0_fits(tmp_path):
    ex = Experiments(tmp_path, crop=64, width=8, rounds=0, seeds=2, denoise_iters=30, baselines=[], workers=1,
                     progress=False)
    run = ex.imp("denoise", "set5/baby")
    task = ex.task("denoise", "set5/baby")
    records = ex.transfer(ex.dense_jobs(task, [0, 1]))
    imp_round0 = sorted(run.records("imp"), key=lambda r: r["seed"])
    for dense, searched in zip(records, imp_round0):
        assert dense["seed"] == searched["seed"] and dense["variant"] == "dense"
        for key in ("best_psnr", "es_psnr", "final_psnr", "best_iteration"):
            assert dense[key] == pytest.approx(searched[key], abs=1e-6), key
    assert records[0]["best_psnr"] != pytest.approx(records[1]["best_psnr"], abs=1e-4)  # two seeds, two fits
