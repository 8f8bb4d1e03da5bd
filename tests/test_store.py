"""Run folders: atomic files, a readable refusal of other settings, runs that grow, and the code in cache keys."""

import json

import pytest
import torch

from lipkit.store.cache import RecordCache, code_fingerprint
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
    cache = RecordCache(tmp_path)
    key = cache.key({"seed": 0}, [("mask", torch.ones(3))])
    assert key == cache.key({"seed": 0}, [("mask", torch.ones(3))])
    assert key != cache.key({"seed": 1}, [("mask", torch.ones(3))])
    assert key != cache.key({"seed": 0}, [("mask", torch.zeros(3))])
    assert RecordCache(tmp_path, modules=("fit",)).key({"seed": 0}, [("mask", torch.ones(3))]) != key
    assert code_fingerprint(("fit",)) != code_fingerprint(("metrics",))
    cache.put(key, {"best_psnr": 1.0}, torch.zeros(3, 4, 4))
    assert cache.get(key)["best_psnr"] == 1.0 and cache.get(key)["image"].endswith(".png")
    import lipkit.store.cache as cache_mod

    monkeypatch.setattr(cache_mod, "SCHEMA_VERSION", cache_mod.SCHEMA_VERSION + 1)
    assert cache.key({"seed": 0}, [("mask", torch.ones(3))]) != key
