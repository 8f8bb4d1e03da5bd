"""The results ledger: paper-scale IMP runs as small committed files, advanced window by window.

A GPU comes to this project for minutes at a time, and paper-scale IMP takes hours. The ledger
keeps, in the repository, everything a single-image IMP run needs to go on in the next window on
another machine, and every number it has produced so far with where it was made::

    results/paper_profile/ledger/<run>/config.json          the run's settings (``<run>``: its folder name)
    results/paper_profile/ledger/<run>/seed_<s>/<method>.json  one job: every level's record, each
                                                             with its provenance (device, torch,
                                                             commit, date, run id)
    results/paper_profile/ledger/<run>/seed_<s>/state.json  θ0's checksum and the masks' layout
    results/paper_profile/ledger/<run>/seed_<s>/masks.xz    the chain's masks of every level at once
    results/paper_profile/ledger/<run>/manifest.json        the sha256 of every file above

The chain's masks are nested (a pruned weight stays pruned), so one byte per weight, the level at
which it was pruned (255: never), holds them all; LZMA brings that to well under a byte. θ0 is
not stored: it is regenerated from the seed on the CPU (:meth:`lipkit.lottery.imp.SingleImageTrainer.rewind_state`)
and checked against the stored checksum, so a restore never continues from other weights.

The ledger holds the most expensive numbers the project has, so an edit is never taken silently:
:func:`verify` checks every file against the manifest and the structure in ``state.json`` (names,
shapes, levels) against the network the stored config builds, before :func:`export_run` or
:func:`restore_run` reads anything. A run written before the manifest existed is verified once
and given one.

:func:`export_run` writes a run folder's seeds into the ledger; :func:`restore_run` rebuilds a
run folder from it, which :func:`lipkit.lottery.imp.imp` then resumes like any other. Baselines whose
masks are random (``random_global``, ``random_layerwise``) regenerate from the seed and the
chain; ``oneshot`` needs the dense fit's weights, which the ledger does not keep (9 MB a seed).
"""

from __future__ import annotations

import datetime
import hashlib
import lzma
import os
import subprocess
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

import lipkit
from lipkit.device import device_name
from lipkit.runs.ledger_files import NEVER, LedgerError, LedgerRun, pruned_levels, verify, write_manifest
from lipkit.lottery.identity import run_id
from lipkit.store.folder import load_masks, load_tensors, read_json, save_masks, save_state, union, write_json
from lipkit.store.paths import ImpFolder

RESTORABLE_BASELINES = ("random_global", "random_layerwise")


def provenance(device) -> dict:
    """Where a record was made: device name, torch and lipkit versions, commit, UTC date."""
    name = device_name(device)
    root = Path(lipkit.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "lipkit", "scripts",
                                "benchmarks/*.py", "pyproject.toml", "requirements.txt"],  # the code, not results/
                               cwd=root, capture_output=True, text=True).stdout.strip()
        commit += "-dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return dict(device=name, torch=torch.__version__, lipkit=lipkit.__version__, commit=commit,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def state_sha256(state) -> str:
    """Checksum of a state dict: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --- masks of every level in one array ------------------------------------------------------------
def encode_chain(levels: list) -> tuple[bytes, list[str], list[list[int]]]:
    """Masks of levels 0..L (nested, as IMP makes them) -> (LZMA bytes, names, shapes)."""
    if len(levels) >= NEVER:
        raise LedgerError(f"{len(levels)} levels do not fit the ledger's one byte a weight (at most {NEVER - 1})")
    names = list(levels[0]) + [n for n in levels[-1] if n not in levels[0]]  # channel runs add BatchNorm masks
    shapes = {n: m[n].shape for m in levels for n in m}
    flat = [torch.cat([(m[n].bool() if n in m else torch.ones(shapes[n], dtype=torch.bool)).flatten() for n in names])
            for m in levels]
    pruned_at = torch.full(flat[0].shape, NEVER, dtype=torch.uint8)
    for k in range(1, len(flat)):
        if bool((flat[k] & ~flat[k - 1]).any()):
            raise LedgerError(f"the masks of level {k} keep weights that level {k - 1} pruned; not an IMP chain")
        pruned_at[flat[k - 1] & ~flat[k]] = k
    if not bool(flat[0].all()):
        raise LedgerError("level 0 must be dense")
    return lzma.compress(pruned_at.numpy().tobytes(), preset=9), names, [list(shapes[n]) for n in names]


def decode_chain(blob: bytes, names: list[str], shapes: list[list[int]], level: int):
    """The float {0,1} masks of ``level`` from :func:`encode_chain`'s bytes."""
    pruned_at = pruned_levels(blob)
    keep = (pruned_at > level).float()
    out, start = OrderedDict(), 0
    for name, shape in zip(names, shapes):
        n = int(np.prod(shape))
        out[name] = keep[start:start + n].reshape(shape).clone()
        start += n
    return out


