"""Shared fixtures. Images come from the local mirror (../shared/data) when it exists."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_chapters", ROOT / "scripts" / "run_chapters.py")
run_chapters = importlib.util.module_from_spec(_spec)
try:
    _spec.loader.exec_module(run_chapters)
except ModuleNotFoundError:  # a machine without the book's tools (a GPU window's): the unit tests still run
    run_chapters = None
SHARED_DATA = ROOT.parent / "shared" / "data"

if "LIPKIT_DATA_MIRROR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LIPKIT_DATA_MIRROR"] = str(SHARED_DATA)


def mirror() -> Path:
    path = os.environ.get("LIPKIT_DATA_MIRROR")
    if not path or not Path(path).is_dir():
        pytest.skip("no image mirror: set LIPKIT_DATA_MIRROR (CI uses ../shared/data)")
    return Path(path)


@pytest.fixture
def mirror_dir() -> Path:
    return mirror()


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """An empty image cache, so tests see the fetch path and not a cached copy."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LIPKIT_DATA_DIR", str(cache))
    return cache


def mean_colour(image):
    """``image`` (C, H, W) with every pixel set to its channel's mean: the constant image nearest to it
    in MSE, the floor a fit has to beat."""
    return image.mean(dim=(1, 2), keepdim=True).expand_as(image)


def glued(nb_path: Path) -> dict:
    """name -> value of every myst_nb ``glue``d scalar in an executed notebook."""
    return run_chapters.glued_values(nb_path)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module: tiny networks gain nothing from a second thread, and
    OpenMP threads slow down badly on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_module_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """Sum each test module's seconds (set-up, call and tear-down) for ``_build/timings.json``."""
    module = report.nodeid.split("::")[0]
    _module_seconds[module] = _module_seconds.get(module, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus):
    if run_chapters is not None and _module_seconds:
        run_chapters.timings.merge({f"tests:{m}": s for m, s in _module_seconds.items()})
