"""scripts/timings.py: phases recorded by the build and the tests, and the summary."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("timings", ROOT / "scripts" / "timings.py")
timings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timings)


def test_phases_merge_and_the_report_sums_groups_without_counting_smoke_twice(tmp_path):
    path = tmp_path / "timings.json"
    timings.record("chapter:01_dip_basics", 100.04, path)
    timings.merge({"chapter:02_single_image_imp": 50, "tests:tests/test_fit.py": 30, "smoke:01_dip_basics": 20,
                   "site:build": 10}, path)
    timings.record("chapter:01_dip_basics", 90, path)  # a chapter run again keeps its last time
    data = json.loads(path.read_text())
    assert data["chapter:01_dip_basics"] == 90 and len(data) == 5
    text = timings.report(path, reference=2.0)
    assert "total chapter" in text and "140.0" in text
    assert "total (smoke is inside tests)" in text and "180.0" in text  # 90 + 50 + 30 + 10, smoke left out
    assert "total = 90 x reference; chapters = 70 x reference" in text
    assert "seconds only" in timings.report(path, reference=None)


def test_run_records_a_command_and_passes_its_exit_code_on(tmp_path, monkeypatch):
    monkeypatch.setattr(timings, "TIMINGS", tmp_path / "t.json")
    assert timings.main(["run", "setup:x", "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert "setup:x" in json.loads((tmp_path / "t.json").read_text())
    assert timings.main(["bogus"]) == 2
