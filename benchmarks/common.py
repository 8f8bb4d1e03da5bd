"""What the benchmarks share: the problem they fit, fresh-process isolation, the machine, results.

Every measurement that compares lipkit with a baseline runs in a fresh worker process with its
thread count set, so that neither side inherits the other's state (lipkit's fit keeps freed
memory in the process, see ``lipkit.fitting.loop.keep_freed_memory``; the baseline must not profit).
"""

from __future__ import annotations

import datetime
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from the repository root
    sys.path.insert(0, str(ROOT))

RESULTS = Path(os.environ.get("LIPKIT_BENCHMARK_RESULTS", ROOT / "benchmarks" / "results"))  # scripts/gpu_window.py


def smooth_image(size: int):
    """A (3, size, size) test image in [0, 1]: ramps plus texture, so the fit has work to do."""
    import torch

    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    texture = 0.5 + 0.5 * torch.sin(40 * xx) * torch.cos(30 * yy)
    return torch.stack([xx, yy, texture]).clamp(0, 1)


class StepClock:
    """A ``lipkit.fitting.loop`` callback timing the steps after ``warmup`` (``seconds_per_step`` once the
    fit is done); on a GPU it synchronises before reading the clock."""

    def __init__(self, warmup: int, steps: int, device: str):
        self.warmup, self.steps, self.device, self.stamps = warmup, steps, device, {}

    def __call__(self, state) -> None:
        if state.iteration in (self.warmup - 1, self.warmup + self.steps - 1):
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.synchronize()
            self.stamps[state.iteration] = time.perf_counter()

    @property
    def seconds_per_step(self) -> float:
        return (self.stamps[self.warmup + self.steps - 1] - self.stamps[self.warmup - 1]) / self.steps


def in_fresh_process(fn, *args, threads: int | None = None):
    """``fn(*args)`` in a new spawned process with ``threads`` torch threads; returns its result."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_with_threads, fn, threads, args).result()


def _with_threads(fn, threads, args):
    import torch

    if threads:
        torch.set_num_threads(threads)
    return fn(*args)


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Dense FP32 matmul GFLOP/s of this machine at ``threads`` threads (best of ``repeats``)."""
    return in_fresh_process(_matmul_gflops, n, repeats, threads=threads)


def _matmul_gflops(n: int, repeats: int) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def machine() -> dict:
    """CPU model, cores, torch version, GPU (if any), load average and date."""
    import torch

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")),
                     platform.processor())
    except (OSError, subprocess.SubprocessError):
        model = platform.processor()
    info = dict(cpu=model, cores=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                date=datetime.datetime.now().isoformat(timespec="seconds"), load_average=os.getloadavg(),
                command=" ".join([Path(sys.executable).name] + sys.argv))
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def save(name: str, rows: list[dict], extra: dict | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` (rows plus the machine) and print where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(dict(machine=machine(), **(extra or {}), rows=rows), indent=1))
    print(f"wrote {path}")
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``rows`` (floats to 3 significant digits)."""
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
