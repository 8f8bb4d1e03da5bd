"""scripts/compare_glued.py: what moved between two executed stages, never an empty table by mistake."""

import importlib.util

import nbformat
import pytest

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("compare_glued", ROOT / "scripts" / "compare_glued.py")
compare_glued = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_glued)


def executed(folder, name, glued: dict, table: str):
    """An executed chapter holding ``glued`` (name -> value, as myst-nb glues it) and one Markdown table."""
    outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": table})]
    for key, value in glued.items():
        outputs.append(nbformat.v4.new_output(
            "display_data", data={"application/papermill.record/text/plain": repr(value)},
            metadata={"scrapbook": {"name": key, "mime_prefix": "application/papermill.record/"}}))
    cell = nbformat.v4.new_code_cell("glue(...)", outputs=outputs)
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), folder / f"{name}.ipynb")


def test_moved_numbers_changed_words_and_tables_are_reported(tmp_path):
    executed(tmp_path / "old" / "book", "ch", {"psnr": 30.0, "same": 1.0, "verdict": "above", "fit_seconds": 5.0},
             "| a |")
    executed(tmp_path / "new" / "book", "ch", {"psnr": 30.5, "same": 1.0, "verdict": "below", "fit_seconds": 9.0},
             "| b |")
    text = compare_glued.compare(tmp_path / "old", tmp_path / "new", 0.005)  # a checkout's stage: its book/
    assert "| ch | `psnr` | 30 | 30.5 | +0.5 |" in text and "| ch | `verdict` | above | below | changed |" in text
    assert "`same`" not in text and "seconds" not in text  # unchanged, and timings are the machine's
    assert "3 values compared." in text and "Markdown tables differ in: ch." in text


def test_a_folder_without_chapters_is_refused_in_one_line(tmp_path):
    executed(tmp_path / "new", "ch", {"psnr": 30.0}, "| a |")
    with pytest.raises(SystemExit, match="no executed chapters"):
        compare_glued.compare(tmp_path / "empty", tmp_path / "new", 0.005)
