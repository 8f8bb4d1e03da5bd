"""The results ledger: a run exported after some levels, restored elsewhere and resumed, gives
exactly the records of the run that never stopped; what cannot be continued faithfully is refused."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch

from lipkit.lottery.imp import ImpRun, imp
from lipkit.runs.ledger import LedgerError, LedgerRun, decode_chain, encode_chain, export_run, restore_run, theta0_state
from lipkit.tasks import make_task

ARCH = dict(num_channels_down=[8] * 5, num_channels_up=[8] * 5)


def _imp(task, run_dir, rounds, baselines=("random_global",)):
    return imp(task, rounds=rounds, rate=0.5, seeds=[0, 1], arch=ARCH, run_dir=run_dir, workers=1,
               baselines=list(baselines), progress=False)


def _numbers(run: ImpRun) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in run.records()),
                  key=lambda r: (r["method"], r["seed"], r["round"]))


def test_masks_of_every_level_are_one_array_and_must_be_nested():
    g = torch.Generator().manual_seed(0)
    shapes = {"a": (4, 3, 3, 3), "b": (8, 4, 1, 1)}
    levels = [OrderedDict((n, torch.ones(s)) for n, s in shapes.items())]
    for _ in range(3):  # each level drops a random half of the survivors
        levels.append(OrderedDict((n, m * (torch.rand(m.shape, generator=g) > 0.5)) for n, m in levels[-1].items()))
    blob, names, dims = encode_chain(levels)
    for k, masks in enumerate(levels):
        decoded = decode_chain(blob, names, dims, k)
        assert all(torch.equal(decoded[n], masks[n]) for n in shapes)
    levels[2]["a"][0, 0, 0, 0], levels[1]["a"][0, 0, 0, 0] = 1.0, 0.0
    with pytest.raises(LedgerError, match="level 2 keep weights that level 1 pruned"):
        encode_chain(levels)


def test_a_run_continued_from_the_ledger_equals_the_run_that_never_stopped(tmp_path, mirror_dir):
    task = make_task("denoise", "set5/baby", crop=64, iters=4)
    whole = _imp(task, tmp_path / "whole", rounds=3)
    ledger = tmp_path / "ledger"
    _imp(task, tmp_path / "first" / "run", rounds=1)  # one window: levels 0-1
    export_run(tmp_path / "first" / "run", ledger)
    entry = LedgerRun(ledger, "run")
    first = entry.levels(0)
    assert [e["record"]["round"] for e in first] == [0, 1] and first[0]["provenance"]["device"].startswith("CPU")
    assert restore_run(ledger, "run", tmp_path / "second" / "run") == [0, 1]  # another machine, another folder
    resumed = _imp(task, tmp_path / "second" / "run", rounds=3)
    export_run(tmp_path / "second" / "run", ledger)
    assert _numbers(resumed) == _numbers(whole)
    assert [e["record"]["round"] for e in entry.levels(1)] == [0, 1, 2, 3]
    assert entry.levels(0)[:2] == first  # recorded levels keep where they were made
    assert len(entry.levels(0, "random_global")) == 3
    weights = sum(m.numel() for m in whole.ticket(0, 0).masks.values())
    assert entry.masks(0).stat().st_size < 0.5 * weights * 5 / 8  # under half of five bit-packed levels


def test_a_restore_refuses_other_weights_a_damaged_file_and_a_used_folder(tmp_path, mirror_dir):
    task = make_task("denoise", "set5/baby", crop=64, iters=2)
    _imp(task, tmp_path / "run", rounds=1, baselines=())
    ledger = tmp_path / "ledger"
    export_run(tmp_path / "run", ledger)
    with pytest.raises(LedgerError, match="exists"):
        restore_run(ledger, "run", tmp_path / "run")
    entry = LedgerRun(ledger, "run")

    def other_weights(config, seed):
        state = theta0_state(config, seed)
        state["1.1.1.1.weight"] = state["1.1.1.1.weight"] + 1
        return state

    with pytest.raises(LedgerError, match="does not regenerate bit-identically"):
        restore_run(ledger, "run", tmp_path / "a", make_rewind=other_weights)
    assert not (tmp_path / "a").exists()  # refused before anything was written: a retry can use the folder
    entry.masks(0).write_bytes(entry.masks(0).read_bytes()[:-1] + b"\0")
    with pytest.raises(LedgerError, match="masks.xz was edited after the ledger wrote it"):
        restore_run(ledger, "run", tmp_path / "b")


@pytest.fixture
def ledger_run(tmp_path, mirror_dir):
    task = make_task("denoise", "set5/baby", crop=64, iters=2)
    _imp(task, tmp_path / "run", rounds=1, baselines=())
    export_run(tmp_path / "run", tmp_path / "ledger")
    return LedgerRun(tmp_path / "ledger", "run")


def _refused(entry, tmp_path, match):
    """Both ways in refuse, naming the file, before anything is written."""
    with pytest.raises(LedgerError, match=match):
        restore_run(entry.dir.parent, "run", tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    with pytest.raises(LedgerError, match=match):
        export_run(tmp_path / "run", entry.dir.parent)


def test_an_edited_record_is_refused_by_restore_and_export(ledger_run, tmp_path):
    job = json.loads(ledger_run.job(0, "imp").read_text())
    job["levels"][1]["record"]["best_psnr"] = 99.0
    ledger_run.job(0, "imp").write_text(json.dumps(job))
    _refused(ledger_run, tmp_path, r"seed_0/imp.json was edited after the ledger wrote it")


@pytest.mark.parametrize("edit,match", [
    (lambda s: s["shapes"].__setitem__(0, [s["shapes"][0][0] // 2, *s["shapes"][0][1:]]),
     "describes layers the network of .* does not have"),
    (lambda s: s["names"].__setitem__(0, "renamed.weight"), "describes layers the network of .* does not have"),
    (lambda s: s.__setitem__("mask_levels", s["mask_levels"] - 1), "says mask_levels = 1, but .* prunes weights at"),
    (lambda s: s.__setitem__("mask_levels", s["mask_levels"] + 1), "says mask_levels = 3, but .* prunes weights at"),
])
def test_an_edited_state_is_refused_even_with_its_manifest_updated(ledger_run, tmp_path, edit, match):
    from lipkit.runs.ledger_files import write_manifest

    path = ledger_run.state(0)
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))
    _refused(ledger_run, tmp_path, "state.json was edited after the ledger wrote it")
    write_manifest(ledger_run)  # as someone who knows the manifest would
    _refused(ledger_run, tmp_path, match)


def test_a_shortened_masks_file_with_its_checksums_updated_is_refused_naming_it(ledger_run, tmp_path):
    import hashlib
    import lzma

    from lipkit.runs.ledger_files import write_manifest

    short = lzma.compress(lzma.decompress(ledger_run.masks(0).read_bytes())[:-100])
    ledger_run.masks(0).write_bytes(short)
    state = json.loads(ledger_run.state(0).read_text())
    ledger_run.state(0).write_text(json.dumps(dict(state, masks_sha256=hashlib.sha256(short).hexdigest())))
    write_manifest(ledger_run)
    _refused(ledger_run, tmp_path, "masks.xz holds .* weights but .* lays out")
    ledger_run.masks(0).write_bytes(short[:-20])  # cut mid-stream: not LZMA any more
    write_manifest(ledger_run)
    _refused(ledger_run, tmp_path, "masks.xz is damaged")


def test_a_ledger_from_before_the_manifest_is_verified_once_and_given_one(ledger_run, tmp_path):
    ledger_run.manifest.unlink()
    assert restore_run(ledger_run.dir.parent, "run", tmp_path / "restored") == [0, 1]
    assert ledger_run.manifest.exists()
    job = json.loads(ledger_run.job(1, "imp").read_text())
    job["levels"][0]["record"]["final_psnr"] = 1.0
    ledger_run.job(1, "imp").write_text(json.dumps(job))
    with pytest.raises(LedgerError, match="seed_1/imp.json was edited"):
        restore_run(ledger_run.dir.parent, "run", tmp_path / "again")


# θ0 of seed 0 of the LIP backbone (2.2M weights) as lipkit makes it with torch 2.13 on the CPU: a
# run goes on from the ledger only where θ0 regenerates to exactly these bytes
BACKBONE_THETA0_SHA256 = "6a42653fdec92f401356682e86894ab1c73c25fba521cea14b33e94ecfa68242"


def _backbone_config() -> dict:
    from lipkit.models import skip_net

    arch = {k: v for k, v in skip_net().config.items() if k != "arch"}
    return dict(arch=arch, search_on="observation", keep_input_convs_dense=False, rewind_iteration=0)


def test_theta0_regenerates_bit_identically_from_its_seed():
    from lipkit.runs.ledger import state_sha256, theta0_state

    assert state_sha256(theta0_state(_backbone_config(), 0)) == BACKBONE_THETA0_SHA256


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_theta0_is_the_same_when_cuda_is_the_default_device():
    from lipkit.runs.ledger import state_sha256, theta0_state

    with torch.device("cuda"):
        made = theta0_state(_backbone_config(), 0)
    assert all(t.device.type == "cpu" for t in made.values())
    assert state_sha256(made) == BACKBONE_THETA0_SHA256
