"""Paper-scale records: written with what made them, and cited only when this build's streams made them."""

import json

import nbformat
import pytest

from conftest import run_chapters
from lipkit.book.results import current_value, is_current, load_record
from lipkit.seeding import SCHEME


def test_a_record_names_its_scheme_and_only_a_current_one_is_cited(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1.5", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from myst_nb import glue\nglue('answer', 2 * x, display=False)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "book" / "toy.ipynb"
    source.parent.mkdir()
    nbformat.write(nb, source)
    stage = tmp_path / "stage"
    run_chapters.execute(source, stage / "book" / "toy.ipynb", "paper", {"x": 2.0}, "python3")
    (path,) = run_chapters.record(["toy"], "paper", stage, results=tmp_path / "results")
    record = json.loads(path.read_text())
    assert record["seeding"] == SCHEME and record["profile"] == "paper" and record["glued"] == {"answer": 4.0}
    assert {"device", "torch", "commit", "date", "source_sha256"} <= set(record)
    assert is_current(load_record(tmp_path / "results", "toy"))
    assert current_value(tmp_path / "results", "toy", "answer") == 4.0
    # a record of other random streams (or of none named) is stale: never cited
    path.write_text(json.dumps(dict(record, seeding="shared seeds")))
    assert current_value(tmp_path / "results", "toy", "answer") is None
    assert load_record(tmp_path / "results", "missing") is None and not is_current(None)
    # and a quick-profile copy cannot be recorded as paper scale
    run_chapters.execute(source, stage / "book" / "toy.ipynb", "quick", {}, "python3")
    with pytest.raises(SystemExit, match="quick"):
        run_chapters.record(["toy"], "paper", stage, results=tmp_path / "results")
