"""What every chapter of the book shares: glued numbers and where a profile's runs and results live.

The chapters are notebooks in ``book/``, executed there (by papermill, or in Jupyter). Their runs
live under ``_build/runs/<profile>/`` of the repository; the paper-scale records they read live
in ``results/``. A chapter names a run (``"mnist_gan"``) and never builds a folder path itself;
:meth:`lipkit.experiments.Experiments.from_parameters` builds a chapter's experiments from its
parameters cell. A chapter's tables and verdicts are :mod:`lipkit.book.tables` (chapter 6's
:mod:`lipkit.book.compressive`, chapter 8's :mod:`lipkit.book.rivals`, chapter 9's
:mod:`lipkit.book.classification`, the reproduction page's rows :mod:`lipkit.book.reproduction`), so that
its test asserts on the same function, applied to the stored records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

BOOK_TO_REPOSITORY = Path("..")  # the chapters run in book/
PROFILES = BOOK_TO_REPOSITORY / "book" / "profiles.yml"


def check_parameters(namespace: Mapping[str, Any], chapter: str, profiles: str | Path | None = None) -> None:
    """Refuse, in one line, a chapter parameter (papermill's ``-p``, or an edited cell) whose type
    differs from the one it has in every profile of ``book/profiles.yml``, or that breaks a rule
    of :mod:`lipkit.checks`; every problem is named at once, with the value and what is expected.
    Each chapter calls it first, so that ``-p crop abc`` fails before anything runs."""
    import yaml

    from lipkit.checks import problems
    from lipkit.errors import UsageError

    examples: dict[str, list] = {}
    for profile in yaml.safe_load(Path(profiles or PROFILES).read_text()).values():
        for name, value in (profile.get(chapter) or {}).items():
            examples.setdefault(name, []).append(value)
    given = {name: namespace[name] for name in examples if name in namespace}
    found = [f"{name} = {value!r}: expected {_kind(examples[name])}" for name, value in given.items()
             if not _fits(value, examples[name])]
    bad_type = {message.split(" = ")[0] for message in found}
    found += problems({n: v for n, v in given.items() if n not in bad_type})
    if found:
        raise UsageError(f"chapter {chapter}: " + "; ".join(found))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fits(value, examples: list) -> bool:
    """Whether ``value`` has a type one of ``examples`` (the profiles' values) has."""
    for example in examples:
        if example is None and value is None:
            return True
        if isinstance(example, bool) or isinstance(value, bool):
            if isinstance(example, bool) and isinstance(value, bool):
                return True
        elif isinstance(example, int) and isinstance(value, int):
            return True
        elif isinstance(example, float) and _number(value):
            return True
        elif isinstance(example, str) and isinstance(value, str):
            return True
        elif isinstance(example, list) and isinstance(value, (list, tuple)):
            items = [x for e in examples if isinstance(e, list) for x in e]
            return not items or all(_fits(v, items) for v in value)
    return False


def _kind(examples: list) -> str:
    kinds = []
    for e in examples:
        kind = ("null" if e is None else "true or false" if isinstance(e, bool) else "a whole number"
                if isinstance(e, int) else "a number" if isinstance(e, float) else "a string"
                if isinstance(e, str) else "a list like " + repr(e) if isinstance(e, list) else type(e).__name__)
        if kind not in kinds and not (kind == "a whole number" and "a number" in kinds):
            kinds.append(kind)
    if "a number" in kinds and "a whole number" in kinds:
        kinds.remove("a whole number")
    return " or ".join(kinds)


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


def run_dir(profile: str, name: str, config: dict | None = None) -> Path:
    """The folder of the run called ``name`` (e.g. ``"mnist_gan"``) in ``profile``; given the run's
    ``config``, ``name`` is a prefix and the folder is named by the config's hash too
    (:func:`lipkit.lottery.identity.folder_name`), so that other settings never meet in one folder."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"a run name is one plain folder name, got {name!r}")
    if config is not None:
        from lipkit.lottery.identity import folder_name

        name = folder_name(name, config)
    return runs_root(profile) / name


def results_dir() -> Path:
    """The repository's ``results/`` folder: paper-scale records, read by :mod:`lipkit.book.results`."""
    return BOOK_TO_REPOSITORY / "results"
