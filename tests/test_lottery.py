"""The lottery driver on its own, with a trainer that trains nothing: levels, resume, extension,
baselines and weight groups in milliseconds (the run-level tests of imp, weight sharing and GANs
check that their trainers plug in)."""

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from lipkit.lottery.driver import BRANCHES, Trained, start_run
from lipkit.store.folder import RunConfigError, load_masks
from lipkit.store.paths import ImpFolder


class CountingTrainer:
    """'Training' moves every weight by an amount drawn from (seed, level, method): deterministic,
    different per level, and cheap. ``calls`` lists what was trained."""

    method = "imp"
    keep_dense = ()
    batch = False
    calls: list = []

    def __init__(self, config, payload, device, progress, batch):
        self.groups = payload.get("groups")
        self.scale = payload.get("scale", {})

    def network(self):
        return nn.ModuleDict({"G": nn.Sequential(nn.Conv2d(2, 8, 3), nn.Conv2d(8, 8, 3)),
                              "D": nn.Sequential(nn.Conv2d(8, 4, 3))})

    def rewind_state(self, seed):
        torch.manual_seed(seed)
        net = self.network()
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.mul_(self.scale.get(name.split(".")[0], 1.0))
        return OrderedDict((k, v.detach().clone()) for k, v in net.state_dict().items())

    def train(self, level, seeds, masks, rewinds, heads):
        out = []
        for seed, m, rewind, head in zip(seeds, masks, rewinds, heads):
            CountingTrainer.calls.append((head["method"], seed, level))
            g = torch.Generator().manual_seed(1000 * seed + 10 * level + len(head["method"]))
            weights = OrderedDict((n, (rewind[n] + 0.01 * torch.randn(rewind[n].shape, generator=g)) * m[n])
                                  for n in m)
            kept = sum(int(w.count_nonzero()) for w in weights.values())
            out.append(Trained(dict(head, kept=kept, total=sum(w.numel() for w in weights.values()),
                                    value=float(sum(w.sum() for w in weights.values()))), weights))
        return out


def make_counting_trainer(config, payload, device, progress, batch):
    return CountingTrainer(config, payload, device, progress, batch)


def run(tmp_path, rounds, baselines=(), rate=0.5, payload=None, criterion="magnitude", seeds=(0, 1)):
    config = dict(kind="test", rounds=rounds, rate=rate, criterion=criterion, baselines=list(baselines))
    CountingTrainer.calls = []
    start_run(tmp_path, config, make_counting_trainer, payload or {}, list(seeds), device="cpu", workers=1,
              progress=False, total=0)
    folder = ImpFolder(tmp_path)
    return {str(f.relative_to(tmp_path)): json.loads(f.read_text()) for s in folder.seeds()
            for f in folder.records(s, tuple(BRANCHES))}


def test_rounds_r_trains_levels_0_to_r_and_each_baseline_at_1_to_r(tmp_path):
    records = run(tmp_path, 3, baselines=["random_global", "random_layerwise", "oneshot"])
    imp = sorted((r["seed"], r["round"]) for r in records.values() if r["method"] == "imp")
    assert imp == [(s, k) for s in (0, 1) for k in range(4)]
    for name in ("random_global", "random_layerwise", "oneshot"):
        assert sorted(r["round"] for r in records.values() if r["method"] == name) == [1, 1, 2, 2, 3, 3]
    for r in records.values():  # every kind of masks prunes to 1 - (1 - rate)^k, to a weight per round
        assert abs(r["kept"] - r["total"] * 0.5 ** r["round"]) <= r["round"] + 1, r
    folder = ImpFolder(tmp_path)
    for k in range(1, 5):  # nested masks, the next level's included
        prev, cur = load_masks(folder.masks(0, k - 1)), load_masks(folder.masks(0, k))
        assert all(torch.all(cur[n] <= prev[n]) for n in cur)


def test_a_lost_record_is_retrained_alone_and_identically(tmp_path):
    first = run(tmp_path, 3, baselines=["random_layerwise"])
    ImpFolder(tmp_path).record(1, 2).unlink()          # as if killed while writing it
    ImpFolder(tmp_path).record(0, 3, "random_layerwise").unlink()
    again = run(tmp_path, 3, baselines=["random_layerwise"])
    assert sorted(CountingTrainer.calls) == [("imp", 1, 2), ("random_layerwise", 0, 3)]
    assert again == first


def test_more_rounds_and_baselines_extend_a_finished_run(tmp_path):
    run(tmp_path / "grown", 2)
    grown = run(tmp_path / "grown", 4, baselines=["random_global"])
    assert sorted(CountingTrainer.calls) == sorted([("imp", s, k) for s in (0, 1) for k in (3, 4)]
                                                   + [("random_global", s, k) for s in (0, 1) for k in range(1, 5)])
    straight = run(tmp_path / "straight", 4, baselines=["random_global"])
    assert grown == straight


def test_other_settings_are_refused_before_anything_is_written(tmp_path):
    run(tmp_path, 1)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(RunConfigError, match="rate"):
        run(tmp_path, 1, rate=0.3)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_groups_are_ranked_apart(tmp_path):
    # G's weights are 100x D's: one global ranking would prune D away; two rankings prune each by the rate
    payload = dict(groups=("G", "D"), scale={"G": 100.0})
    run(tmp_path / "apart", 2, payload=payload, seeds=[0])
    run(tmp_path / "together", 2, payload=dict(scale={"G": 100.0}), seeds=[0])

    def density(folder, group):
        m = load_masks(ImpFolder(folder).masks(0, 2))
        return float(torch.cat([v.flatten() for n, v in m.items() if n.startswith(group)]).mean())

    assert density(tmp_path / "apart", "D") == pytest.approx(0.25, abs=0.01)
    assert density(tmp_path / "apart", "G") == pytest.approx(0.25, abs=0.01)
    assert density(tmp_path / "together", "D") < 0.05


def test_a_record_of_another_run_is_never_adopted(tmp_path):
    run(tmp_path / "a", 1)
    run(tmp_path / "b", 1, rate=0.3)
    mine, theirs = ImpFolder(tmp_path / "a").record(0, 1), ImpFolder(tmp_path / "b").record(0, 1)
    mine.write_text(theirs.read_text())  # e.g. copied over by hand
    with pytest.raises(RunConfigError, match="written by another run"):
        run(tmp_path / "a", 1)
