"""Chapter 7's race: FLOPs are counted as computed, the contenders are the networks they say, the
dense and unstructured contenders reproduce IMP's own fits, and records are cached."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import mirror
from lipkit.studies import fast_tickets
from lipkit.pruning.channels import channel_groups, channels_of, compact, parameter_masks, random_channels_like
from lipkit.experiments import Experiments
from lipkit.fitting.flops import step_flops
from lipkit.models import deep_decoder, network_input, skip_net
from lipkit.pruning.masks import apply_masks, dense_masks, global_prune
from lipkit.seeding import seeded

ARCH = dict(num_channels_down=[16] * 5, num_channels_up=[16] * 5)


def _net():
    with seeded(0, "weights"):
        return skip_net(**ARCH)


def test_flops_count_masked_weights_and_fall_with_the_channels():
    net = _net()
    dense = step_flops(net, 64, 64)
    weights = {n: p for n, p in net.named_parameters() if p.dim() == 4}
    masks = global_prune(weights, dense_masks(net), 0.9)
    apply_masks(net, masks)
    assert step_flops(net, 64, 64) == dense  # zeros are multiplied all the same
    assert step_flops(net, 128, 128) == 4 * dense  # convolutions scale with the pixels
    channels = channels_of(net, parameter_masks(net, {g.producer: torch.arange(g.size) % 2 == 0
                                                      for g in channel_groups(net)}))
    half = step_flops(compact(net, channels), 64, 64)
    assert dense / 4.5 < half < dense / 3  # half of every layer's channels: about a quarter of the FLOPs
    with pytest.raises(ValueError, match="64"):
        step_flops(net, 40, 40)


def test_random_channels_keep_each_layers_count_and_differ_by_seed():
    net = _net()
    ticket = {g.producer: torch.arange(g.size) < max(1, g.size // 3) for g in channel_groups(net)}
    a, b = (random_channels_like(ticket, seed=s) for s in (0, 1))
    assert all(int(a[k].sum()) == int(v.sum()) == int(b[k].sum()) for k, v in ticket.items())
    assert any(not torch.equal(a[k], b[k]) for k in ticket) and any(not torch.equal(a[k], ticket[k]) for k in ticket)
    assert all(torch.equal(a[k], random_channels_like(ticket, seed=0)[k]) for k in ticket)


def test_narrow_width_and_deep_decoder_width_have_the_closest_flops():
    target = step_flops(skip_net(num_channels_down=[10] * 5, num_channels_up=[10] * 5), 64, 64) * 1.02
    narrow = fast_tickets.narrow_width_for(target, 64, 64, ARCH)
    assert narrow["width"] == 10 and narrow["flops"] == step_flops(
        skip_net(num_channels_down=[10] * 5, num_channels_up=[10] * 5), 64, 64)
    dd = fast_tickets.deep_decoder_width_for(target, 64, 64)

    def distance(k):
        return abs(math.log(step_flops(deep_decoder(k), 64, 64) / target))

    assert distance(dd["k"]) <= min(distance(dd["k"] - 1), distance(dd["k"] + 1))


def test_pareto_front_keeps_only_what_nothing_beats():
    points = [(1.0, 20.0), (2.0, 25.0), (3.0, 24.0), (0.5, 19.0), (2.0, 22.0), (4.0, 26.0)]
    assert fast_tickets.pareto_front(points) == [3, 0, 1, 5]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A tiny unstructured and channel IMP run of the same task, seed and θ0."""
    mirror()
    ex = Experiments(tmp_path_factory.mktemp("runs"), crop=64, width=16, rounds=1, rate=0.6, seeds=1,
                     denoise_iters=4, baselines=[], workers=1, progress=False)
    unstructured = ex.paper_imp("denoise")
    channel = ex.paper_imp("denoise", structure="channel", rate=0.4, rounds=1)
    return ex, ex.paper_task("denoise"), unstructured, channel