# --- the ledger's files ---------------------------------------------------------------------------
def export_run(run_dir: str | os.PathLike, root: str | os.PathLike, *, device="cpu") -> list[Path]:
    """Write every seed of the single-image IMP run folder ``run_dir`` into the ledger at ``root``.

    Levels already in the ledger keep their provenance (and must equal the folder's records);
    new ones get this machine's (:func:`provenance`). Returns the files written.
    """
    folder = ImpFolder(run_dir)
    config = read_json(folder.config)
    if config.get("rewind_iteration", 0) != 0:
        raise LedgerError("the ledger keeps runs that rewind to θ0 (rewind_iteration 0): a later rewind point "
                          "cannot be regenerated from the seed")
    entry = LedgerRun(root, Path(run_dir).name)
    verify(entry)
    if entry.config.exists() and run_id(read_json(entry.config)) != run_id(config):
        raise LedgerError(f"{entry.config} holds another run's settings than {folder.config}; give the run "
                          "folder another name")
    merged = dict(config)
    if entry.config.exists():  # a run extended elsewhere keeps the larger rounds and every baseline
        old = read_json(entry.config)
        merged["rounds"] = max(old["rounds"], config["rounds"])
        merged["baselines"] = union(old["baselines"], config["baselines"])
    here = provenance(device)
    files: dict[Path, object] = {entry.config: merged}  # everything is checked before anything is written
    for seed in folder.seeds():
        for method in ["imp", *config["baselines"]]:
            levels = _merged_levels(folder, entry, seed, method, config["rounds"], here)
            if levels:
                files[entry.job(seed, method)] = dict(run=run_id(config), seed=seed, method=method, levels=levels)
        chain = []
        while folder.masks(seed, len(chain)).exists():
            chain.append(load_masks(folder.masks(seed, len(chain))))
        old_state = read_json(entry.state(seed)) if entry.state(seed).exists() else {}
        if chain and len(chain) - 1 >= old_state.get("mask_levels", -1):
            theta0_sha = state_sha256(load_tensors(folder.rewind(seed)))
            if old_state and old_state["theta0_sha256"] != theta0_sha:
                raise LedgerError(f"{folder.rewind(seed)} is not the θ0 that {entry.state(seed)} recorded")
            blob, names, shapes = encode_chain(chain)
            files[entry.masks(seed)] = blob
            files[entry.state(seed)] = dict(theta0_sha256=theta0_sha, mask_levels=len(chain) - 1, names=names,
                                            shapes=shapes, masks_sha256=hashlib.sha256(blob).hexdigest())
    for path, content in files.items():  # the masks before the state that names their checksum
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        else:
            write_json(path, content)
    return list(files) + [write_manifest(entry)]  # last: it covers what was written


def _merged_levels(folder: ImpFolder, entry: LedgerRun, seed: int, method: str, rounds: int, here: dict) -> list:
    """The ledger's levels of one job after this folder's records: known ones kept (and checked), new
    ones with this machine's provenance."""
    start, known, levels = (0 if method == "imp" else 1), entry.levels(seed, method), []
    for k in range(start, rounds + 1):
        path = folder.record(seed, k, method)
        if not path.exists():
            break
        record, i = read_json(path), k - start
        if i < len(known):
            if known[i]["record"] != record:
                raise LedgerError(f"{path} differs from the ledger's level {k} in {entry.job(seed, method)}; "
                                  "the ledger never rewrites a recorded number")
            levels.append(known[i])
        else:
            levels.append(dict(record=record, provenance=here))
    return levels + known[len(levels):]  # levels the ledger has beyond this folder's


