"""Sweeps on a local process pool (the Ray engine: tests/test_sweep_ray.py): a grid of IMP runs
gives the folders `python -m lipkit imp` gives; a rerun computes nothing; a killed driver's sweep
resumes; a job that cannot work is reported once; a busy folder is left alone; the shipped sweep
files make exactly the folders the book's paper profile opens. These run on every machine."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from lipkit.runs import sweep
from lipkit.cli import main
from lipkit.experiments import PAPER_TASKS, Experiments
from lipkit.store.folder import RunLock
from lipkit.runs.sweep_engines import run_sweep

TINY = dict(crop=64, width=8, rounds=1, seeds=1, denoise_iters=3, sr_iters=3, inpaint_iters=3, baselines=[])
TIMING = {"seconds", "batched", "threads"}  # how long a fit took and how it ran are not results


def folder(image: str, criterion: str = "magnitude", **settings) -> str:
    """The run folder the chapters (and so the sweep) name for denoising ``image`` with these settings."""
    return Experiments(".", **dict(TINY, **settings)).run_name("denoise", image, criterion=criterion)


def tiny_sweep(tmp_path, **extra) -> Path:
    spec = dict(name="tiny", settings=TINY, jobs=[dict(kind="denoise", image=["set5/baby", "set5/woman"],
                                                       criterion=["magnitude", "random"])],
                resources=dict(cpus=1), retries=2)
    spec.update(extra)
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


def records(root: Path) -> dict:
    return {(r["run"], r["seed"], r["round"], r["method"]): {k: v for k, v in r.items() if k not in TIMING}
            for r in sweep.collect(root)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    """The four folders made one by one by `python -m lipkit imp`, with one thread as the sweep's
    jobs (resources.cpus = 1): another thread count sums in another order."""
    root = tmp_path_factory.mktemp("by_cli")
    for image in ("set5/baby", "set5/woman"):
        for criterion in ("magnitude", "random"):
            name = Experiments(root, **TINY).run_name("denoise", image, criterion=criterion)
            assert main(["imp", "--task", "denoise", "--image", image, "--crop", "64", "--iters", "3", "--width", "8",
                         "--rounds", "1", "--criterion", criterion, "--workers", "1", "--quiet", "--out",
                         str(root / name)]) == 0
    return records(root)


def test_the_grid_expands_to_one_folder_per_job(tmp_path):
    plan = sweep.load(tiny_sweep(tmp_path))
    assert [j.id for j in plan.jobs] == [folder("set5/baby"), folder("set5/baby", "random"), folder("set5/woman"),
                                         folder("set5/woman", "random")]
    assert plan.jobs[0].id.startswith("imp_denoise_set5-baby_64px_w8_")  # readable, then the settings' hash
    assert {sweep.records_expected(j) for j in plan.jobs} == {2}


def test_a_local_sweep_equals_the_cli_runs_and_a_rerun_computes_nothing(tmp_path, reference, capsys):
    root = tmp_path / "runs"
    results = run_sweep(sweep.load(tiny_sweep(tmp_path)), root, workers=2, progress=False)
    assert sorted(r["state"] for r in results) == ["done"] * 4
    assert records(root) == reference
    start = time.perf_counter()
    assert run_sweep(sweep.load(tiny_sweep(tmp_path)), root, workers=2, progress=False) == []  # nothing to do
    assert time.perf_counter() - start < 5
    assert main(["sweep", str(tiny_sweep(tmp_path)), "--out", str(root), "--status"]) == 0
    out = capsys.readouterr().out
    assert "tiny: 4 done" in out and out.count(" done ") == 4


def test_a_killed_driver_s_sweep_finishes_only_what_is_missing_when_run_again(tmp_path):
    import subprocess
    import sys

    spec = dict(jobs=[dict(kind="denoise", image=["set5/baby", "set5/woman"], rounds=3)],
                settings=dict(TINY, denoise_iters=40))
    path, root, alone = tiny_sweep(tmp_path, **spec), tmp_path / "runs", tmp_path / "alone"
    driver = subprocess.Popen([sys.executable, "-m", "lipkit", "sweep", str(path), "--out", str(root),
                               "--workers", "1", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = root / folder("set5/baby", denoise_iters=40) / "seed_0" / "round_01.json"
    deadline = time.time() + 60
    while not first.exists() and time.time() < deadline:
        time.sleep(0.05)
    driver.kill()  # the driver, mid-sweep: its worker dies with it and the folder's lock goes
    driver.wait()
    assert first.exists()
    written = first.stat().st_mtime_ns
    results = run_sweep(sweep.load(path), root, workers=1, progress=False)
    assert sorted(r["state"] for r in results) == ["done", "done"]  # both unfinished, neither started over
    assert first.stat().st_mtime_ns == written
    run_sweep(sweep.load(path), alone, workers=1, progress=False)
    assert records(root) == records(alone)


def test_a_job_that_cannot_work_is_reported_once_and_the_others_go_on(tmp_path, capsys):
    from lipkit.data import resolve

    broken = tmp_path / "broken.png"  # an image when the sweep is planned, unreadable when its job runs
    shutil.copy(resolve("set5/woman"), broken)
    path = tiny_sweep(tmp_path, jobs=[dict(kind="denoise", image=["set5/baby", str(broken)])])
    plan, root, good = sweep.load(path), tmp_path / "runs", broken.read_bytes()
    broken.write_text("not an image")
    results = {r["id"]: r for r in run_sweep(plan, root, workers=1, progress=False)}
    assert results[folder("set5/baby")]["state"] == "done"
    bad = next(r for i, r in results.items() if i != folder("set5/baby"))
    assert bad["state"] == "failed" and "broken.png" in bad["error"]
    broken.write_bytes(good)  # what --status reads is the state the sweep wrote
    assert main(["sweep", str(path), "--out", str(root), "--status"]) == 1  # reported, not retried forever
    out = capsys.readouterr().out
    assert "failed" in out and "broken.png" in out
    state = yaml.safe_load(sweep.state_file(root, bad["id"]).read_text())
    assert state["attempts"] == 1  # run once in this sweep; a rerun of the command tries it once more


def test_an_image_that_cannot_be_read_is_refused_before_any_job_runs(tmp_path):
    not_an_image = tmp_path / "nosuchimage.png"  # a file, so that it passes the check for missing images
    not_an_image.write_text("not an image")
    path = tiny_sweep(tmp_path, jobs=[dict(kind="denoise", image=["set5/baby", str(not_an_image)])])
    with pytest.raises(sweep.SweepError, match="nosuchimage.png is not an image file"):
        sweep.load(path)


def test_a_folder_another_process_holds_is_left_alone_and_said_so(tmp_path):
    path = tiny_sweep(tmp_path, jobs=[dict(kind="denoise", image=["set5/baby", "set5/woman"])])
    root = tmp_path / "runs"
    busy = root / folder("set5/woman")
    busy.mkdir(parents=True)
    with RunLock(busy):
        results = {r["id"]: r for r in run_sweep(sweep.load(path), root, workers=1, progress=False)}
    assert results[folder("set5/baby")]["state"] == "done"
    assert results[busy.name]["state"] == "busy" and "another process is writing" in results[busy.name]["error"]
    assert not sweep.state_file(root, busy.name).exists()  # the other sweep's state is not touched
    assert {r["id"]: r["state"] for r in sweep.status(sweep.load(path), root)}[busy.name] == "pending"


def test_a_sweep_file_that_cannot_work_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(sweep.SweepError, match="unknown task 'denoize'"):
        sweep.load(tiny_sweep(tmp_path, jobs=[dict(task="denoize")]))
    with pytest.raises(sweep.SweepError, match="not Experiments settings"):
        sweep.load(tiny_sweep(tmp_path, settings=dict(TINY, widht=8)))
    with pytest.raises(sweep.SweepError, match="two jobs write the folder"):
        sweep.load(tiny_sweep(tmp_path, jobs=[dict(kind="denoise", image="set5/baby", rounds=[1, 2])]))
    with pytest.raises(sweep.SweepError, match="'method' .* is now 'criterion'"):  # the key's name before 2026-12-05
        sweep.load(tiny_sweep(tmp_path, jobs=[dict(kind="denoise", image="set5/baby", method="random")]))


@pytest.mark.parametrize("chapter,file", [("02_single_image_imp", "paper_ch2.yml"),
                                          ("08_lip_against_its_rivals", "paper_book.yml")])
def test_the_shipped_sweeps_make_the_folders_the_paper_profile_opens(chapter, file):
    """Same folder names and the same Experiments settings, so the chapters resume them as finished."""
    from dataclasses import asdict

    params = yaml.safe_load((ROOT / "book" / "profiles.yml").read_text())["paper"][chapter]
    jobs = {j.id: j for j in sweep.load(ROOT / "sweeps" / file).jobs}
    ex = Experiments.from_parameters(params, runs_root="x", progress=False)
    if chapter == "02_single_image_imp":
        wanted = {ex.run_name(**{k: v for k, v in PAPER_TASKS[n].items() if k != "title"}) for n in PAPER_TASKS}
    else:
        wanted = {ex.run_name("denoise", image) for image in params["set14_images"]}
    assert wanted <= set(jobs)
    for name in wanted:
        mine = asdict(jobs[name].experiments("x", progress=False))
        assert mine == asdict(ex), name


def test_a_job_ends_the_seed_workers_it_kept(tmp_path):
    """A sweep worker outlives its job (a Ray task's process runs others): the pool lipkit.parallel
    keeps for the process's next call must not stay behind, idle and holding memory."""
    import os

    from lipkit import parallel

    parallel.shutdown_workers()
    dict(parallel.Engine("cpu", workers=2).map(os.getpid, [()] * 2))  # what a job's two seed workers leave
    assert parallel._POOL
    job = sweep.load(tiny_sweep(tmp_path)).jobs[0]
    result = sweep.run_job(job, str(tmp_path / "runs"), threads=1)
    assert result["state"] == "done", result
    assert not parallel._POOL


def test_a_pool_that_breaks_at_submit_runs_every_job_once_more(tmp_path, monkeypatch):
    """A worker that dies while jobs are still being submitted breaks the pool at `submit`: every job
    not yet reported runs again (they were dropped once), and each is reported exactly once."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool
    from contextlib import contextmanager

    from lipkit import parallel
    from lipkit.runs import sweep_engines

    submits = []

    class BreaksOnce:
        def submit(self, call, fn, threads, args):  # what Engine.map submits: lipkit.parallel._call
            submits.append(args[0].id)
            if len(submits) == 2:
                raise BrokenProcessPool("a worker died")
            future = Future()
            future.set_result(fn(*args))
            return future

    @contextmanager
    def pool(workers):
        yield BreaksOnce()

    monkeypatch.setattr(parallel, "worker_pool", pool)
    monkeypatch.setattr(sweep_engines, "run_job", lambda job, root, cpus: dict(id=job.id, state="done"))
    plan = sweep.load(tiny_sweep(tmp_path))
    results = list(sweep_engines._run_local(list(plan.jobs), tmp_path, plan, workers=2))
    ids = [j.id for j in plan.jobs]
    assert sorted(r["id"] for r in results) == sorted(ids) and {r["state"] for r in results} == {"done"}
    assert submits == ids[:2] + ids  # the first round broke at its second submit; the second ran all four
