"""The layout keeps the promises the README makes about it: small modules with one job each, no
module reaching into another's private names, every module in the README's table, and chapters
that never build a run-folder path themselves."""

from __future__ import annotations

import ast
import json
import re

import pytest

from conftest import ROOT

MODULES = sorted(p for p in (ROOT / "lipkit").rglob("*.py"))
LARGEST = 350  # lines


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_small_and_say_what_they_do(path):
    source = path.read_text()
    assert len(source.splitlines()) < LARGEST, f"{path.name} has grown past {LARGEST} lines: split it by job"
    if path.name != "__main__.py":
        assert ast.get_docstring(ast.parse(source)), f"{path.name} has no docstring naming its job"


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lipkit"):
                offenders += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders


def test_the_readme_table_lists_every_module():
    readme = (ROOT / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("| `lipkit/"))
    missing = []
    for path in MODULES:
        rel = path.relative_to(ROOT)
        if path.name.startswith("__"):
            continue
        package = f"`{rel.parent.as_posix()}/`"
        if f"`{rel.as_posix()}`" not in table and package not in table:
            missing.append(rel.as_posix())
    assert not missing, f"the README's layout table does not mention {missing}"
    for named in re.findall(r"`(lipkit/[\w/]+\.py)`", table):  # and names nothing that is gone
        assert (ROOT / named).exists(), f"the README names {named}, which does not exist"


def test_the_package_docstring_names_every_module_and_nothing_that_is_gone():
    docstring = ast.get_docstring(ast.parse((ROOT / "lipkit" / "__init__.py").read_text()))
    named = set(re.findall(r":mod:`~lipkit\.(\w+)`", docstring))
    modules = {p.stem for p in (ROOT / "lipkit").glob("*.py") if not p.name.startswith("__")}
    packages = {p.parent.name for p in (ROOT / "lipkit").glob("*/__init__.py")}
    assert named == modules | packages, (sorted((modules | packages) - named), sorted(named - modules - packages))


@pytest.mark.parametrize("chapter", sorted((ROOT / "book").glob("*.ipynb")), ids=lambda p: p.stem)
def test_chapters_name_runs_and_never_build_their_paths(chapter):
    code = "\n".join("".join(c["source"]) for c in json.loads(chapter.read_text())["cells"]
                     if c["cell_type"] == "code")
    for pattern in (r"_build", r"seed_\{?\d?", r"round_\d|round_\{", r"masks_\d|masks_\{", r"\.safetensors",
                    r"def glue_numbers"):
        assert not re.search(pattern, code), f"{chapter.name} builds a run-folder path or plumbing ({pattern})"
