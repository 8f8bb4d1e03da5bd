import json

import pytest
import torch

import lipkit.studies.transfer as transfer_mod
from lipkit.lottery.imp import imp
from lipkit.pruning.masks import layer_densities
from lipkit.tasks import make_task
from lipkit.pruning.tickets import TicketMismatchError
from lipkit.studies.transfer import TransferJob, transfer, transfer_many

TINY = dict(num_channels_down=[8] * 5, num_channels_up=[8] * 5)


@pytest.fixture(scope="module")
def woman_run(tmp_path_factory):
    from conftest import mirror

    mirror()
    task = make_task("denoise", "set5/woman", crop=64, iters=25)
    run = imp(task, rounds=2, rate=0.5, seeds=[3], arch=TINY, run_dir=tmp_path_factory.mktemp("r") / "woman",
              workers=1, progress=False)
    return task, run


def test_a_ticket_on_its_own_task_reproduces_the_imp_record(woman_run):
    task, run = woman_run
    rec = transfer(run.ticket(3, 2), task, progress=False)
    native = next(r for r in run.records("imp") if r["round"] == 2)
    assert rec["best_psnr"] == pytest.approx(native["best_psnr"], abs=1e-5)
    assert rec["conv_nonzero"] == native["conv_nonzero"]
    assert rec["source"]["search_image"] == "set5/woman" and rec["source"]["round"] == 2
    assert rec["target"]["image"] == "set5/woman" and rec["seed"] == 3


def test_variants_and_another_image_size(woman_run):
    _, run = woman_run
    ticket = run.ticket(3, 2)
    target = make_task("denoise", "set5/baby", crop=96, iters=10)  # another image and size
    recs = {v: transfer(ticket, target, variant=v, progress=False) for v in ("ticket", "random_like", "dense")}
    assert recs["dense"]["conv_sparsity"] == 0
    assert recs["ticket"]["conv_sparsity"] == pytest.approx(ticket.meta["conv_sparsity"])
    # random masks keep the ticket's per-layer counts exactly
    assert recs["random_like"]["layer_density"] == pytest.approx(list(layer_densities(ticket.masks).values()))
    assert recs["ticket"]["target"]["image_size"] == [96, 96]
    assert len({round(r["best_psnr"], 4) for r in recs.values()}) == 3


def test_a_too_small_image_is_refused_with_the_size_rule(woman_run):
    _, run = woman_run
    small = make_task("denoise", "set5/baby", crop=32, iters=5)
    with pytest.raises(TicketMismatchError, match="multiples of 32 and at least 64 px"):
        transfer(run.ticket(3, 1), small, progress=False)
    with pytest.raises(TicketMismatchError, match="at least 64 px"):
        transfer_many([TransferJob(run.ticket(3, 1), small)], progress=False)


def test_cache_and_workers(woman_run, tmp_path, monkeypatch):
    task, run = woman_run
    target = make_task("denoise", "set5/head", crop=64, iters=10)
    jobs = [TransferJob(run.ticket(3, k), target, v) for k in (1, 2) for v in ("ticket", "random_like")]
    parallel = transfer_many(jobs, cache_dir=tmp_path / "c", workers=2, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers use one thread each; the same float order gives the same numbers
    try:
        serial = transfer_many(jobs, workers=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(parallel, serial):
        assert a["best_psnr"] == pytest.approx(b["best_psnr"], abs=1e-5)
        assert a["conv_nonzero"] == b["conv_nonzero"]
    assert len(list((tmp_path / "c").glob("*.json"))) == 4 and len(list((tmp_path / "c").glob("*.png"))) == 4

    def no_fitting(*args, **kwargs):
        raise AssertionError("a cached job was fitted again")

    monkeypatch.setattr(transfer_mod, "_run_job", no_fitting)
    again = transfer_many(jobs, cache_dir=tmp_path / "c", progress=False)
    assert [r["best_psnr"] for r in again] == [r["best_psnr"] for r in parallel]
    # another seed is another job
    with pytest.raises(AssertionError, match="fitted again"):
        transfer_many([TransferJob(run.ticket(3, 1), target, "ticket", seed=9)], cache_dir=tmp_path / "c",
                      workers=1, progress=False)
    record = json.loads(next((tmp_path / "c").glob("*.json")).read_text())
    assert len(record["key"]) == 64
