"""Classification IMP (lipkit.lottery.classify) on tiny data: the driver's guarantees (resume after
kill -9, extension, branch baselines, other settings refused), its pruning against a hand-computed
global magnitude prune, no rewinding as the official code, and masks moving between the two tasks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from lipkit.cli import main
from lipkit.errors import UsageError
from lipkit.lottery import classify
from lipkit.lottery.classify import Classifier, classifier_masks, imp_classify, prior_masks
from lipkit.lottery.settings import ClassifyImpSettings
from lipkit.models import skip_net, theta0
from lipkit.store.folder import RunConfigError, load_masks, load_tensors
from lipkit.store.paths import ImpFolder

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(num_channels_down=[4] * 5, num_channels_up=[4] * 5, num_channels_skip=[2] * 5)
SMALL = dict(dataset="fake", size=36, epochs=2, batch_size=64, milestones=(1,), arch=TINY)


def run(tmp_path, name="run", **kw):
    return imp_classify(run_dir=tmp_path / name, device="cpu", workers=1, progress=False, **dict(SMALL, **kw))


def test_a_level_is_pruned_by_global_magnitude_of_its_trained_weights(tmp_path):
    result = run(tmp_path, rounds=2, rate=0.3)
    folder = ImpFolder(result.dir)
    for k in (0, 1):
        trained = load_tensors(folder.trained(0, k, "imp_classify"))
        masks = load_masks(folder.masks(0, k))
        nxt = load_masks(folder.masks(0, k + 1))
        # by hand: of the weights still kept, the 30 % smallest |w| over all backbone convs go
        kept = torch.cat([trained[n][masks[n].bool()].abs() for n in masks])
        n_prune = round(0.3 * kept.numel())
        threshold = kept.sort().values[n_prune - 1]
        for n in masks:
            expected = masks[n].bool() & (trained[n].abs() > threshold)
            assert torch.equal(nxt[n].bool(), expected), n
    assert all(n.startswith("backbone.") for n in masks)  # only the backbone's convs: the head is not pruned
    records = result.records("imp_classify")
    assert [r["round"] for r in records] == [0, 1, 2]
    assert records[2]["conv_sparsity"] == pytest.approx(1 - 0.7 ** 2, abs=2e-3)
    for r in records:
        assert 0 <= r["test_accuracy"] <= 1 and r["best_accuracy"] == max(r["accuracy_curve"])
        assert len(r["accuracy_curve"]) == 2 and r["threads"] >= 1 and r["device"] == "cpu"


def test_without_rewinding_a_level_starts_from_the_previous_levels_weights(tmp_path, monkeypatch):
    starts = []
    real = classify.train_classifier

    def spy(net, data, settings, **kw):
        starts.append({k: v.clone() for k, v in net.state_dict().items()})
        return real(net, data, settings, **kw)

    monkeypatch.setattr(classify, "train_classifier", spy)
    none = run(tmp_path, "none", rounds=1)
    folder = ImpFolder(none.dir)
    trained_0, masks_1 = load_tensors(folder.trained(0, 0, "imp_classify")), load_masks(folder.masks(0, 1))
    assert all(torch.equal(starts[1][k], trained_0[k]) for k in trained_0 if k not in masks_1)
    starts.clear()
    rewound = run(tmp_path, "theta0", rounds=1, rewind="theta0")
    assert all(torch.equal(starts[0][k], starts[1][k]) for k in starts[0] if k not in masks_1)
    # θ0 is the DIP's θ0 of the seed in every backbone weight that has the DIP's shape
    prior = theta0(0, **TINY).state_dict()
    shared = [k for k in prior if f"backbone.{k}" in starts[0] and starts[0][f"backbone.{k}"].shape == prior[k].shape]
    assert len(shared) > 20 and all(torch.equal(starts[0][f"backbone.{k}"], prior[k]) for k in shared)
    assert rewound.config["rewind"] == "theta0"


def test_a_run_resumes_extends_and_refuses_other_settings(tmp_path):
    short = run(tmp_path, rounds=1, baselines=["random_layerwise"])
    first = short.records()
    longer = run(tmp_path, rounds=2, baselines=["random_layerwise", "oneshot"])
    assert [r for r in longer.records() if r["round"] <= 1 and r["method"] != "oneshot"] == first
    methods = {(r["method"], r["round"]) for r in longer.records()}
    assert {("random_layerwise", 2), ("oneshot", 1), ("oneshot", 2), ("imp_classify", 2)} <= methods
    with pytest.raises(RunConfigError, match="lr"):
        run(tmp_path, rounds=2, lr=0.05)
    straight = run(tmp_path, "straight", rounds=2)  # an uninterrupted run gives the same chain
    assert [r["test_accuracy"] for r in straight.records("imp_classify")] == \
        [r["test_accuracy"] for r in longer.records("imp_classify")]


def test_a_run_killed_mid_level_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "lipkit", "classify", "--dataset", "fake", "--size", "36", "--epochs", "2",
               "--batch-size", "64", "--milestones", "1", "--width", "4", "--rounds", "6", "--workers", "1",
               "--device", "cpu", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = out / "seed_0" / "round_01.json"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (out / "seed_0" / "round_06.json").exists()
    written = first.stat().st_mtime_ns
    assert subprocess.run(command, capture_output=True).returncode == 0
    assert first.stat().st_mtime_ns == written  # finished levels are kept, not redone
    straight = tmp_path / "straight"  # the same command, never interrupted (same process settings, threads)
    assert subprocess.run(command[:-1] + [str(straight)], capture_output=True).returncode == 0
    resumed, alone = (json.loads((folder / "summary.json").read_text())["records"] for folder in (out, straight))
    assert [r["test_accuracy"] for r in resumed] == [r["test_accuracy"] for r in alone]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in alone]


def test_masks_move_between_a_classifier_and_an_image_prior():
    net = Classifier(3, 36, head="sigmoid", arch=TINY)
    prior = skip_net(**TINY)
    masks = {n: (torch.rand_like(w) > 0.5).float() for n, w in prior.named_parameters() if w.dim() == 4}
    there = classifier_masks(masks, net)
    back = prior_masks(there, prior)
    moved = [n for n in masks if torch.equal(back[n], masks[n])]
    dense = [n for n in masks if n not in moved]
    assert dense == [f"{n}.weight" for n in prior.input_conv_names]  # the convs that read z (32 channels) or the image (3) stay dense
    assert all(bool(back[n].all()) for n in dense)


def test_bad_settings_are_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(UsageError, match="size must leave at least 2 px"):
        ClassifyImpSettings(size=32)
    code = main(["classify", "--dataset", "cifar10", "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cifar-10-batches-py" in err
    assert not (tmp_path / "never").exists()
    code = main(["classify", "--dataset", "fake", "--rewind", "early", "--epochs", "0", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "--epochs must be" in err and "--rewind-iteration is the early rewind point" in err


def test_cifar10_is_read_from_its_extracted_batches(tmp_path):
    import pickle

    import numpy as np

    from lipkit.datasets import labelled

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        written[name] = dict(data=rng.integers(0, 256, (4, 3072), dtype=np.uint8), labels=list(rng.integers(0, 10, 4)))
        (folder / name).write_bytes(pickle.dumps(written[name]))
    train_x, train_y, test_x, test_y = labelled("cifar10", tmp_path)
    assert train_x.shape == (20, 3, 32, 32) and test_x.shape == (4, 3, 32, 32)
    first = torch.from_numpy(written["data_batch_1"]["data"][0].reshape(3, 32, 32)).float() / 127.5 - 1
    assert torch.equal(train_x[0], first) and train_y.tolist()[:4] == written["data_batch_1"]["labels"]
    assert test_y.tolist() == written["test_batch"]["labels"]
    (folder / "data_batch_3").unlink()
    with pytest.raises(UsageError, match="cifar-10-batches-py"):
        labelled("cifar10", tmp_path)
