"""Seeds in parallel: S independent fits at once (lipkit.fitting.batched.fit_seeds) vs one after another.

Throughput is iterations per second over all seeds, wall clock from the call to the results,
worker start-up included. On a CPU "at once" is worker processes with one thread each and
"one after another" is each fit using every core (both lipkit); on a GPU "at once" is the
batched (vmapped) model. Default problem: the quick profile's (64 px, skip net of width 32,
DIP denoising settings). Each side runs in a fresh process.

    python benchmarks/seeds.py                 # S = 1, 2, 4, 8 at 64 px, 200 iterations
    python benchmarks/seeds.py --quick         # S = 1, 2, 10 iterations
    python benchmarks/seeds.py --device cuda --size 256 --width 128 --iters 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from common import in_fresh_process, save, smooth_image, table


def run(mode: str, n_seeds: int, size: int, width: int, iters: int, device: str) -> float:
    """Seconds for ``n_seeds`` fits of ``iters`` iterations in ``mode`` (after a short warm-up fit)."""
    import torch

    from lipkit.fitting.batched import fit_seeds
    from lipkit.models import skip_net
    from lipkit.operators import Denoising
    from lipkit.seeding import seeded

    clean = smooth_image(size)
    op = Denoising(25 / 255)
    noisy = op.observe(clean, seed=0)
    arch = dict(num_channels_down=[width] * 5, num_channels_up=[width] * 5)

    def nets(count):
        out = []
        for s in range(count):
            with seeded(s, "weights"):
                out.append(skip_net(**arch))
        return out

    kwargs = dict(settings="denoise", reference=clean, device=device)
    # warm-up in this process (first-call costs of torch and, for "batched", of torch.func)
    fit_seeds(nets(1), op, noisy, seeds=[0], num_iter=3, mode="sequential" if mode == "processes" else mode,
              **kwargs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    fit_seeds(nets(n_seeds), op, noisy, seeds=list(range(n_seeds)), num_iter=iters, mode=mode, **kwargs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="S = 1, 2 with 10 iterations: a correctness run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2, help="alternating repeats per side; the median is kept")
    args = ap.parse_args()
    seeds, iters = ([1, 2], 10) if args.quick else (args.seeds, args.iters)
    gpu = args.device.startswith("cuda")
    together = "batched" if gpu else "processes"
    cores = os.cpu_count() or 1

    rows = []
    for n in seeds:
        # sequential fits use every core (the default thread count); workers get one thread each
        times = {"sequential": [], together: []}
        for r in range(1 if args.quick else args.repeats):  # alternate which side goes first
            for mode in (["sequential", together] if r % 2 == 0 else [together, "sequential"]):
                times[mode].append(in_fresh_process(run, mode, n, args.size, args.width, iters, args.device,
                                                      threads=None if gpu else cores))
        seq, par = statistics.median(times["sequential"]), statistics.median(times[together])
        row = dict(device=args.device, size=args.size, width=args.width, iters=iters, seeds=n, mode=together,
                   sequential_s=seq, together_s=par, sequential_it_s=n * iters / seq, together_it_s=n * iters / par,
                   speedup=seq / par, repeats=len(times[together]), sequential_runs_s=times["sequential"],
                   together_runs_s=times[together])
        rows.append(row)
        print(f"S={n}: sequential {row['sequential_it_s']:.1f} it/s, {together} {row['together_it_s']:.1f} it/s, "
              f"speed-up {row['speedup']:.2f}", flush=True)
    print(table(rows, ["seeds", "iters", "sequential_it_s", "together_it_s", "speedup"]))
    save(f"seeds_{args.device.split(':')[0]}" + ("_quick" if args.quick else ""), rows)


if __name__ == "__main__":
    main()
