import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lipkit.fitting.loop import FitDivergedError
from lipkit.lottery.imp import ImpRun, _fit_guarded, imp
from lipkit.lottery.identity import adopt_legacy, folder_name
from lipkit.models import skip_net
from lipkit.operators import Denoising
from lipkit.fitting.settings import FitSettings
from lipkit.store.folder import RunConfigError, read_json, write_json
from lipkit.store.paths import ImpFolder
from lipkit.tasks import Task, make_task

TINY = dict(num_channels_down=[8] * 5, num_channels_up=[8] * 5)
# the driver's resume logic is tested on its own (test_lottery.py); this is the real kill -9 of the command
CLI = [sys.executable, "-m", "lipkit", "imp", "--task", "denoise", "--image", "set5/baby", "--crop", "64",
       "--iters", "60", "--width", "8", "--rounds", "3", "--rate", "0.5", "--workers", "1", "--quiet"]


def records(run_dir):
    rows = json.loads((run_dir / "summary.json").read_text())["records"]
    return sorted((r["method"], r["seed"], r["round"], r["conv_nonzero"], r["best_psnr"], r["final_psnr"]) for r in rows)


def test_killed_run_resumes_to_the_same_result(mirror_dir, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(CLI + ["--out", str(straight)], check=True, env=env, capture_output=True, timeout=600)

    proc = subprocess.Popen(CLI + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    folder = ImpFolder(killed)
    while not folder.record(0, 1).exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.1)  # inside round 2's fit
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not folder.record(0, 3).exists(), "killed too late to test a resume"
    done_before = [k for k in range(4) if folder.record(0, k).exists()]

    out = subprocess.run(CLI + ["--out", str(killed)], check=True, env=env, capture_output=True, text=True, timeout=600)
    assert "best_psnr_mean" in out.stdout
    assert records(killed) == records(straight)
    assert done_before[:2] == [0, 1]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead and not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def children_of(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_workers_die_with_their_parent(mirror_dir, tmp_path):
    out = tmp_path / "run"
    argv = CLI[:CLI.index("--workers")] + ["--workers", "2", "--seeds", "2", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (ImpFolder(out).rewind(0).exists() or ImpFolder(out).rewind(1).exists()):  # the workers are at work
        assert proc.poll() is None and time.time() < deadline, "the run ended before its workers started"
        time.sleep(0.05)
    workers = children_of(proc.pid)
    assert workers, "no worker processes found"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(alive(w) for w in workers):
        assert time.time() < deadline, f"workers {[w for w in workers if alive(w)]} outlived their parent"
        time.sleep(0.1)


def test_summary_and_measured_sparsity(mirror_dir, tmp_path):
    task = make_task("sr", "dip/zebra", crop=64, iters=15)
    run = imp(task, rounds=4, rate=0.2, seeds=[0], arch=TINY, run_dir=tmp_path / "r", workers=1, progress=False)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["config"]["search_on"] == "observation" and summary["config"]["task"]["kind"] == "sr"
    assert {"diverged_retry", "es_stopped", "search_on"} <= set(summary["records"][0])  # every flag of a round
    total = run.records("imp")[0]["conv_nonzero"]
    n_layers = len(run.records("imp")[0]["layer_density"])
    for r in run.records("imp"):
        # measured, not nominal: within one weight per layer of 1 - 0.8^k
        assert abs(r["conv_nonzero"] - total * 0.8 ** r["round"]) <= n_layers
        assert r["best_psnr"] >= r["final_psnr"]
    t = run.ticket(0, 2)
    assert t.meta["search_image"] == "dip/zebra" and t.meta["round"] == 2 and t.meta["seed"] == 0
    assert t.meta["conv_sparsity"] == pytest.approx(1 - 0.8 ** 2, abs=1e-3)


def test_clean_search_and_rewind_point(mirror_dir, tmp_path):
    task = make_task("denoise", "set5/baby", crop=64, iters=10)
    run = imp(task, rounds=1, rate=0.5, seeds=[3], arch=TINY, search_on="clean", rewind_iteration=5,
              run_dir=tmp_path / "c", workers=1, progress=False)
    assert {r["search_on"] for r in run.records("imp")} == {"clean"}
    assert run.ticket(3, 1).meta["rewind_iteration"] == 5


def test_a_different_configuration_is_not_resumed(mirror_dir, tmp_path):
    task = make_task("denoise", "set5/baby", crop=64, iters=5)
    imp(task, rounds=1, rate=0.5, seeds=[0], arch=TINY, run_dir=tmp_path / "x", workers=1, progress=False)
    with pytest.raises(RunConfigError, match="rate: folder has 0.5, this run asks for 0.3"):
        imp(task, rounds=1, rate=0.3, seeds=[0], arch=TINY, run_dir=tmp_path / "x", workers=1, progress=False)
    other = make_task("denoise", "set5/baby", crop=64, iters=5, seed=1)  # another noise draw
    with pytest.raises(RunConfigError, match="observation_sha256"):
        imp(other, rounds=1, rate=0.5, seeds=[0], arch=TINY, run_dir=tmp_path / "x", workers=1, progress=False)
    with pytest.raises(ValueError, match="rate must be in \\(0, 1\\)"):
        imp(task, rounds=1, rate=1.0, seeds=[0], run_dir=tmp_path / "y")


def test_a_finished_run_can_be_extended_by_more_rounds(mirror_dir, tmp_path):
    task = make_task("denoise", "set5/baby", crop=64, iters=5)
    kw = dict(rate=0.5, seeds=[0], arch=TINY, baselines=["random_global"], run_dir=tmp_path / "x", workers=1,
              progress=False)
    short = imp(task, rounds=2, **kw)
    before = sorted((r["method"], r["round"], r["best_psnr"]) for r in short.records())
    longer = imp(task, rounds=3, **kw)
    after = sorted((r["method"], r["round"], r["best_psnr"]) for r in longer.records())
    assert [x for x in after if x[1] <= 2] == before
    assert {(m, k) for m, k, _ in after if k == 3} == {("imp", 3), ("random_global", 3)}
    assert longer.config["rounds"] == 3
    # an experiment that asks for fewer rounds sees only those
    view = imp(task, rounds=2, **kw)
    assert sorted((r["method"], r["round"], r["best_psnr"]) for r in view.records()) == before
    straight = imp(task, rounds=3, **dict(kw, run_dir=tmp_path / "y"))
    assert sorted((r["method"], r["round"], r["best_psnr"]) for r in straight.records()) == after


def test_a_baseline_can_be_added_to_a_finished_run(mirror_dir, tmp_path):
    task = make_task("denoise", "set5/baby", crop=64, iters=5)
    first = imp(task, rounds=2, rate=0.5, seeds=[0], arch=TINY, run_dir=tmp_path / "x", workers=1, progress=False)
    imp_records = sorted((r["round"], r["best_psnr"]) for r in first.records("imp"))
    run = imp(task, rounds=2, rate=0.5, seeds=[0], arch=TINY, baselines=["random_layerwise"], run_dir=tmp_path / "x",
              workers=1, progress=False)
    assert sorted((r["round"], r["best_psnr"]) for r in run.records("imp")) == imp_records
    assert [r["round"] for r in sorted(run.records("random_layerwise"), key=lambda r: r["round"])] == [1, 2]
    assert run.config["baselines"] == ["random_layerwise"]
    # asking again without it keeps what the folder has
    again = imp(task, rounds=2, rate=0.5, seeds=[0], arch=TINY, run_dir=tmp_path / "x", workers=1, progress=False)
    assert len(again.records("random_layerwise")) == 2 and again.config["baselines"] == ["random_layerwise"]


class NaNSometimes(Denoising):
    """Denoising whose loss is NaN on every 25th call: a fit that diverges."""

    calls = 0

    def loss(self, out, y):
        NaNSometimes.calls += 1
        value = super().loss(out, y)
        return value * float("nan") if NaNSometimes.calls % 25 == 5 else value


class NaNAlmostAlways(Denoising):
    def loss(self, out, y):
        value = super().loss(out, y)
        return value if torch.rand(()) < 0.01 else value * float("nan")


def test_a_fit_still_non_finite_after_its_retry_stops_the_run():
    torch.manual_seed(0)
    op = NaNAlmostAlways(0.1)
    x = torch.rand(3, 64, 64)
    task = Task("denoise", "synthetic", x, op, op.observe(x, seed=0), FitSettings(num_iter=150, reg_noise_std=0.03))
    with pytest.raises(FitDivergedError, match="non-finite"):
        _fit_guarded(skip_net(**TINY), op, task.observation, task=task, reference=x, masks=None, seed=0,
                     device="cpu", progress=False, desc="test")


@pytest.mark.parametrize("exp_weight", [None, 0.99])
def test_a_diverging_fit_is_restored_not_pruned(tmp_path, exp_weight):
    torch.manual_seed(0)
    net = skip_net(**TINY)
    op = NaNSometimes(0.1)
    x = torch.rand(3, 64, 64)
    settings = FitSettings(num_iter=60, reg_noise_std=0.03, exp_weight=exp_weight)
    task = Task("denoise", "synthetic", x, op, op.observe(x, seed=0), settings)
    result, retried = _fit_guarded(net, op, task.observation, task=task, reference=x, masks=None, seed=0,
                                   device="cpu", progress=False, desc="test")
    assert retried and result.backtracks
    assert torch.isfinite(result.output).all() and torch.isfinite(result.best_output).all()
    assert np.all(np.isfinite(result.psnr_history)) and np.isfinite(result.best_psnr)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_a_run_folder_in_use_is_refused(mirror_dir, tmp_path):
    from lipkit.store.folder import RunInUseError, RunLock

    task = make_task("denoise", "set5/baby", crop=64, iters=2)
    (tmp_path / "busy").mkdir()
    with RunLock(tmp_path / "busy"):
        with pytest.raises(RunInUseError, match="being written by another process"):
            imp(task, rounds=0, seeds=[0], arch=TINY, run_dir=tmp_path / "busy", workers=1, progress=False)


@pytest.mark.parametrize("search_on", ["observation", "clean"])
def test_batched_seeds_evaluate_each_seeds_ticket_as_a_fit_alone(mirror_dir, tmp_path, search_on):
    # the GPU path (one vmapped model per round), forced on the CPU
    from lipkit.studies.transfer import transfer

    task = make_task("denoise", "set5/baby", crop=64, iters=8)  # short: rounding differences grow with each step
    kwargs = dict(rounds=2, rate=0.5, seeds=[0, 3], arch=TINY, search_on=search_on, workers=1, progress=False)
    batched = imp(task, run_dir=tmp_path / "batched", batch_seeds=True, **kwargs)
    alone = imp(task, run_dir=tmp_path / "alone", batch_seeds=False, **kwargs)
    assert len(batched.records("imp")) == 6
    for rec in batched.records("imp"):
        # each seed's record is its own ticket (masks, rewind point, seed) fitted alone, to float tolerance
        refit = transfer(batched.ticket(rec["seed"], rec["round"]), task, seed=rec["seed"], progress=False)
        assert rec["conv_nonzero"] == refit["conv_nonzero"]
        assert rec["best_psnr"] == pytest.approx(refit["best_psnr"], abs=0.01)
        assert rec["final_psnr"] == pytest.approx(refit["final_psnr"], abs=0.01)
    # the same run as seeds fitted one after another, up to rounding; rounding is not small here: Adam turns
    # the rounding noise of a near-zero gradient into a full lr-sized step, and later rounds prune other weights
    assert [r[:4] for r in records(tmp_path / "alone")] == [r[:4] for r in records(tmp_path / "batched")]
    assert [sorted(r) for r in alone.records()] == [sorted(r) for r in batched.records()]


def test_batched_seeds_resume_a_run_round_by_round(mirror_dir, tmp_path):
    from lipkit.studies.transfer import transfer

    task = make_task("sr", "dip/zebra", crop=64, iters=10)  # another operator and DIP's Y-channel PSNR
    kwargs = dict(rate=0.5, seeds=[0, 1], arch=TINY, run_dir=tmp_path / "r", batch_seeds=True, progress=False)
    imp(task, rounds=1, **kwargs)
    ImpFolder(tmp_path / "r").record(1, 1).unlink()  # as if killed after seed 0's record
    run = imp(task, rounds=2, **kwargs)
    assert sorted((r["seed"], r["round"]) for r in run.records("imp")) == [(s, k) for s in (0, 1) for k in range(3)]
    last = max(run.records("imp"), key=lambda r: (r["round"], r["seed"]))
    refit = transfer(run.ticket(last["seed"], last["round"]), task, seed=last["seed"], progress=False)
    assert last["best_psnr"] == pytest.approx(refit["best_psnr"], abs=0.01)  # same operator and Y-PSNR as alone


def test_one_shot_at_level_1_is_imp_s_first_round_and_is_not_fitted_twice(mirror_dir, tmp_path, monkeypatch):
    # one-shot pruning of the dense fit at level 1 gives IMP's level-1 masks: its record is the
    # chain's fit (marked same_fit_as), and equals what fitting it again gives
    from lipkit.lottery import driver as lottery

    task = make_task("denoise", "set5/baby", crop=64, iters=20)
    kw = dict(rounds=2, rate=0.5, seeds=[0], arch=TINY, baselines=["oneshot"], workers=1, progress=False)
    reused = imp(task, run_dir=tmp_path / "reused", **kw)
    monkeypatch.setattr(lottery, "_same_masks", lambda a, b: False)
    fitted = imp(task, run_dir=tmp_path / "fitted", **kw)

    def oneshot(run, level):
        return next(r for r in run.records("oneshot") if r["round"] == level)

    assert oneshot(reused, 1)["same_fit_as"] == "imp" and "same_fit_as" not in oneshot(reused, 2)
    assert "same_fit_as" not in oneshot(fitted, 1)
    numbers = ("best_psnr", "es_psnr", "final_psnr", "best_iteration", "es_iteration", "conv_nonzero")
    for level in (1, 2):
        assert {k: oneshot(reused, level)[k] for k in numbers} == {k: oneshot(fitted, level)[k] for k in numbers}


def test_a_folder_holds_exactly_its_seeds_and_its_readers_read_those(mirror_dir, tmp_path):
    # the seeds are part of a run's identity: another seed set is another run, refused in one line
    task = make_task("denoise", "set5/baby", crop=64, iters=3)
    kw = dict(rounds=1, rate=0.5, arch=TINY, run_dir=tmp_path / "x", workers=1, progress=False)
    run = imp(task, seeds=[0, 1, 2], **kw)
    assert run.config["seeds"] == [0, 1, 2] and ImpRun(run.dir).seeds == [0, 1, 2]
    with pytest.raises(RunConfigError, match="seeds"):
        imp(task, seeds=[0, 1], **kw)
    # a reader asking for fewer seeds reads only those
    view = ImpRun(run.dir, seeds=[0, 1])
    assert sorted({r["seed"] for r in view.records()}) == [0, 1] and view.curve("imp")["n"] == [2, 2]
    # a seed's records name its chain, not the seed set: one seed alone gives the same fit and run id
    alone = imp(task, seeds=[2], **dict(kw, run_dir=tmp_path / "alone"))
    numbers = ("best_psnr", "es_psnr", "final_psnr", "run")
    assert [{k: r[k] for k in numbers} for r in alone.records()] == \
        [{k: r[k] for k in numbers} for r in run.records() if r["seed"] == 2]


def test_a_folder_stored_before_a_field_was_renamed_resumes_and_extends(mirror_dir, tmp_path):
    task = make_task("denoise", "set5/baby", crop=64, iters=3)
    kw = dict(rate=0.5, arch=TINY, workers=1, progress=False, seeds=[0], run_dir=tmp_path / "run")
    first = imp(task, rounds=1, **kw).records()
    config = read_json(tmp_path / "run" / "config.json")
    write_json(tmp_path / "run" / "config.json",  # the criterion under its name before 2026-12-05
               {("method" if k == "criterion" else k): v for k, v in config.items()})
    longer = imp(task, rounds=2, **kw)
    assert [r for r in longer.records() if r["round"] <= 1] == first and longer.curve("imp")["n"] == [1, 1, 1]
    assert longer.config == dict(config, rounds=2) and longer.records()[-1]["run"] == first[0]["run"]


def test_a_folder_from_before_configs_named_their_seeds_is_recognised_or_refused(mirror_dir, tmp_path):
    task = make_task("denoise", "set5/baby", crop=64, iters=3)
    kw = dict(rounds=1, rate=0.5, arch=TINY, workers=1, progress=False)
    for folder, seeds in (("two", [0, 1]), ("one", [0])):
        imp(task, seeds=seeds, run_dir=tmp_path / folder, **kw)
        config = read_json(tmp_path / folder / "config.json")
        write_json(tmp_path / folder / "config.json", {k: v for k, v in config.items() if k != "seeds"})
    # its seed folders among the asked seeds: resumed, and its config now names them
    before = ImpRun(tmp_path / "one").records()
    extended = imp(task, seeds=[0], run_dir=tmp_path / "one", **dict(kw, rounds=2))
    assert extended.config["seeds"] == [0] and [r for r in extended.records() if r["round"] <= 1] == before
    # other seeds than asked: refused, saying which to ask for
    with pytest.raises(RunConfigError, match=r"--seed-list 0 1"):
        imp(task, seeds=[0], run_dir=tmp_path / "two", **kw)
    # the book's folders (a bare prefix) are renamed to the name their own config and seeds give
    moved = adopt_legacy(tmp_path / "two")
    assert moved == tmp_path / folder_name("two", read_json(moved / "config.json")) and not (tmp_path / "two").exists()
    assert read_json(moved / "config.json")["seeds"] == [0, 1] and adopt_legacy(moved) is None
