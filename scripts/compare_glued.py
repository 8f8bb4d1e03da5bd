"""Compare the glued numbers of two executed stages (e.g. before and after a change), as Markdown.

    python scripts/compare_glued.py OLD_STAGE NEW_STAGE [--min-change 0.005]

Each stage is a folder of executed chapters (``_build/stage/book`` of a checkout). Prints, per
chapter, every numeric glued value that exists in both and moved by at least ``--min-change``
(timings, ``*_seconds``, are left out: they measure the machine), then how many values are new
and which are gone: the table CHANGELOG.md quotes.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("run_chapters", Path(__file__).with_name("run_chapters.py"))
run_chapters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_chapters)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare(old_stage: Path, new_stage: Path, min_change: float) -> str:
    lines = ["| chapter | number | before | after | change |", "|---|---|---|---|---|"]
    added, removed = [], []
    for new_nb in sorted(new_stage.glob("*.ipynb")):
        old_nb = old_stage / new_nb.name
        new = run_chapters.glued_values(new_nb)
        old = run_chapters.glued_values(old_nb) if old_nb.exists() else {}
        for key, value in new.items():
            if key.endswith("seconds") or key not in old:
                continue
            if is_number(value) and is_number(old[key]) and abs(value - old[key]) >= min_change:
                lines.append(f"| {new_nb.stem} | `{key}` | {old[key]:.4g} | {value:.4g} | {value - old[key]:+.4g} |")
        fresh = [key for key in new if key not in old]
        if fresh:
            added.append(f"{new_nb.stem} {len(fresh)}" + (" (a new page)" if not old else ""))
        removed += [f"{new_nb.stem}: `{key}`" for key in old if key not in new]
    out = "\n".join(lines)
    if added:
        out += "\n\nNew values: " + ", ".join(added) + "."
    if removed:
        out += "\n\nGone: " + ", ".join(removed) + "."
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--min-change", type=float, default=0.005)
    a = ap.parse_args()
    print(compare(a.old, a.new, a.min_change))


if __name__ == "__main__":
    main()