def test_the_race_fits_what_it_says_and_reproduces_imps_fits(searched, monkeypatch):
    ex, task, unstructured, channel = searched
    assert channel.dir.name == ex.run_name("denoise", "set5/baby", structure="channel", rate=0.4)
    assert channel.dir.name.startswith("imp_denoise_set5-baby_64px_w16_channel_p40_")
    assert unstructured.dir.name == ex.run_name("denoise", "set5/baby")
    jobs = fast_tickets.contenders(task, channel.ticket(0, 1), unstructured.ticket(0, 1))
    assert [j.contender for j in jobs] == list(fast_tickets.CONTENDERS)
    nets = {j.contender: j.build() for j in jobs}
    theta0 = unstructured.ticket(0, 0).rewind
    dense, _ = nets["dense"]  # θ0 itself, unmasked
    assert all(torch.equal(dense.state_dict()[k], v) for k, v in theta0.items())
    small, _ = nets["channel_ticket"]
    random_small, _ = nets["random_channels"]
    assert [m.weight.shape for m in small.modules() if isinstance(m, torch.nn.Conv2d)] == \
        [m.weight.shape for m in random_small.modules() if isinstance(m, torch.nn.Conv2d)]  # the ticket's widths
    z = network_input(dense, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert not torch.allclose(small.train()(z), random_small.train()(z))

    records = fast_tickets.race(jobs, cache_dir=ex.runs_root / "race", workers=1, progress=False)
    by = {r["contender"]: r for r in records}
    imp_records = {(r["round"]): r for r in unstructured.records("imp")}
    for key in ("best_psnr", "es_psnr", "final_psnr"):  # the same fits as IMP's level 0 and level 1
        assert by["dense"][key] == pytest.approx(imp_records[0][key], abs=1e-6)
        assert by["unstructured"][key] == pytest.approx(imp_records[1][key], abs=1e-6)
    masked = next(r for r in channel.records("imp") if r["round"] == 1)
    assert by["channel_ticket"]["best_psnr"] == pytest.approx(masked["best_psnr"], abs=0.05)  # compact = masked
    assert by["channel_ticket"]["parameters"] == masked["unpruned_params"]
    assert by["unstructured"]["gflops"] == by["dense"]["gflops"] > by["channel_ticket"]["gflops"]
    assert by["channel_ticket"]["gflops"] == by["random_channels"]["gflops"]
    assert all(r["seconds"] > 0 and r["iterations"] == 4 for r in records)

    rows = {r["contender"]: r for r in fast_tickets.summarize(records)}
    assert rows["dense"]["speedup"] == 1 and rows["dense"]["flops_ratio"] == 1
    assert rows["channel_ticket"]["speedup"] == pytest.approx(by["dense"]["seconds"] / by["channel_ticket"]["seconds"])

    # a second race finds every record in the cache and fits nothing
    monkeypatch.setattr(fast_tickets, "_run", lambda *a: pytest.fail("refitted a cached contender"))
    again = fast_tickets.race(jobs, cache_dir=ex.runs_root / "race", workers=1, progress=False)
    assert [r["best_psnr"] for r in again] == [r["best_psnr"] for r in records]

    # given the IMP run, the dense and unstructured fits are its own records, not fitted again
    reused = fast_tickets.contenders(task, channel.ticket(0, 1), unstructured.ticket(0, 1), imp_run=unstructured)
    assert [j.fitted is not None for j in reused] == [True, True, False, False, False, False]
    taken = fast_tickets.race(reused, cache_dir=ex.runs_root / "race", workers=1, progress=False)
    assert [r["fitted_by"] for r in taken[:2]] == ["imp", "imp"]
    assert taken[0]["seconds"] == imp_records[0]["seconds"] and taken[1]["seconds"] == imp_records[1]["seconds"]
    assert taken[0]["gflops"] == by["dense"]["gflops"] and taken[1]["parameters"] == by["unstructured"]["parameters"]
    # not for another task (other noise), another fit seed, or seeds fitted as one batched model
    other = ex.task("denoise", "set5/baby", seed=1)
    assert all(j.fitted is None for j in fast_tickets.contenders(other, channel.ticket(0, 1), unstructured.ticket(0, 1),
                                                                 imp_run=unstructured))
    assert all(j.fitted is None for j in fast_tickets.contenders(task, channel.ticket(0, 1), unstructured.ticket(0, 1),
                                                                 seed=5, imp_run=unstructured))


def test_contenders_refuse_tickets_of_another_kind_or_another_theta0(searched):
    ex, task, unstructured, channel = searched
    with pytest.raises(ValueError, match="channel ticket and an unstructured"):
        fast_tickets.contenders(task, unstructured.ticket(0, 1), channel.ticket(0, 1))
    other = channel.ticket(0, 1)
    other.rewind = {k: v + 1 if v.is_floating_point() else v for k, v in other.rewind.items()}
    with pytest.raises(ValueError, match="different weights"):
        fast_tickets.contenders(task, other, unstructured.ticket(0, 1))


def test_a_channel_tickets_random_like_transfer_draws_whole_channels(searched):
    from lipkit.studies.transfer import TransferJob, _masks_for

    ex, task, unstructured, channel = searched
    ticket = channel.ticket(0, 1)
    masks = _masks_for(TransferJob(ticket, task, "random_like", seed=3))
    net = ticket.build_net()
    drawn = channels_of(net, masks)
    assert all(torch.equal(masks[n], m) for n, m in parameter_masks(net, drawn).items())  # BatchNorms go with them
    kept = channels_of(net, ticket.masks)
    assert all(int(drawn[k].sum()) == int(v.sum()) for k, v in kept.items())
    assert any(not torch.equal(drawn[k], kept[k]) for k in kept)


def test_chapter_7_and_transfer_draw_the_same_random_channels_for_a_ticket_and_seed(mirror_dir):
    # one draw per (ticket, seed): the race's "random channels" contender and
    # `transfer --variants random_like` keep the same channels
    from lipkit.tasks import make_task
    from lipkit.pruning.tickets import Ticket
    from lipkit.studies.transfer import TransferJob, _masks_for

    net = _net()
    keep = {g.producer: torch.arange(g.size) % 3 == 0 for g in channel_groups(net)}
    ticket = Ticket.from_net(net, parameter_masks(net, keep), round=1, seed=0, task="denoise")
    assert ticket.structure == "channel"
    task = make_task("denoise", "set5/baby", crop=64, iters=2)
    for seed in (0, 1):
        raced, _ = fast_tickets.SpeedJob("random_channels", task, ticket, seed).build()
        moved = _masks_for(TransferJob(ticket, task, "random_like", seed))
        kept = channels_of(ticket.build_net(), moved)
        assert any(not torch.equal(kept[k], keep[k]) for k in keep)
        assert all(torch.equal(kept[k], random_channels_like(keep, seed=seed)[k]) for k in keep)
        theta0 = ticket.build_net()
        theta0.load_state_dict(ticket.rewind)
        mine = compact(theta0, kept).state_dict()
        assert mine.keys() == raced.state_dict().keys()
        assert all(torch.equal(v, raced.state_dict()[k]) for k, v in mine.items())
