"""Paper-scale results recorded under ``results/`` by ``scripts/run_chapters.py --record``.

A record is one chapter executed with the ``paper`` profile: its glued numbers with the device,
torch version, commit, date and the seeding scheme (:data:`lipkit.seeding.SCHEME`) of the code
that produced them. Records of another scheme (or none: written before the scheme was named)
came from code whose random streams differ; they are *stale*: shown for history, never cited as
this build's paper-scale numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lipkit.seeding import SCHEME


def load_record(results_dir: str | os.PathLike, chapter: str, profile: str = "paper") -> dict | None:
    """The record of ``chapter`` (e.g. ``"01_dip_basics"``), or None when it was never recorded."""
    path = Path(results_dir) / f"{profile}_profile" / f"{chapter}.json"
    return json.loads(path.read_text()) if path.exists() else None


def is_current(record: dict | None) -> bool:
    """Whether ``record`` was made with this build's seeding scheme."""
    return bool(record) and record.get("seeding") == SCHEME


def current_value(results_dir: str | os.PathLike, chapter: str, key: str, profile: str = "paper"):
    """Glued value ``key`` of a current record of ``chapter``, or None (not recorded, or stale)."""
    record = load_record(results_dir, chapter, profile)
    return record["glued"].get(key) if is_current(record) else None


def recorded_chapters(results_dir: str | os.PathLike, profile: str = "paper") -> list[str]:
    """The chapters with a record of ``profile``, current or stale, sorted."""
    return sorted(p.stem for p in (Path(results_dir) / f"{profile}_profile").glob("*.json"))