def name_legacy_entries(root: str | os.PathLike) -> list[Path]:
    """Rename every entry made before run folders were named by their settings (its config has no
    ``seeds``) to the name its run folder has now (:func:`lipkit.lottery.identity.folder_name`), its
    seeds written into its config and its manifest renewed, after :func:`verify` passes. Returns the
    new paths."""
    from lipkit.lottery.identity import folder_name

    out = []
    for config_file in sorted(Path(root).glob("*/config.json")):
        entry = LedgerRun(root, config_file.parent.name)
        config = read_json(config_file)
        if "seeds" in config:
            continue
        verify(entry)
        config["seeds"] = entry.seeds()
        new = entry.dir.with_name(folder_name(entry.dir.name, config))
        if new.exists():
            raise LedgerError(f"{entry.dir} and {new} hold the same run; keep one (git shows which is newer)")
        write_json(config_file, config)
        write_manifest(entry)
        entry.dir.rename(new)
        out.append(new)
    return out


def theta0_state(config: dict, seed: int) -> "OrderedDict[str, torch.Tensor]":
    """θ0 of ``seed`` for the single-image IMP run ``config``, made as the run made it (on the CPU)."""
    from lipkit.lottery.imp import SingleImageTrainer

    return SingleImageTrainer(config, None, "cpu", False, False).rewind_state(seed)


def restore_run(root: str | os.PathLike, name: str, run_dir: str | os.PathLike, make_rewind=theta0_state) -> list[int]:
    """Rebuild the run folder ``run_dir`` from the ledger's run ``name``; returns the seeds restored.

    ``make_rewind(config, seed)`` regenerates a seed's θ0 (the state dict); it must match the
    checksum the ledger recorded, or the restore is refused. ``run_dir`` must be new or empty.
    """
    entry = LedgerRun(root, name)
    if not entry.config.exists():
        raise LedgerError(f"the ledger has no run {name!r} ({entry.config} is missing)")
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise LedgerError(f"{run_dir} exists; restore into a new folder (or resume that one)")
    verify(entry)
    config = read_json(entry.config)
    bad = [b for b in config["baselines"] if b not in RESTORABLE_BASELINES]
    if bad:
        raise LedgerError(f"{entry.config}: the baselines {bad} need the dense fit's weights, which the ledger "
                          "does not keep; restore a run without them")
    folder, seeds, ready = ImpFolder(run_dir), entry.seeds(), {}
    for seed in seeds:  # every seed is checked before anything is written
        state = read_json(entry.state(seed))
        blob = entry.masks(seed).read_bytes()
        if hashlib.sha256(blob).hexdigest() != state["masks_sha256"]:
            raise LedgerError(f"{entry.masks(seed)} is damaged: its sha256 differs from {entry.state(seed)}'s")
        rewind = make_rewind(config, seed)
        if state_sha256(rewind) != state["theta0_sha256"]:
            raise LedgerError(f"θ0 of seed {seed} does not regenerate bit-identically here (torch "
                              f"{torch.__version__}); {entry.state(seed)} recorded another. The run cannot go on "
                              "from the ledger on this machine")
        ready[seed] = (state, blob, rewind)
    run_dir.mkdir(parents=True, exist_ok=True)
    for seed, (state, blob, rewind) in ready.items():
        folder.seed_dir(seed).mkdir(parents=True, exist_ok=True)
        save_state(folder.rewind(seed), rewind)
        for level in range(state["mask_levels"] + 1):
            save_masks(folder.masks(seed, level), decode_chain(blob, state["names"], state["shapes"], level))
        for method in ["imp", *config["baselines"]]:
            for item in entry.levels(seed, method):
                record = item["record"]
                folder.record(seed, record["round"], method).parent.mkdir(exist_ok=True)
                write_json(folder.record(seed, record["round"], method), record)
    write_json(folder.config, config)  # last: a folder with a config is a finished restore
    return seeds
