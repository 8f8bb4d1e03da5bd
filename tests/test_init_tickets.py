"""Tickets from masks at initialization: ordinary tickets (same θ0 as IMP's seed, loadable,
fittable), with their strategy, density and cost, kept in a folder and found there again."""

from __future__ import annotations

import pytest
import torch

from lipkit.studies import init_tickets as it
from lipkit.lottery.imp import SingleImageTrainer
from lipkit.pruning.at_init import INIT_STRATEGIES
from lipkit.tasks import make_task
from lipkit.pruning.tickets import Ticket
from lipkit.studies.transfer import transfer


@pytest.fixture(scope="module")
def task():
    return make_task("denoise", "set5/baby", sigma=0.1, crop=64, iters=3)


@pytest.mark.parametrize("strategy", INIT_STRATEGIES)
def test_every_strategy_writes_a_ticket_that_loads_and_fits(tmp_path, task, strategy):
    job = it.InitTicketJob(task, strategy, 0.2, seed=1, width=8, oes_steps=2, synflow_rounds=3)
    ticket = it.init_ticket(job, device="cpu")
    stem = ticket.save(tmp_path / strategy)
    loaded = Ticket.load(stem)
    assert loaded.meta["strategy"] == strategy and loaded.meta["density"] == 0.2
    assert loaded.meta["measured_density"] == pytest.approx(0.2, abs=1e-4)  # kept fraction, measured
    assert loaded.meta["cost"]["passes"] == {"oes": 2, "snip": 1, "grasp": 2, "synflow": 3, "random": 0}[strategy]
    assert loaded.meta["cost"]["seconds"] >= 0 and loaded.meta["cost"]["device"] == "cpu"
    record = transfer(loaded, task, device="cpu", progress=False)  # the fitting loop takes it
    assert record["iterations"] == 3 and record["conv_sparsity"] >= 0.8 - 1e-4
    assert record["source"]["strategy"] == strategy


def test_an_init_ticket_starts_from_imp_s_theta0_of_the_same_seed(task):
    job = it.InitTicketJob(task, "random", 0.5, seed=2, width=8)
    ticket = it.init_ticket(job, device="cpu")
    trainer = SingleImageTrainer(dict(arch=job.arch, search_on="observation", keep_input_convs_dense=False,
                                      rewind_iteration=0), task, "cpu", False, False)
    imp_theta0 = trainer.rewind_state(2)
    assert set(imp_theta0) == set(ticket.rewind)
    assert all(torch.equal(imp_theta0[k], ticket.rewind[k]) for k in imp_theta0)


def test_init_tickets_are_kept_and_found_again(tmp_path, task, monkeypatch):
    jobs = [it.InitTicketJob(task, m, 0.1, seed=0, width=8, synflow_rounds=2) for m in ("snip", "synflow")]
    first = it.init_tickets(jobs, tmp_path, workers=1, device="cpu", progress=False)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2

    def no_search(*args):
        raise AssertionError("searched again")

    monkeypatch.setattr(it, "init_ticket", no_search)
    again = it.init_tickets(jobs, tmp_path, workers=1, device="cpu", progress=False)
    for a, b in zip(first, again):
        assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)
    other = [it.InitTicketJob(task, "snip", 0.2, seed=0, width=8)]  # another density is another ticket
    with pytest.raises(AssertionError, match="searched again"):
        it.init_tickets(other, tmp_path, workers=1, device="cpu", progress=False)


def test_tickets_of_two_seeds_at_a_fractional_percent_do_not_share_a_file(tmp_path, task):
    jobs = [it.InitTicketJob(task, "random", 0.064, seed=s, width=8) for s in (0, 1)]  # 6.4 %: a dot in 100·d
    it.init_tickets(jobs, tmp_path, workers=1, device="cpu", progress=False)
    again = it.init_tickets(jobs, tmp_path, workers=1, device="cpu", progress=False)  # from the files
    assert [t.meta["seed"] for t in again] == [0, 1] and len(list(tmp_path.glob("*.json"))) == 2
    assert any(not torch.equal(again[0].masks[k], again[1].masks[k]) for k in again[0].masks)


def test_a_job_that_cannot_work_is_refused_with_its_reason(task):
    with pytest.raises(ValueError, match="fraction of conv weights kept"):
        it.InitTicketJob(task, "snip", 1.5)
    with pytest.raises(ValueError, match="unknown strategy"):
        it.InitTicketJob(task, "magic", 0.1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("strategy", INIT_STRATEGIES)
def test_every_strategy_searches_on_the_gpu(task, strategy):
    job = it.InitTicketJob(task, strategy, 0.2, seed=0, width=16, oes_steps=5, synflow_rounds=3)
    ticket = it.init_ticket(job, device="cuda")
    assert ticket.meta["cost"]["device"].startswith("cuda")
    assert ticket.meta["measured_density"] == pytest.approx(0.2, abs=1e-4)
    assert all(m.device.type == "cpu" for m in ticket.masks.values())  # a ticket is stored from the CPU
    assert transfer(ticket, task, device="cuda", progress=False)["iterations"] == 3
