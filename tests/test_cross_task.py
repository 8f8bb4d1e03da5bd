"""Tickets across restoration and classification (lipkit.studies.cross_task), on tiny data."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lipkit.lottery.classify import imp_classify, prior_masks
from lipkit.lottery.settings import ClassifyImpSettings
from lipkit.models import skip_net, theta0
from lipkit.pruning.masks import mask_overlap, random_like
from lipkit.store.folder import load_masks
from lipkit.studies import cross_task
from lipkit.studies.cross_task import ClassifierJob, classifier_runs, prior_ticket, random_overlap

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(num_channels_down=[4] * 5, num_channels_up=[4] * 5, num_channels_skip=[2] * 5)
SETTINGS = ClassifyImpSettings(dataset="fake", size=36, epochs=1, batch_size=64, milestones=(1,), arch=TINY,
                               rewind="theta0")


def prior_ticket_masks(seed: int = 0):
    net = skip_net(**TINY)
    g = torch.Generator().manual_seed(seed)
    return {n: (torch.rand(w.shape, generator=g) > 0.6).float() for n, w in net.named_parameters() if w.dim() == 4}


def test_the_expected_random_overlap_is_what_random_masks_have():
    a = {"w": torch.tensor([1.0] * 50 + [0.0] * 50)}
    assert random_overlap(a, a) == pytest.approx(25 / 75)  # 50 and 50 of 100: 25 shared, 75 in the union
    masks = prior_ticket_masks()
    drawn = [mask_overlap(random_like(masks, seed=s, key=("a",)), random_like(masks, seed=s, key=("b",)))["iou"]
             for s in range(20)]
    assert sum(drawn) / len(drawn) == pytest.approx(random_overlap(masks, masks), abs=0.01)


def test_a_restoration_ticket_trains_as_a_classifier_once(tmp_path, monkeypatch):
    masks = prior_ticket_masks()
    jobs = [ClassifierJob(masks, SETTINGS, 0, "ticket", "prior"),
            ClassifierJob(masks, SETTINGS, 0, "random_like", "prior"), ClassifierJob(None, SETTINGS, 0, "dense")]
    ticket, rand, dense = classifier_runs(jobs, cache_dir=tmp_path, device="cpu", workers=1)
    assert ticket["layer_density"] == rand["layer_density"]  # the same per-layer counts
    assert ticket["conv_sparsity"] > 0.3 and dense["conv_sparsity"] == 0
    assert all(0 <= r["test_accuracy"] <= 1 for r in (ticket, rand, dense))
    monkeypatch.setattr(cross_task, "train_with_masks", lambda *a: pytest.fail("a cached classifier was trained"))
    assert classifier_runs(jobs, cache_dir=tmp_path, device="cpu", workers=1) == [ticket, rand, dense]
    with pytest.raises(ValueError, match="dense job has no masks"):
        ClassifierJob(masks, SETTINGS, 0, "dense")


def test_a_classification_ticket_becomes_an_image_priors_ticket(tmp_path):
    run = imp_classify(replace(SETTINGS, rounds=1), run_dir=tmp_path / "run", device="cpu", workers=1,
                       progress=False)
    ticket = prior_ticket(run, 0, 1, image_size=(64, 64))
    prior = theta0(0, **TINY)
    assert all(torch.equal(ticket.rewind[k], v) for k, v in prior.state_dict().items())  # the DIP's θ0 of the seed
    expected = prior_masks(load_masks(run.folder.masks(0, 1)), prior)
    assert all(torch.equal(ticket.masks[n], expected[n]) for n in expected)
    inputs = [f"{n}.weight" for n in prior.input_conv_names]
    assert all(bool(ticket.masks[n].all()) for n in inputs)  # the convs reading z stay dense
    assert ticket.meta["conv_nonzero"] == int(sum(m.sum() for m in expected.values()))
    assert 0 < ticket.meta["conv_sparsity"] < 0.2  # a round of 20 % of the classifier's convs, less the input convs
    assert ticket.build_net()(torch.rand(1, 32, 64, 64)).shape == (1, 3, 64, 64)


def test_kept_weights_compares_the_convs_both_nets_share():
    from lipkit.lottery.classify import Classifier, classifier_masks

    prior = prior_ticket_masks()
    net = Classifier(1, 36, head="linear", arch=TINY)
    moved = classifier_masks(prior, net)  # the same masks, the classifier's input convs dense
    same = cross_task.kept_weights(prior, moved)
    inputs = {f"{n}.weight" for n in skip_net(**TINY).input_conv_names}
    assert set(same["layers"]) == set(prior) - inputs  # the input convs (other shapes) are left out
    assert same["iou"] == 1 and same["random_iou"] < 1
    assert same["restoration_density"] == same["classification_density"]
    other = cross_task.kept_weights(prior, classifier_masks(prior_ticket_masks(seed=1), net))
    assert other["iou"] == pytest.approx(other["random_iou"], abs=0.05)  # independent draws: chance overlap


def test_compared_levels_are_refused_in_one_line_beyond_either_search():
    from lipkit.errors import UsageError

    assert cross_task.compared_levels([2, 1], classify_rounds=2, restoration_rounds=3) == [1, 2]
    for bad in ([], [0], [3], [1, 1], [1.5]):
        with pytest.raises(UsageError, match="compare_rounds must be distinct levels from 1 to 2") as e:
            cross_task.compared_levels(bad, classify_rounds=2, restoration_rounds=3)
        assert "\n" not in str(e.value)
