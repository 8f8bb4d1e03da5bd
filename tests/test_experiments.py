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


def test_from_parameters_takes_a_chapters_settings_and_its_profiles_runs():
    cell = dict(profile="quick", crop=64, width=16, rounds=2, seeds=3, baselines=["oneshot"], matrix_seeds=1,
                snapshots=12)  # names Experiments does not have are a chapter's own
    ex = Experiments.from_parameters(cell)
    assert (ex.crop, ex.width, ex.rounds, ex.seeds, list(ex.baselines)) == (64, 16, 2, 3, ["oneshot"])
    assert ex.runs_root.parts[-3:] == ("_build", "runs", "quick")
    clean = Experiments.from_parameters(cell, search_on="clean", width=128)
    assert clean.width == 128 and clean.runs_root == ex.runs_root
    # the two searches of one problem never share a folder
    assert clean.run_name("denoise", "set5/baby") != ex.run_name("denoise", "set5/baby")
    with pytest.raises(TypeError, match="no setting"):
        Experiments.from_parameters(cell, widht=8)


def test_run_dir_is_one_folder_under_the_profiles_runs():
    from lipkit.book import run_dir, runs_root

    assert run_dir("paper", "mnist_gan") == runs_root("paper") / "mnist_gan"
    for bad in ("", "a/b", "../x"):
        with pytest.raises(ValueError, match="one plain folder"):
            run_dir("paper", bad)
