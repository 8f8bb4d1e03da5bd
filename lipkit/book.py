"""What every chapter of the book shares: glued numbers and where a profile's runs and results live.

The chapters are notebooks in ``book/``, executed there (by papermill, or in Jupyter). Their runs
live under ``_build/runs/<profile>/`` of the repository; the paper-scale records they read live
in ``results/``. A chapter names a run (``"mnist_gan"``) and never builds a folder path itself;
:meth:`lipkit.experiments.Experiments.from_parameters` builds a chapter's experiments from its
parameters cell.
"""

from __future__ import annotations

from pathlib import Path

BOOK_TO_REPOSITORY = Path("..")  # the chapters run in book/


def glue_numbers(**values) -> None:
    """``myst_nb.glue`` each value under its keyword, without displaying it: the text cites it
    (``{glue:text}`name```) and the chapter tests assert on it."""
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value, display=False)


def runs_root(profile: str) -> Path:
    """The folder of ``profile``'s runs, ``_build/runs/<profile>`` of the repository (relative to
    ``book/``, where the chapters run)."""
    return BOOK_TO_REPOSITORY / "_build" / "runs" / profile


def run_dir(profile: str, name: str) -> Path:
    """The folder of the run called ``name`` (e.g. ``"mnist_gan"``) in ``profile``."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"a run name is one plain folder name, got {name!r}")
    return runs_root(profile) / name


def results_dir() -> Path:
    """The repository's ``results/`` folder: paper-scale records, read by :mod:`lipkit.results`."""
    return BOOK_TO_REPOSITORY / "results"
