"""The layout keeps the promises the README makes about it: one concept per module, no
module reaching into another's private names, every module in the README's table, and chapters
that never build a run-folder path themselves."""

from __future__ import annotations

import ast
import json
import re

import pytest

from conftest import ROOT

MODULES = sorted(p for p in (ROOT / "lipkit").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_is_one_concept_named_in_one_sentence(path):
    # one concept per file, whatever its length: the docstring opens with a single sentence naming it
    # (no second sentence, no ";" joining two jobs); what a module holds besides goes in later paragraphs
    source = path.read_text()
    if path.name == "__main__.py":
        return
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring, f"{path.name} has no docstring naming its job"
    summary = " ".join(docstring.split("\n\n")[0].split())
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z`:])", summary)
    assert len(sentences) == 1 and ";" not in summary, \
        f"{path.name} opens with more than one job: {summary!r}; name its one concept in one sentence, or split it"


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
