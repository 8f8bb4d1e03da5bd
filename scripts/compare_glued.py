"""Compare the glued numbers of two executed stages (e.g. before and after a change), as Markdown.

    python scripts/compare_glued.py OLD_STAGE NEW_STAGE [--min-change 0.005]

Each stage is a folder of executed chapters (``_build/stage/book`` of a checkout; a checkout's
``_build/stage`` is read as its ``book/``). Prints, per chapter, every numeric glued value that
exists in both and moved by at least ``--min-change`` (timings, ``*_seconds``, are left out: they
measure the machine) and every text value that changed, then how many values are new and which are
gone, how many were compared, and the chapters whose Markdown tables differ: the table CHANGELOG.md
quotes. A folder without executed chapters is refused, so that an empty comparison never reads as
"nothing moved".
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


def chapters_in(stage: Path) -> Path:
    """The folder of ``stage`` that holds executed chapters; one line naming the problem if none does."""
    for folder in (stage, stage / "book"):
        if any(folder.glob("*.ipynb")):
            return folder
    raise SystemExit(f"compare_glued: no executed chapters (*.ipynb) in {stage} or {stage / 'book'}; "
                     "give a stage's book folder, e.g. _build/stage/book")


def markdown_outputs(nb_path: Path) -> list[str]:
    """The Markdown outputs (the tables) of an executed chapter, in order."""
    import nbformat

    book = nbformat.read(nb_path, as_version=4)
    return ["".join(o["data"]["text/markdown"]) for cell in book.cells for o in cell.get("outputs", [])
            if "text/markdown" in o.get("data", {}) and "scrapbook" not in o.get("metadata", {})]


def compare(old_stage: Path, new_stage: Path, min_change: float) -> str:
    old_stage, new_stage = chapters_in(old_stage), chapters_in(new_stage)
    lines = ["| chapter | number | before | after | change |", "|---|---|---|---|---|"]
    added, removed, tables = [], [], []
    compared = 0
    for new_nb in sorted(new_stage.glob("*.ipynb")):
        old_nb = old_stage / new_nb.name
        new = run_chapters.glued_values(new_nb)
        old = run_chapters.glued_values(old_nb) if old_nb.exists() else {}
        if old_nb.exists() and markdown_outputs(old_nb) != markdown_outputs(new_nb):
            tables.append(new_nb.stem)
        for key, value in new.items():
            if key.endswith("seconds") or key not in old:
                continue
            compared += 1
            if is_number(value) and is_number(old[key]):
                if abs(value - old[key]) >= min_change:
                    lines.append(f"| {new_nb.stem} | `{key}` | {old[key]:.4g} | {value:.4g} | {value - old[key]:+.4g} |")
            elif value != old[key]:
                lines.append(f"| {new_nb.stem} | `{key}` | {old[key]} | {value} | changed |")
        fresh = [key for key in new if key not in old]
        if fresh:
            added.append(f"{new_nb.stem} {len(fresh)}" + (" (a new page)" if not old else ""))
        removed += [f"{new_nb.stem}: `{key}`" for key in old if key not in new]
    out = "\n".join(lines) + f"\n\n{compared} values compared."
    if tables:
        out += "\n\nMarkdown tables differ in: " + ", ".join(tables) + "."
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
