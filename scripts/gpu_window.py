"""Turn a short GPU window into permanent progress: run this first whenever a GPU is at hand.

    python scripts/gpu_window.py --budget 480          # a 10-minute window on one GPU
    python scripts/gpu_window.py --dry-run --budget 120 --out /tmp/window   # the same path on a CPU, tiny sizes

In order, each step skipped when the time left is below its estimate:

1. the CUDA tests (``pytest -m cuda``; a dry run only collects them);
2. the GPU benchmarks, short, each once per GPU model (a result file from the same GPU skips it):
   step time in FP32, TF32 and bf16 (channels-last) at 256 and 512 px, 8 seeds batched against
   one after another at 256 px, one paper IMP round (3,000 steps at 512 px), and the effect of
   TF32 and bf16 on best and final PSNR against FP32 (3 seeds, 512 px, denoising and ×4);
3. the rest of the budget advances the paper-scale plan (:mod:`lipkit.runs.paper_plan`) level by
   level, resumed from the ledger in ``results/paper_profile/ledger`` (:mod:`lipkit.runs.ledger`),
   which is written after every level.

Everything to commit lands under ``results/`` (and ``benchmarks/results/``); a record of the
window (steps, times, what moved) goes to ``results/paper_profile/windows/``; ``--pack`` puts every
file the window wrote into one archive, for a machine whose files do not come back on their own.
Budget: a step is stopped (with its worker processes) at three times its estimate or at the
deadline; the plan does not start a level whose estimate would end after the deadline, but does
not stop one that overruns it (the first level of a window is estimated from the issue's target,
later ones from the last measured level), so leave the machine's own limit some slack. A failing
step is recorded and the next one runs; the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESERVE = 15.0  # seconds kept for writing the ledger and the window's record
# the files holding CUDA tests (-m cuda); named, because a GPU machine may lack the book's tools
CUDA_TEST_FILES = ["tests/test_fit.py", "tests/test_batched.py", "tests/test_ledger.py", "tests/test_seeding.py"]


def steps(dry_run: bool) -> list[tuple[str, list[str], float, str | None]]:
    """(name, command, estimated seconds, benchmark result file or None) of steps 1 and 2."""
    py = sys.executable
    tests = [py, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "cuda", *CUDA_TEST_FILES]
    if dry_run:  # the same commands at their --quick sizes on the CPU
        return [("cuda tests", tests + ["--collect-only"], 30, None),
                ("step time", [py, "benchmarks/step_time.py", "--quick", "--name", "step_time_dryrun"], 60,
                 "step_time_dryrun"),
                ("paper IMP round", [py, "benchmarks/imp_round.py", "--quick", "--name", "imp_round_dryrun"], 60,
                 "imp_round_dryrun"),
                ("precision", [py, "benchmarks/precision.py", "--quick"], 60, "precision_cpu_quick")]
    step_time = [py, "benchmarks/step_time.py", "--device", "cuda", "--threads", "0", "--sizes", "256", "512",
                 "--repeats", "1"]
    return [
        ("cuda tests", tests, 60, None),
        ("step time fp32", step_time + ["--name", "step_time_cuda"], 45, "step_time_cuda"),
        ("step time tf32 channels-last", step_time + ["--options", "channels_last=1,allow_tf32=1", "--name",
                                                      "step_time_cuda_tf32_cl"], 45, "step_time_cuda_tf32_cl"),
        ("step time bf16 channels-last", step_time + ["--options", "channels_last=1,bf16=1", "--name",
                                                      "step_time_cuda_bf16_cl"], 45, "step_time_cuda_bf16_cl"),
        ("compact channel ticket", [py, "benchmarks/compact.py", "--device", "cuda", "--threads", "0", "--sizes",
                                    "256", "512", "--keep", "0.45", "--repeats", "1", "--fit-size", "512",
                                    "--fit-iters", "300", "--name", "compact_cuda"], 90, "compact_cuda"),
        ("8 seeds batched vs sequential", [py, "benchmarks/seeds.py", "--device", "cuda", "--size", "256", "--width",
                                           "128", "--iters", "100", "--seeds", "1", "8", "--repeats", "1"], 90,
         "seeds_cuda"),
        ("paper IMP round", [py, "benchmarks/imp_round.py", "--device", "cuda", "--size", "512", "--width", "128",
                             "--iters", "3000", "--seeds", "1"], 120, "imp_round_cuda"),
        # 6 (task, option) parts of 2,000-3,000 steps at 512 px, about 1,000 s in all (the fourth window stopped it
        # at 468 s): it resumes part by part, so the estimate is one part's
        ("precision", [py, "benchmarks/precision.py", "--device", "cuda", "--size", "512", "--seeds", "0", "1", "2"],
         240, "precision_cuda"),
    ]


def measured_here(results: Path, name: str, gpu: str | None) -> bool:
    """Whether ``results/<name>.json`` was measured on this GPU model already."""
    path = results / f"{name}.json"
    if gpu is None or not path.exists():
        return False
    return json.loads(path.read_text()).get("machine", {}).get("gpu") == gpu


def plan_experiments(dry_run: bool, out: Path):
    """The paper profile's IMP settings (book/profiles.yml), or tiny ones for a dry run."""
    from lipkit.runs.paper_plan import profile_experiments

    profiles = ROOT / "book" / "profiles.yml"
    if dry_run:
        return profile_experiments(profiles, out / "runs", crop=64, width=8, seeds=2, denoise_iters=2, sr_iters=2,
                                   inpaint_iters=2)
    return profile_experiments(profiles, ROOT / "_build" / "runs" / "paper")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=480, help="seconds this window may take in all")
    ap.add_argument("--dry-run", action="store_true", help="on a CPU: the same path with tiny sizes, into --out")
    ap.add_argument("--out", type=Path, default=None, help="dry run: where the ledger, runs and records go")
    ap.add_argument("--skip", nargs="*", default=[], help="step names to skip (e.g. 'cuda tests')")
    ap.add_argument("--rounds", type=int, default=None, help="the plan's rounds (default: 24, Fig. 2; dry run: 2)")
    ap.add_argument("--pack", type=Path, default=None,
                    help="also write every file this window wrote into this .tar.gz (to carry it off the machine)")
    a = ap.parse_args()
    if a.budget < 2 * RESERVE:
        ap.error(f"--budget must be at least {2 * RESERVE:.0f} s")
    if a.dry_run and a.out is None:
        ap.error("--dry-run writes into --out (a folder), never into results/")
    start, wall_start = time.monotonic(), time.time() - 1
    deadline = start + a.budget - RESERVE

    import torch

    from lipkit.runs import paper_plan
    from lipkit.runs.ledger import provenance

    if not a.dry_run and not torch.cuda.is_available():
        print("gpu_window: no CUDA GPU here; use --dry-run on a CPU", file=sys.stderr)
        return 2
    device = "cpu" if a.dry_run else "cuda"
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    results = (a.out if a.dry_run else ROOT / "results").resolve()
    bench = results / "benchmarks" if a.dry_run else ROOT / "benchmarks" / "results"
    ledger = results / "paper_profile" / "ledger"
    env = dict(os.environ, LIPKIT_BENCHMARK_RESULTS=str(bench), PYTHONPATH=str(ROOT))
    record = dict(started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  budget_s=a.budget, dry_run=a.dry_run, provenance=provenance(device), steps=[])
    failed = False
    for name, command, estimate, result_file in steps(a.dry_run):
        left = deadline - time.monotonic()
        status, seconds = "skipped", 0.0
        if name in a.skip:
            status = "skipped (asked)"
        elif result_file and measured_here(bench, result_file, gpu):
            status = f"skipped (measured on {gpu} before)"
        elif left < estimate:
            status = f"skipped ({left:.0f} s left, needs about {estimate:.0f})"
        else:
            t0 = time.monotonic()
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)  # its own group: stopped with its workers
            try:
                output, _ = proc.communicate(timeout=min(left, 3 * estimate))
                status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
                tail = output.strip().splitlines()[-3:]
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                status, tail = "stopped (over its time)", []
            seconds = time.monotonic() - t0
            failed |= not status.startswith("ok")
            print(f"gpu_window: {name}: {status} in {seconds:.0f} s" + "".join(f"\n    {t}" for t in tail), flush=True)
        record["steps"].append(dict(name=name, status=status, seconds=round(seconds, 1)))
    plan = paper_plan.fig2_plan(plan_experiments(a.dry_run, results),
                                   rounds=a.rounds or (2 if a.dry_run else paper_plan.FIG2_ROUNDS))
    record["moved"] = []
    try:
        paper_plan.advance(plan, ledger, deadline, device=device, moved=record["moved"],
                           log=lambda m: print(f"gpu_window: {m}", flush=True))
    except Exception as err:  # keep what moved (the ledger is written per level) and say what broke
        failed = True
        record["plan_error"] = f"{type(err).__name__}: {err}"
        print(f"gpu_window: the plan stopped: {record['plan_error']}", file=sys.stderr)
    record["plan_status"] = paper_plan.status(plan, ledger)
    record["seconds"] = round(time.monotonic() - start, 1)
    windows = results / "paper_profile" / "windows"
    windows.mkdir(parents=True, exist_ok=True)
    path = windows / f"{record['started'].replace(':', '').replace('+0000', 'Z')}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"gpu_window: {record['seconds']:.0f} s of {a.budget:.0f}; wrote {path}")
    if a.pack:
        base = a.out.resolve() if a.dry_run else ROOT
        written = [p for folder in (results, bench) if folder.is_dir() for p in sorted(folder.rglob("*"))
                   if p.is_file() and p.stat().st_mtime >= wall_start]
        with tarfile.open(a.pack, "w:gz") as tar:
            for p in written:
                tar.add(p, arcname=str(p.relative_to(base)))
        print(f"gpu_window: packed {len(written)} files into {a.pack} (tar xzf it in the repository's root)")
    for m in record["moved"]:
        print(f"  {m['run']}: levels {m['levels_before']} -> {m['levels_after']} of {m['target']} ({m['seconds']} s)")
    for s in record["plan_status"]:
        print(f"  {s['run']}: {s['levels']}/{s['target']} levels in the ledger")
    return 1 if failed else 0


if __name__ == "__main__":
    from lipkit.errors import reported  # one line for a user's error or Ctrl-C; LIPKIT_DEBUG=1 for the traceback

    raise SystemExit(reported(main, interrupted=lambda: "the ledger holds every level finished before; the next "
                                                        "window goes on from there"))
