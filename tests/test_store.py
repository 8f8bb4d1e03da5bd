"""Run folders: atomic files, a readable refusal of other settings, runs that grow, and the code in cache keys."""

import json

import pytest
import torch

from lipkit.store.cache import RecordCache, code_fingerprint, import_closure
from lipkit.store.folder import (RunConfigError, load_masks, open_config, save_masks, save_state, union,
                                 write_json)


def test_files_are_written_whole(tmp_path):
    write_json(tmp_path / "r.json", {"a": [1, 2]})
    masks = {"w": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    save_masks(tmp_path / "m.safetensors", masks)
    save_state(tmp_path / "s.safetensors", {"w": torch.ones(2, requires_grad=True)})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1, 2]}
    assert torch.equal(load_masks(tmp_path / "m.safetensors")["w"], masks["w"])
    assert not list(tmp_path.glob("*.tmp"))


def test_a_folder_refuses_other_settings_and_grows_by_the_extendable_ones(tmp_path):
    config = dict(rate=0.2, rounds=3, baselines=["random_global"], task=dict(image="set5/baby", sigma=0.1))
    grow = {"rounds": max, "baselines": union}
    assert open_config(tmp_path, config, extendable=grow) == config
    with pytest.raises(RunConfigError, match=r"task.sigma: folder has 0.1, this run asks for 0.2"):
        open_config(tmp_path, dict(config, task=dict(image="set5/baby", sigma=0.2)), extendable=grow)
    # more rounds and another baseline extend the run; fewer of either leave it as it is
    more = open_config(tmp_path, dict(config, rounds=5, baselines=["oneshot"]), extendable=grow)
    assert more["rounds"] == 5 and more["baselines"] == ["random_global", "oneshot"]
    assert open_config(tmp_path, dict(config, rounds=1, baselines=[]), extendable=grow) == more
    assert json.loads((tmp_path / "config.json").read_text()) == more
    with pytest.raises(RunConfigError, match="rounds"):  # without the rule, rounds are a setting
        open_config(tmp_path, dict(more, rounds=6))


def test_cache_keys_follow_the_description_the_tensors_and_the_code(tmp_path, monkeypatch):
    cache = RecordCache(tmp_path, computed_by="lipkit.studies.transfer")
    key = cache.key({"seed": 0}, [("mask", torch.ones(3))])
    assert key == cache.key({"seed": 0}, [("mask", torch.ones(3))])
    assert key != cache.key({"seed": 1}, [("mask", torch.ones(3))])
    assert key != cache.key({"seed": 0}, [("mask", torch.zeros(3))])
    assert RecordCache(tmp_path, computed_by="lipkit.metrics").key({"seed": 0}, [("mask", torch.ones(3))]) != key
    assert code_fingerprint("lipkit.fitting.loop") != code_fingerprint("lipkit.metrics")
    with pytest.raises(ValueError, match="is not a lipkit module"):
        RecordCache(tmp_path, computed_by="lipkit.studies.transfer.TransferJob")
    cache.put(key, {"best_psnr": 1.0}, torch.zeros(3, 4, 4))
    assert cache.get(key)["best_psnr"] == 1.0 and cache.get(key)["image"].endswith(".png")
    import lipkit.store.cache as cache_mod

    monkeypatch.setattr(cache_mod, "SCHEMA_VERSION", cache_mod.SCHEMA_VERSION + 1)
    assert cache.key({"seed": 0}, [("mask", torch.ones(3))]) != key


def test_the_code_in_a_key_is_the_import_closure_of_the_job(tmp_path, monkeypatch):
    """Editing the code of a module the job imports (however indirectly, inside a function too)
    changes the key; editing one it never imports, or only a comment or docstring, does not."""
    import shutil

    import lipkit.store.cache as cache_mod

    closure = import_closure("lipkit.studies.transfer")
    # the fit loop and what picks the three PSNRs are in it; figures and the command line are not
    assert {"lipkit", "lipkit.fitting.loop", "lipkit.fitting.tracking", "lipkit.fitting.early_stopping",
            "lipkit.fitting.records"} <= set(closure)
    assert not {"lipkit.plots", "lipkit.widgets", "lipkit.cli"} & set(closure)

    copy = tmp_path / "lipkit"
    shutil.copytree(cache_mod.LIPKIT_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache_mod, "LIPKIT_ROOT", copy)

    def fingerprint():
        cache_mod.import_closure.cache_clear()
        cache_mod.code_fingerprint.cache_clear()
        return cache_mod.code_fingerprint("lipkit.studies.transfer")

    def append(name, text):
        (copy / name).write_text((copy / name).read_text() + text)

    try:
        before = fingerprint()
        append("plots.py", "\nFIGURE_EDIT = 1\n")
        assert fingerprint() == before
        append("fitting/early_stopping.py", "\n# a comment on ES-WMV\n")  # comments and docstrings compute nothing
        es = copy / "fitting" / "early_stopping.py"
        es.write_text(es.read_text().replace('"""', '"""An edited docstring. ', 1))
        assert fingerprint() == before
        append("fitting/early_stopping.py", "\nES_EDIT = 1\n")
        edited = fingerprint()
        assert edited != before
        # a module reached only by an import inside a function counts too
        (copy / "extra_numbers.py").write_text("X = 1\n")
        append("fitting/tracking.py", "\n\ndef _late():\n    from lipkit.extra_numbers import X\n    return X\n")
        with_extra = fingerprint()
        assert with_extra != edited and "lipkit.extra_numbers" in cache_mod.import_closure("lipkit.studies.transfer")
        append("extra_numbers.py", "Y = 2\n")
        assert fingerprint() != with_extra
    finally:
        monkeypatch.undo()
        cache_mod.import_closure.cache_clear()
        cache_mod.code_fingerprint.cache_clear()
