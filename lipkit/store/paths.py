"""Every file name in lipkit's run folders, in one place.

A lottery run folder (single-image, weight-sharing and generator IMP, :class:`ImpFolder`)::

    config.json  summary.json  .lock
    seed_<s>/rewind.safetensors          the rewind point θ of seed s (θ0, or θ after j steps)
    seed_<s>/dense_final.safetensors     the dense fit's final conv weights (the one-shot baseline)
    seed_<s>/masks_<kk>.safetensors      the masks of level k (level 0: dense)
    seed_<s>/round_<kk>.json             level k's record; round_<kk>.png its restored image
                                         (round_<kk>_<a>.png, one per image, for weight sharing)
    seed_<s>/<baseline>/round_<kk>.json  a baseline's record at level k
    seed_<s>/[<baseline>/]trained_<kk>.safetensors   a level's trained state (generator IMP keeps it)

Generator IMP treats G and D as one network (names ``G.<param>``, ``D.<param>``), keeps each
level's fine-tuned pair (``trained_<kk>``) and writes no images.

A pretraining folder (:class:`PretrainFolder`): ``G.safetensors``, ``D.safetensors``, ``pretrain.json``.
"""

from __future__ import annotations

import os
from pathlib import Path


MAIN_CHAINS = ("imp", "imp_shared", "imp_classify")  # record names of the main chains; a baseline's records get a subfolder


class ImpFolder:
    """The files of an IMP run folder at ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def seed_dir(self, seed: int) -> Path:
        return self.root / f"seed_{seed}"

    def seeds(self) -> list[int]:
        """The seeds that have a folder, in order."""
        return sorted(int(p.name.split("_")[1]) for p in self.root.glob("seed_*") if p.is_dir())

    def rewind(self, seed: int) -> Path:
        return self.seed_dir(seed) / "rewind.safetensors"

    def dense_final(self, seed: int) -> Path:
        return self.seed_dir(seed) / "dense_final.safetensors"

    def masks(self, seed: int, level: int) -> Path:
        return self.seed_dir(seed) / f"masks_{level:02d}.safetensors"

    def record(self, seed: int, level: int, method: str = "imp") -> Path:
        """Level ``level``'s record of ``method``: IMP (and weight sharing) in the seed's folder, a
        baseline in its own subfolder."""
        folder = self.seed_dir(seed) if method in MAIN_CHAINS else self.seed_dir(seed) / method
        return folder / f"round_{level:02d}.json"

    def records(self, seed: int, methods: tuple[str, ...] = ()) -> list[Path]:
        """The records of ``seed``: its IMP rounds, then each baseline in ``methods``."""
        files = sorted(self.seed_dir(seed).glob("round_*.json"))
        for name in methods:
            files += sorted((self.seed_dir(seed) / name).glob("round_*.json"))
        return files

    def finished_levels(self, seed: int) -> int:
        """How many main-chain levels of ``seed`` are finished: levels 0 .. n-1 have their record."""
        n = 0
        while self.record(seed, n).exists():
            n += 1
        return n

    def finished_levels_of_every_seed(self) -> int:
        """The main-chain levels every seed with a folder has finished (0 without seeds)."""
        seeds = self.seeds()
        return min(self.finished_levels(s) for s in seeds) if seeds else 0

    def records_written(self, seeds) -> int:
        """Every level record of ``seeds``, main chain and baselines together (progress counts)."""
        return sum(len(list(self.seed_dir(s).rglob("round_*.json"))) for s in seeds)

    def trained(self, seed: int, level: int, method: str) -> Path:
        """The trained state (parameters and buffers) of a level, for runs that keep it (generators)."""
        return self.record(seed, level, method).with_name(f"trained_{level:02d}.safetensors")

    def image(self, seed: int, level: int, index: int | None = None) -> Path:
        """The restored image of level ``level`` (``index``: which image of a weight-sharing run)."""
        suffix = "" if index is None else f"_{index}"
        return self.seed_dir(seed) / f"round_{level:02d}{suffix}.png"


class PretrainFolder:
    """The files of a GAN pretraining folder at ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def state(self, which: str) -> Path:
        return self.root / f"{which}.safetensors"

    @property
    def record(self) -> Path:
        return self.root / "pretrain.json"
