"""Content-addressed results: a record is found again only if everything that made it is the same.

A key hashes a JSON description of the job (task, settings, seed, ...), the job's tensors (masks,
rewind weights), :data:`SCHEMA_VERSION` and the code of the lipkit modules that compute the
number: the import closure of the module that runs the job (:func:`import_closure`, found by
reading the sources, never listed by hand; :func:`code_fingerprint`, which ignores docstrings and
comments). Editing that code, bumping
the schema or changing a setting gives a new key, so a cached number is recomputed instead of
silently reused; editing a module the job never imports (a figure, the command line) does not.

Example:
    >>> import tempfile
    >>> cache = RecordCache(tempfile.mkdtemp(), computed_by="lipkit.studies.transfer")
    >>> key = cache.key({"task": "denoise", "seed": 0})
    >>> cache.get(key) is None
    True
    >>> cache.put(key, {"best_psnr": 30.0})["best_psnr"]
    30.0
    >>> cache.get(key)["best_psnr"], cache.get(cache.key({"task": "denoise", "seed": 1})) is None
    (30.0, True)
"""

from __future__ import annotations

import ast
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

LIPKIT_ROOT = Path(__file__).resolve().parents[1]


def _source(module: str) -> Path | None:
    """The source file of the lipkit module ``module`` (a package: its ``__init__.py``), or None
    when the name is no module (a function or class imported from one)."""
    base = LIPKIT_ROOT.joinpath(*module.split(".")[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base != LIPKIT_ROOT and base.with_suffix(".py").is_file() else None


def _lipkit_imports(module: str, path: Path) -> set[str]:
    """Every lipkit name ``module`` imports anywhere in its source (inside functions too), as
    dotted names; ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join(parts + ([node.module] if node.module else []))
            names |= {source} | {f"{source}.{alias.name}" for alias in node.names}
    return {n for n in names if n == "lipkit" or n.startswith("lipkit.")}


@lru_cache(maxsize=None)
def import_closure(module: str) -> tuple[str, ...]:
    """The lipkit modules that importing ``module`` (e.g. ``"lipkit.studies.transfer"``) runs: itself, what
    it imports, directly or not, and the packages above each; sorted.

    >>> closure = import_closure("lipkit.metrics")
    >>> "lipkit" in closure and "lipkit.metrics" in closure and "lipkit.plots" not in closure
    True
    """
    if _source(module) is None:
        raise ValueError(f"{module!r} is not a lipkit module")
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = _source(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # a module's packages run first
        todo += sorted(_lipkit_imports(name, path))
    return tuple(sorted(seen))


@lru_cache(maxsize=None)
def code_fingerprint(module: str) -> str:
    """sha256 of the code of :func:`import_closure` of ``module``: each module's path and its
    syntax tree without docstrings (:func:`code_of`), in order; comments, docstrings and layout
    do not compute numbers, so editing them keeps every cached record."""
    h = hashlib.sha256()
    for name in import_closure(module):
        path = _source(name)
        h.update(str(path.relative_to(LIPKIT_ROOT)).encode())
        h.update(code_of(path).encode())
    return h.hexdigest()


def code_of(path: Path) -> str:
    r"""The code of a Python source file as ``ast.dump`` of its syntax tree, docstrings removed
    (comments, blank lines and line numbers are not in the tree).

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "m.py"
    >>> _ = f.write_text("'''Doc.'''\ndef f(x):\n    '''Doc.'''\n    return x + 1  # a comment\n")
    >>> a = code_of(f)
    >>> _ = f.write_text("'''Other doc.'''\n\n\ndef f(x):\n    return x + 1\n")
    >>> a == code_of(f)
    True
    >>> _ = f.write_text('def f(x):\n    return x + 2\n')
    >>> a == code_of(f)
    False
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _tensors_hash(tensors: Iterable[tuple[str, torch.Tensor]]):
    h = hashlib.sha256()
    for name, t in tensors:
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h


def tensors_digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 (hex) of named tensors, names and values in the given order: what a run started from
    (weights, images), for the config that names its folder."""
    return _tensors_hash(tensors).hexdigest()


class RecordCache:
    """JSON records (and optionally an image each) in ``directory``, named by their key;
    ``computed_by``: the module whose jobs make them (its :func:`import_closure` is in every key)."""

    def __init__(self, directory: str | os.PathLike, prefix: str = "", *, computed_by: str):
        self.dir = Path(directory)
        self.prefix = prefix
        self.computed_by = computed_by
        import_closure(computed_by)  # refuses a name that is no lipkit module
        self.dir.mkdir(parents=True, exist_ok=True)

    def key(self, description: dict, tensors: Iterable[tuple[str, torch.Tensor]] = ()) -> str:
        """The key of a job: its description, its tensors, the schema version and the code."""
        h = _tensors_hash(tensors)
        h.update(json.dumps(dict(description, schema=SCHEMA_VERSION, code=code_fingerprint(self.computed_by)),
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
