"""Do TF32 and bf16 change what a fit finds? Best and final PSNR against FP32, seed by seed.

The speed options (``lipkit.runtime.SpeedOptions``) change rounding; over 2,000-3,000 Adam steps
rounding can move the restoration. This runs the same seeds (θ0, z, input noise) on the paper's
denoising (Set5 baby, σ = 25, 3,000 steps) and ×4 super-resolution (Set14 zebra, 2,000 steps)
tasks at ``--size`` px, once per option, the seeds of each as one batched model on a GPU, and
reports the paired differences to FP32. Each (task, option) is saved as it ends, and a rerun with the
same sizes resumes from there (``<name>_partial.json``), so that short GPU windows add up. What the GPU path uses by default follows from it
(``benchmarks/README.md``).

    python benchmarks/precision.py --device cuda --size 512 --seeds 0 1 2
    python benchmarks/precision.py --quick       # CPU correctness run: 64 px, width 8, 10 steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from common import RESULTS, machine, save, table

OPTIONS = {"fp32": {}, "tf32": dict(allow_tf32=True), "bf16": dict(bf16=True)}
TASKS = {"denoise": ("set5/baby", {}), "sr4": ("set14/zebra", dict(factor=4))}


def run(task_name: str, option: str, seeds: list[int], size: int, width: int, iters: int | None,
        device: str) -> list[dict]:
    import torch

    from lipkit.fitting.batched import fit_seeds
    from lipkit.models import skip_net
    from lipkit.seeding import seeded
    from lipkit.tasks import make_task

    image, extra = TASKS[task_name]
    task = make_task("sr" if task_name == "sr4" else "denoise", image, crop=size, iters=iters, **extra)
    nets = []
    for s in seeds:
        with seeded(s, "weights"):
            nets.append(skip_net(num_channels_down=[width] * 5, num_channels_up=[width] * 5))
    t = time.perf_counter()
    results = fit_seeds(nets, task.operator, task.observation, seeds=seeds, settings=task.settings,
                        reference=task.clean, metric=task.metric, mode="batched" if device != "cpu" else "sequential",
                        device=device, **OPTIONS[option])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    return [dict(task=task_name, option=option, seed=s, best_psnr=r.best_psnr, final_psnr=r.final_psnr,
                 seconds=seconds / len(seeds)) for s, r in zip(seeds, results)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="64 px, width 8, 10 steps, two seeds: a correctness run")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    size, width, iters, seeds = args.size, args.width, None, args.seeds
    if args.quick:
        size, width, iters, seeds = 64, 8, 10, [0, 1]
    name = f"precision_{args.device.split(':')[0]}" + ("_quick" if args.quick else "")
    config = dict(size=size, width=width, iters=iters, seeds=seeds, gpu=machine().get("gpu"))
    rows = resumed_rows(name, config)
    for task in TASKS:
        for option in OPTIONS:
            if not any(r["task"] == task and r["option"] == option for r in rows):
                rows += run(task, option, seeds, size, width, iters, args.device)
                save(name + "_partial", rows, extra=dict(config=config))  # a window stopped mid-way keeps this
    summary = []
    for task in TASKS:
        base = {r["seed"]: r for r in rows if r["task"] == task and r["option"] == "fp32"}
        for option in OPTIONS:
            mine = [r for r in rows if r["task"] == task and r["option"] == option]
            d_best = [r["best_psnr"] - base[r["seed"]]["best_psnr"] for r in mine]
            d_final = [r["final_psnr"] - base[r["seed"]]["final_psnr"] for r in mine]
            summary.append(dict(task=task, option=option, best_psnr=statistics.mean(r["best_psnr"] for r in mine),
                                mean_delta_best=statistics.mean(d_best), max_abs_delta_best=max(map(abs, d_best)),
                                mean_delta_final=statistics.mean(d_final), max_abs_delta_final=max(map(abs, d_final)),
                                seconds_per_fit=statistics.mean(r["seconds"] for r in mine)))
    print(table(summary, ["task", "option", "best_psnr", "mean_delta_best", "max_abs_delta_best", "mean_delta_final",
                          "max_abs_delta_final", "seconds_per_fit"]))
    save(name, rows, extra=dict(summary=summary, size=size, width=width, seeds=seeds))
    (RESULTS / f"{name}_partial.json").unlink(missing_ok=True)


def resumed_rows(name: str, config: dict) -> list[dict]:
    """The rows of an earlier, stopped run with the same ``config`` (``<name>_partial.json``), else []."""
    path = RESULTS / f"{name}_partial.json"
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    if earlier.get("config") != config:
        print(f"ignoring {path}: measured with {earlier.get('config')}, not {config}")
        return []
    print(f"resuming from {path}: {len(earlier['rows'])} fits measured")
    return earlier["rows"]


if __name__ == "__main__":
    main()
