"""Does a channel ticket save time? One DIP fit of the dense LIP skip net against its compacted
channel ticket (``lipkit.pruning.channels.compact``), same steps, same machine, side by side.

The ticket keeps ``--keep`` of every layer's channels (ranked by filter magnitude); its FLOPs per
step (forward + backward, :func:`lipkit.fitting.flops.step_flops`) are about keep² of the dense net's. Each
measurement is a whole ``lipkit.fitting.loop.fit`` in a fresh process with 1 or 2 threads; the time per
step is taken after warm-up steps; whole fits of the quick profile's length (200 steps at 64 px,
network construction and start-up included) are timed apart.
The two sides alternate; each side's time is the median over ``--repeats``.

    python benchmarks/compact.py                      # 64, 128, 256 px; 1 and 2 threads
    python benchmarks/compact.py --quick              # 64 px, 1 thread, a few steps
    python benchmarks/compact.py --device cuda --sizes 256 512 --threads 0
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import StepClock, in_fresh_process, save, smooth_image, table

CPU_STEPS = {64: (3, 12), 128: (2, 8), 256: (1, 4), 512: (1, 2)}
GPU_STEPS = {64: (20, 100), 128: (20, 100), 256: (10, 50), 512: (10, 30)}


def network(compacted: bool, keep: float):
    from lipkit.pruning.channels import compact, dense_channels, parameter_masks, prune_channels
    from lipkit.models import skip_net
    from lipkit.pruning.masks import apply_masks
    from lipkit.seeding import seeded

    with seeded(0, "weights"):
        net = skip_net()
    if not compacted:
        return net
    channels = prune_channels(net, dense_channels(net), 1 - keep, scope="layer")
    apply_masks(net, parameter_masks(net, channels))
    return compact(net, channels)


def step_gflop(net, size: int) -> float:
    """Forward + backward GFLOP of one step (:func:`lipkit.fitting.flops.step_flops`, nothing runs)."""
    from lipkit.fitting.flops import step_flops

    return step_flops(net, size, size) / 1e9


def time_fit(compacted: bool, keep: float, size: int, warmup: int, steps: int, device: str) -> tuple[float, float]:
    """(seconds per step after ``warmup`` steps, seconds of the whole fit) of ``lipkit.fitting.loop.fit``."""
    from lipkit.fitting.loop import fit
    from lipkit.operators import Denoising

    start = time.perf_counter()
    net = network(compacted, keep)
    clean = smooth_image(size)
    op = Denoising(25 / 255)
    clock = StepClock(warmup, steps, device)
    fit(net, op, op.observe(clean, seed=0), settings="denoise", num_iter=warmup + steps, reference=clean,
        device=device, progress=False, callbacks=[clock])
    return clock.seconds_per_step, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="64 px, 1 thread, 1 repeat: a correctness run")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads; 0 = leave as is")
    ap.add_argument("--keep", type=float, default=0.5, help="fraction of every layer's channels the ticket keeps")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default=None, help="results file name (default compact_<device>)")
    ap.add_argument("--fit-size", type=int, default=64, help="size of the whole fits timed (the quick profile's)")
    ap.add_argument("--fit-iters", type=int, default=200, help="steps of a whole fit (the quick profile's denoising)")
    args = ap.parse_args()
    sizes, threads, repeats = args.sizes, args.threads, args.repeats
    if args.quick:
        sizes, threads, repeats = [64], [1], 1
    steps = GPU_STEPS if args.device.startswith("cuda") else CPU_STEPS
    dense_net, small_net = network(False, args.keep), network(True, args.keep)
    rows = []
    for size in sizes:
        warmup, n = steps.get(size, (1, 2))
        if args.quick:
            warmup, n = 1, 2
        gflop = step_gflop(dense_net, size), step_gflop(small_net, size)
        for t in threads:
            times = {False: [], True: []}
            for _ in range(repeats):
                for compacted in (False, True):
                    times[compacted].append(in_fresh_process(time_fit, compacted, args.keep, size, warmup, n,
                                                             args.device, threads=t or None))
            dense = statistics.median(x[0] for x in times[False])
            small = statistics.median(x[0] for x in times[True])
            rows.append(dict(size=size, threads=t, dense_ms=1e3 * dense, compact_ms=1e3 * small,
                             step_speedup=dense / small, flop_ratio=gflop[0] / gflop[1], dense_gflop=gflop[0],
                             compact_gflop=gflop[1]))
            print(table(rows[-1:], list(rows[-1])), flush=True)
    fits = []  # whole fits, network construction and start-up included
    iters = 5 if args.quick else args.fit_iters
    for t in threads:
        whole = {False: [], True: []}
        for _ in range(repeats):
            for compacted in (False, True):
                whole[compacted].append(in_fresh_process(time_fit, compacted, args.keep, args.fit_size, 1, iters - 1,
                                                         args.device, threads=t or None)[1])
        dense, small = statistics.median(whole[False]), statistics.median(whole[True])
        fits.append(dict(size=args.fit_size, threads=t, iterations=iters, dense_s=dense, compact_s=small,
                         fit_speedup=dense / small))
    params = (sum(p.numel() for p in dense_net.parameters()), sum(p.numel() for p in small_net.parameters()))
    print(table(rows, ["size", "threads", "dense_ms", "compact_ms", "step_speedup", "flop_ratio"]))
    print(table(fits, ["size", "threads", "iterations", "dense_s", "compact_s", "fit_speedup"]))
    save(args.name or f"compact_{args.device.split(':')[0]}" + ("_quick" if args.quick else ""), rows,
         extra=dict(keep=args.keep, dense_params=params[0], compact_params=params[1], whole_fits=fits))


if __name__ == "__main__":
    main()
