"""A run's settings: checked once, every problem at once; the command line made from them; the
identity of the runs made before them kept."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import pytest

from conftest import ROOT
from lipkit.cli import main
from lipkit.errors import UsageError
from lipkit.lottery.identity import folder_name, run_id
from lipkit.lottery.settings import GanImpSettings, ImpSettings, SharedImpSettings, add_options, from_options
from lipkit.store.folder import read_config

TINY = dict(num_channels_down=[8] * 5, num_channels_up=[8] * 5)


def test_every_problem_is_named_at_once():
    with pytest.raises(UsageError) as err:
        ImpSettings(rounds=-1, rate=2, seeds=[0, 0], rewind_iteration=-3, criterion="l1", baselines=["nope"])
    message = str(err.value)
    for said in ("rounds must be a whole number >= 0, got -1", "rate must be in (0, 1)", "seeds must be distinct",
                 "rewind_iteration must be a whole number >= 0", "criterion must be one of magnitude, random",
                 "baselines must be any of random_global, random_layerwise, oneshot"):
        assert said in message
    assert "\n" not in message


def test_settings_are_frozen_and_normalised():
    s = ImpSettings(seeds=range(2), baselines=["oneshot"], arch=TINY)
    assert s.seeds == (0, 1) and s.baselines == ("oneshot",)
    assert s.arch["num_channels_skip"] == [4, 4, 4, 4, 4]  # every skip_net argument, so equal nets name equal runs
    assert ImpSettings(arch=s.arch) == ImpSettings(arch=TINY)
    with pytest.raises(AttributeError):
        s.rounds = 3


def test_each_kind_of_run_refuses_what_it_cannot_do():
    with pytest.raises(UsageError, match="channel pruning has no branch baselines"):
        ImpSettings(structure="channel", baselines=["oneshot"])
    with pytest.raises(UsageError, match="weight-sharing IMP has rewind_iteration = 0 only"):
        SharedImpSettings(rewind_iteration=5)
    with pytest.raises(UsageError, match="input_mode must be one of shared, per_image"):
        SharedImpSettings(input_mode="both")
    with pytest.raises(UsageError, match="criteria must be any of magnitude, random"):
        GanImpSettings(criteria=("l1",))
    with pytest.raises(UsageError, match="criteria must be a non-empty subset"):
        GanImpSettings(criteria=())


def test_the_command_line_options_are_the_settings():
    parser = argparse.ArgumentParser()
    add_options(parser, ImpSettings)
    text = parser.format_help()
    for f in fields(ImpSettings):
        if f.metadata.get("help"):
            assert f.metadata["help"][:30] in " ".join(text.split()), f.name
    options = parser.parse_args(["--rounds", "3", "--rewind-iter", "2", "--baselines", "oneshot", "random_global",
                                 "--keep-input-convs-dense", "--search-on", "clean"])
    assert from_options(ImpSettings, options, seeds=[1], arch=TINY) == ImpSettings(
        rounds=3, rewind_iteration=2, baselines=("oneshot", "random_global"), keep_input_convs_dense=True,
        search_on="clean", seeds=(1,), arch=TINY)
    bad = parser.parse_args(["--rounds", "-2", "--rate", "1.5"])
    with pytest.raises(UsageError, match=r"--rounds must be .*; --rate must be"):
        from_options(ImpSettings, bad, seeds=[0])


def test_imp_names_bad_settings_as_its_options_in_one_line(capsys, tmp_path):
    code = main(["imp", "--task", "denoise", "--image", "set5/baby", "--rate", "1.5", "--rewind-iter", "-1",
                 "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--rate must be in (0, 1)" in err and "--rewind-iter must be a whole number >= 0" in err
    assert not (tmp_path / "never").exists()


def test_a_renamed_field_keeps_the_runs_name_and_id_and_its_old_option():
    config = ImpSettings(criterion="random", arch=TINY).config(task={"kind": "denoise"})
    before = {("method" if k == "criterion" else k): v for k, v in config.items()}  # as stored before the rename
    assert run_id(before) == run_id(config) and folder_name("p", before) == folder_name("p", config)
    assert run_id(dict(config, criterion="magnitude")) != run_id(config)
    parser = argparse.ArgumentParser()
    add_options(parser, ImpSettings)
    assert parser.parse_args(["--method", "random"]).criterion == "random"  # the option's old name
    assert parser.parse_args([]).criterion == "magnitude" and "--method" not in parser.format_help()


def test_seeds_name_the_folder_but_not_the_chain():
    config = ImpSettings(seeds=(0, 1), arch=TINY).config(task={"kind": "denoise"})
    other_seeds = dict(config, seeds=[0, 1, 2])
    longer = dict(config, rounds=30, baselines=["oneshot"])
    assert run_id(config) == run_id(other_seeds) == run_id(longer)
    assert folder_name("p", config) != folder_name("p", other_seeds)
    assert folder_name("p", config) == folder_name("p", longer)  # more rounds or baselines extend the run
    assert folder_name("p", config) != folder_name("p", dict(config, task={"kind": "denoise", "iters": 3}))


@pytest.mark.parametrize("entry", sorted((ROOT / "results" / "paper_profile" / "ledger").glob("*/config.json")),
                         ids=lambda p: p.parent.name)
def test_the_ledgers_runs_keep_their_ids_and_are_named_by_their_settings(entry):
    config = read_config(entry)  # today's field names (the ledger's files keep those they were written with)
    prefix = entry.parent.name.rsplit("_", 1)[0]
    assert entry.parent.name == folder_name(prefix, config)
    assert sorted(int(p.name.split("_")[1]) for p in entry.parent.glob("seed_*")) == config["seeds"]
    for job in entry.parent.glob("seed_*/imp.json"):  # every record was written under the run id of before
        assert json.loads(job.read_text())["run"] == run_id(config)
    # the settings object writes the same config
    settings = ImpSettings(**{f.name: config[f.name] for f in fields(ImpSettings) if f.name in config})
    assert settings.config(task=config["task"]) == config
