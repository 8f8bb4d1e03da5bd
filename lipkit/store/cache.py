"""Content-addressed results: a record is found again only if everything that made it is the same.

A key hashes a JSON description of the job (task, settings, seed, ...), the job's tensors (masks,
rewind weights), :data:`SCHEMA_VERSION` and the source code of the lipkit modules that compute the
number (:func:`code_fingerprint`). Editing that code, bumping the schema or changing a setting
gives a new key, so a cached number is recomputed instead of silently reused.

Example:
    >>> import tempfile
    >>> cache = RecordCache(tempfile.mkdtemp())
    >>> key = cache.key({"task": "denoise", "seed": 0})
    >>> cache.get(key) is None
    True
    >>> cache.put(key, {"best_psnr": 30.0})["best_psnr"]
    30.0
    >>> cache.get(key)["best_psnr"], cache.get(cache.key({"task": "denoise", "seed": 1})) is None
    (30.0, True)
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

import torch

from lipkit.store.folder import write_json

# Bump when a record's meaning changes in a way the code fingerprint cannot see (e.g. new fields).
SCHEMA_VERSION = 3  # 3: transfer and deep-decoder records carry psnr_curve

# The modules whose code cannot change a fitted number: figures, widgets, the command line and the
# messages. Every other module of the package is part of every key, so that a module added
# later, or split out of another, is covered without being listed (a hand-kept list of the
# numeric modules missed ten of them after fit.py was split).
PRESENTATION_MODULES = ("plots", "widgets", "cli", "errors", "__main__")


def numeric_modules() -> tuple[str, ...]:
    """Every module and subpackage of lipkit but :data:`PRESENTATION_MODULES`, sorted."""
    root = Path(__file__).resolve().parents[1]
    names = {p.stem for p in root.glob("*.py")} | {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    return tuple(sorted(names - set(PRESENTATION_MODULES)))


NUMERIC_MODULES = numeric_modules()


@lru_cache(maxsize=None)
def code_fingerprint(modules: tuple[str, ...] = NUMERIC_MODULES) -> str:
    """sha256 of the source files of ``lipkit.<module>`` (a package: all its files), in order."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for name in modules:
        path = root / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [root / f"{name}.py"]
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


class RecordCache:
    """JSON records (and optionally an image each) in ``directory``, named by their key."""

    def __init__(self, directory: str | os.PathLike, prefix: str = "", modules: tuple[str, ...] = NUMERIC_MODULES):
        self.dir = Path(directory)
        self.prefix = prefix
        self.modules = tuple(modules)
        self.dir.mkdir(parents=True, exist_ok=True)

    def key(self, description: dict, tensors: Iterable[tuple[str, torch.Tensor]] = ()) -> str:
        """The key of a job: its description, its tensors, the schema version and the code."""
        h = hashlib.sha256()
        for name, t in tensors:
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        h.update(json.dumps(dict(description, schema=SCHEMA_VERSION, code=code_fingerprint(self.modules)),
                            sort_keys=True).encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.dir / f"{self.prefix}{key[:20]}.json"

    def get(self, key: str) -> dict | None:
        """The record stored under ``key`` (with ``image``, its PNG, when there is one), or None."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if not isinstance(record, dict):  # a cache only saves time: a damaged record is made again
            warnings.warn(f"{path} is damaged; its job runs again and replaces it", stacklevel=2)
            return None
        if record.get("key") != key:  # a 20-character prefix collision: not this job's record
            return None
        png = path.with_suffix(".png")
        return dict(record, image=str(png)) if png.exists() else record

    def put(self, key: str, record: Mapping, image: torch.Tensor | None = None) -> dict:
        """Store ``record`` (and ``image``, (C, H, W) in [0, 1], as PNG) under ``key``; returns it as
        :meth:`get` will."""
        path = self.path(key)
        record = dict(record, key=key)
        if image is not None:
            from lipkit.data import to_pil

            to_pil(image).save(path.with_suffix(".png"))
        write_json(path, record)
        return dict(record, image=str(path.with_suffix(".png"))) if image is not None else record
