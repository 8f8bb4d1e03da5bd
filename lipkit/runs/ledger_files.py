"""A ledger run's files: where they are, their manifest of checksums, and the checks that refuse an edit.

The ledger (:mod:`lipkit.runs.ledger`) holds the most expensive numbers the project has. Every file of
a ledger run (``config.json``, each job's records, ``state.json``, ``masks.xz``) is listed with its
sha256 in ``manifest.json``; :func:`verify` refuses, naming the file, one that was edited, added
or removed, and a ``state.json`` or ``masks.xz`` that does not describe the network the stored
config builds (names, shapes, levels), before anything is read from it.
"""

from __future__ import annotations

import lzma
import os
from pathlib import Path

import numpy as np
import torch

from lipkit.data import sha256_of
from lipkit.store.folder import read_json, write_json

NEVER = 255  # "pruned at level" of a weight the chain never pruned


class LedgerError(ValueError):
    """A ledger entry that cannot be used as asked; the message names the file and the fix."""


def pruned_levels(blob: bytes, source: str | os.PathLike = "the masks") -> torch.Tensor:
    """The level at which each weight was pruned (:data:`NEVER`: kept), from ``masks.xz``'s bytes."""
    try:
        return torch.from_numpy(np.frombuffer(lzma.decompress(blob), dtype=np.uint8).copy())
    except lzma.LZMAError as err:
        raise LedgerError(f"{source} is damaged ({err}); restore it from git") from None


class LedgerRun:
    """The ledger entries of one run (folder name ``name``) under ``root``."""

    def __init__(self, root: str | os.PathLike, name: str):
        self.dir = Path(root) / name

    @property
    def config(self) -> Path:
        return self.dir / "config.json"

    def seed_dir(self, seed: int) -> Path:
        return self.dir / f"seed_{seed}"

    def job(self, seed: int, method: str) -> Path:
        return self.seed_dir(seed) / f"{method}.json"

    def state(self, seed: int) -> Path:
        return self.seed_dir(seed) / "state.json"

    def masks(self, seed: int) -> Path:
        return self.seed_dir(seed) / "masks.xz"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    def seeds(self) -> list[int]:
        return sorted(int(p.name.split("_")[1]) for p in self.dir.glob("seed_*") if p.is_dir())

    def files(self) -> list[Path]:
        """Every file of the entry but the manifest (and a write's leftover ``.tmp``), sorted."""
        return sorted(p for p in self.dir.rglob("*") if p.is_file() and p != self.manifest
                      and not p.name.endswith(".tmp"))

    def levels(self, seed: int, method: str = "imp") -> list[dict]:
        """The job's entries ``{"record", "provenance"}``, by level (baselines start at level 1)."""
        path = self.job(seed, method)
        return read_json(path)["levels"] if path.exists() else []

    def finished_levels(self, method: str = "imp") -> int:
        """Levels the entry holds for every one of its seeds (0 when it holds none)."""
        seeds = self.seeds()
        return min(len(self.levels(s, method)) for s in seeds) if seeds else 0


def verify(entry: LedgerRun) -> None:
    """Refuse, naming the file, any edit of the ledger run ``entry``: a file whose sha256 differs
    from the manifest's, one missing or added, and a ``state.json`` or ``masks.xz`` that does not
    describe the network the stored config builds. A run without a manifest (written before it
    existed) is checked the same way and given one."""
    if entry.manifest.exists():
        listed = read_json(entry.manifest)
        if not isinstance(listed, dict):
            raise LedgerError(f"{entry.manifest} is damaged; restore it from git")
        present = {p.relative_to(entry.dir).as_posix(): p for p in entry.files()}
        for rel in sorted(set(listed) - set(present)):
            raise LedgerError(f"{entry.dir / rel} is missing, but {entry.manifest} lists it; restore it from git")
        for rel in sorted(set(present) - set(listed)):
            raise LedgerError(f"{present[rel]} is not in {entry.manifest}: the ledger's files are written only by "
                              "export_run; remove it")
        for rel, sha in listed.items():
            if sha256_of(present[rel]) != sha:
                raise LedgerError(f"{present[rel]} was edited after the ledger wrote it (its sha256 differs from "
                                  f"{entry.manifest}'s); restore it from git: the ledger never takes an edited number")
        check_structure(entry)
    elif entry.config.exists():
        check_structure(entry)
        write_manifest(entry)


def write_manifest(entry: LedgerRun) -> Path:
    write_json(entry.manifest, {p.relative_to(entry.dir).as_posix(): sha256_of(p) for p in entry.files()})
    return entry.manifest


def check_structure(entry: LedgerRun) -> None:
    """The masks' layout in each ``state.json`` against the network of the stored config (names,
    shapes), the masks' bytes against that layout and ``mask_levels``, and the records' levels."""
    from lipkit.models import skip_net

    config = read_json(entry.config)
    params = {n: list(p.shape) for n, p in skip_net(**config["arch"]).named_parameters()}
    for seed in entry.seeds():
        path = entry.state(seed)
        state = read_json(path)
        names, shapes, levels = state.get("names"), state.get("shapes"), state.get("mask_levels")
        if not isinstance(names, list) or not isinstance(shapes, list) or len(names) != len(shapes):
            raise LedgerError(f"{path} is damaged: it needs names and shapes of one length; restore it from git")
        wrong = [f"{n} {s}" for n, s in zip(names, shapes) if params.get(n) != s]
        if wrong:
            raise LedgerError(f"{path} describes layers the network of {entry.config} does not have (as named and "
                              f"shaped): {', '.join(wrong[:3])}; restore it from git")
        pruned_at = pruned_levels(entry.masks(seed).read_bytes(), entry.masks(seed))
        if pruned_at.numel() != sum(int(np.prod(s)) for s in shapes):
            raise LedgerError(f"{entry.masks(seed)} holds {pruned_at.numel()} weights but {path} lays out "
                              f"{sum(int(np.prod(s)) for s in shapes)}; restore both from git")
        pruned = pruned_at[pruned_at != NEVER]
        last = int(pruned.max()) if pruned.numel() else 0
        # every level prunes some weight while any is left, so the last level that did is mask_levels
        short = last < levels and pruned.numel() < pruned_at.numel() if isinstance(levels, int) else True
        if short or last > levels or (pruned.numel() and int(pruned.min()) < 1):
            raise LedgerError(f"{path} says mask_levels = {levels}, but {entry.masks(seed)} prunes weights at "
                              f"levels up to {last}; restore both from git")
        for method_file in sorted(entry.seed_dir(seed).glob("*.json")):
            if method_file.name == "state.json":
                continue
            job = read_json(method_file)
            start = 0 if method_file.stem == "imp" else 1
            rounds = [item.get("record", {}).get("round") for item in job.get("levels", [])]
            if rounds != list(range(start, start + len(rounds))):
                raise LedgerError(f"{method_file} lists levels {rounds}, not one after the other from {start}; "
                                  "restore it from git")
            if method_file.stem == "imp" and len(rounds) > levels:
                raise LedgerError(f"{method_file} has {len(rounds)} levels but {path} only masks for "
                                  f"{levels + 1}; restore both from git")
