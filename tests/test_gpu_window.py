"""scripts/gpu_window.py on a CPU (--dry-run): the GPU window's whole path at tiny sizes, its plan
resumed from the ledger by a second window on a machine without the first one's run folders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile

import importlib.util

from conftest import ROOT

from lipkit.runs import paper_plan
from lipkit.runs.ledger import LedgerRun


_spec = importlib.util.spec_from_file_location("gpu_window", ROOT / "scripts" / "gpu_window.py")
gpu_window = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_window)


def window(out, *args) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "scripts/gpu_window.py", "--dry-run", "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    records = sorted((out / "paper_profile" / "windows").glob("*.json"))
    return done.returncode, json.loads(records[-1].read_text()), done.stdout + done.stderr


def test_a_dry_run_window_runs_every_step_and_the_next_one_goes_on_from_the_ledger(tmp_path, mirror_dir):
    code, first, log = window(tmp_path, "--budget", "600", "--rounds", "1", "--pack", str(tmp_path / "w.tar.gz"))
    assert code == 0, log
    assert [s["status"] for s in first["steps"]] == ["ok"] * 4, first["steps"]
    assert (tmp_path / "benchmarks" / "step_time_dryrun.json").exists()  # never into the repository's results
    assert [m["levels_after"] for m in first["moved"]] == [2] * 5  # Fig. 2's four runs and the clean search
    # breadth first: level 0 of every run, then level 1 of every run (Fig. 2 fills row by row)
    trained = re.findall(r"plan: (\S+) level (\d+) done", log)
    assert [int(k) for _, k in trained] == [0] * 5 + [1] * 5
    assert [name for name, _ in trained[:5]] == [name for name, _ in trained[5:]] == [m["run"] for m in first["moved"]]
    assert all(s["levels"] == s["target"] == 2 for s in first["plan_status"])
    ledger = tmp_path / "paper_profile" / "ledger"
    name = first["moved"][0]["run"]
    with tarfile.open(tmp_path / "w.tar.gz") as tar:  # what a GPU machine hands back: every file it wrote
        packed = set(tar.getnames())
    assert f"paper_profile/ledger/{name}/seed_1/imp.json" in packed and "benchmarks/step_time_dryrun.json" in packed
    assert any(n.startswith("paper_profile/windows/") for n in packed)
    level_1 = LedgerRun(ledger, name).levels(0)[1]
    # the book reads the ledger: the dense row of each run is filled (2 seeds), the tickets' levels not yet
    plan = paper_plan.fig2_plan(gpu_window.plan_experiments(True, tmp_path), rounds=1)  # the dry run's settings
    rows = paper_plan.fig2_rows(plan, ledger)
    assert [r["n"] for r in rows if r["level"] == 0] == [2] * 5 and all(r["n"] == 0 for r in rows if r["level"])
    dense = [e["record"]["best_psnr"] for s in (0, 1) for e in LedgerRun(ledger, name).levels(s)[:1]]
    assert rows[0]["best_psnr"] == sum(dense) / 2 and rows[0]["devices"][0].startswith("CPU")
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
