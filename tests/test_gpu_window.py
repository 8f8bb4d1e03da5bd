"""scripts/gpu_window.py on a CPU (--dry-run): the GPU window's whole path at tiny sizes, its plan
resumed from the ledger by a second window on a machine without the first one's run folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from conftest import ROOT

from lipkit.ledger import LedgerRun


def window(out, *args) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "scripts/gpu_window.py", "--dry-run", "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    records = sorted((out / "paper_profile" / "windows").glob("*.json"))
    return done.returncode, json.loads(records[-1].read_text()), done.stdout + done.stderr


def test_a_dry_run_window_runs_every_step_and_the_next_one_goes_on_from_the_ledger(tmp_path, mirror_dir):
    code, first, log = window(tmp_path, "--budget", "600", "--rounds", "1")
    assert code == 0, log
    assert [s["status"] for s in first["steps"]] == ["ok"] * 4, first["steps"]
    assert (tmp_path / "benchmarks" / "step_time_dryrun.json").exists()  # never into the repository's results
    assert [m["levels_after"] for m in first["moved"]] == [2] * 5  # Fig. 2's four runs and the clean search
    assert all(s["levels"] == s["target"] == 2 for s in first["plan_status"])
    ledger = tmp_path / "paper_profile" / "ledger"
    name = first["moved"][0]["run"]
    level_1 = LedgerRun(ledger, name).levels(0)[1]
    shutil.rmtree(tmp_path / "runs")  # the next window is on another machine: only the ledger travels
    code, second, log = window(tmp_path, "--budget", "600", "--rounds", "2", "--skip", "cuda tests", "step time",
                               "paper IMP round", "precision")
    assert code == 0, log
    assert [(m["levels_before"], m["levels_after"]) for m in second["moved"]] == [(2, 3)] * 5
    assert LedgerRun(ledger, name).levels(0)[1] == level_1  # what was recorded stays as it was
    assert second["provenance"]["device"].startswith("CPU") and second["provenance"]["commit"]


def test_a_window_stops_inside_its_budget(tmp_path, mirror_dir):
    code, record, log = window(tmp_path, "--budget", "31", "--skip", "cuda tests", "step time", "paper IMP round",
                              "precision")
    assert code == 0, log
    assert record["seconds"] < 31
