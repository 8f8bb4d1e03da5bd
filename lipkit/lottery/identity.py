"""A lottery run's identity: the id its records carry, its folder's name, and folders from before.

A run's config (:meth:`lipkit.lottery.settings.ImpSettings.config`) names it twice:

- :func:`run_id`, 12 hex digits carried by every record: everything but the fields that extend a
  run (:data:`EXTENDABLE`) and the seed set, so that a seed's records name the chain they belong to
  (seed 2's fits are the same whichever other seeds run);
- :func:`folder_name`, a readable prefix and 8 hex digits of everything but the fields that extend
  a run, seeds included: two runs differing in seeds, iterations, crop or window never share a folder.

Folders made before configs named their seeds are recognised by their stored config
(:func:`name_legacy_seeds`, :func:`adopt_legacy`), or refused in one line that says what to do. A
renamed config field (:data:`lipkit.store.folder.RENAMED_FIELDS`) is hashed under its first name, so
that a rename never renames a run or orphans its records.

>>> config = dict(task={"kind": "denoise"}, rate=0.2, rounds=3, baselines=[], seeds=[0, 1])
>>> run_id(config) == run_id(dict(config, rounds=9, seeds=[2]))  # extending a run or other seeds: same chain
True
>>> folder_name("imp_baby", config) == folder_name("imp_baby", dict(config, seeds=[2]))
False
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lipkit.store.folder import RENAMED_FIELDS, RunConfigError, RunLock, read_config, read_json, union, write_json
from lipkit.store.paths import ImpFolder

EXTENDABLE = {"rounds": max, "baselines": union}  # config fields that grow a run instead of redefining it


def config_digest(config: dict, leave_out) -> str:
    """sha256 (hex) of a run's config without the fields ``leave_out`` (renamed fields under their first name)."""
    first_name = {new: old for old, new in RENAMED_FIELDS.items()}
    core = {first_name.get(k, k): v for k, v in config.items() if k not in leave_out}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


def run_id(config: dict) -> str:
    """12 hex digits naming the chain a record belongs to: the run's settings but those that only
    extend it and the seed set (a seed's fits are the same whichever other seeds run); every record
    carries it, so that no record is ever taken for another run's. The folder's name covers the
    seeds too (:func:`lipkit.lottery.identity.folder_name`)."""
    return config_digest(config, set(EXTENDABLE) | {"seeds"})[:12]


def folder_name(prefix: str, config: dict) -> str:
    """``prefix`` and 8 hex digits of ``config`` without the fields that extend a run (seeds included)."""
    return f"{prefix}_{config_digest(config, set(EXTENDABLE))[:8]}"


def adopt_legacy(old: Path) -> Path | None:
    """A run folder made before folders were named by their settings (its name is the bare prefix and
    its config has no ``seeds``), renamed to the name its own config and seed folders give, with those
    seeds written into its config. Returns the new path; None when ``old`` is no such folder."""
    if not (old / "config.json").exists():
        return None
    config = read_json(old / "config.json")
    if "seeds" in config or config.get("kind") == "gan":
        return None
    with RunLock(old):
        config["seeds"] = ImpFolder(old).seeds()
        new = old.with_name(folder_name(old.name, config))
        if new.exists():
            raise RunConfigError(f"{old} (made before run folders were named by their settings) and {new} hold the "
                                 f"same run; keep one: move or delete the other")
        write_json(old / "config.json", config)
    old.rename(new)
    return new


def name_legacy_seeds(run_dir: Path, config: dict) -> None:
    """A folder made before configs named their seeds, holding this run: its config gets the asked
    seeds when its seed folders are among them; a folder holding other seeds is refused in one line."""
    stored = read_config(run_dir / "config.json") if (run_dir / "config.json").exists() else None
    if stored is None or "seeds" in stored or "seeds" not in config:
        return
    same = set(EXTENDABLE) | {"seeds"}
    if config_digest(stored, same) != config_digest(json.loads(json.dumps(config)), same):
        return  # another run: open_config names the differences
    found = ImpFolder(run_dir).seeds()
    if not set(found) <= set(config["seeds"]):
        raise RunConfigError(f"{run_dir} was made before run folders named their seeds and holds seeds {found}, not "
                             f"only the asked {config['seeds']}; ask for exactly {found} (--seed-list "
                             f"{' '.join(map(str, found))}), or move it away to start a run of these seeds")
    write_json(run_dir / "config.json", dict(stored, seeds=config["seeds"]))
