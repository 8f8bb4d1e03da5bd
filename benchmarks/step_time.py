"""Per-iteration time of one DIP fitting step: lipkit.fitting.loop vs the plain DIP loop, and GFLOP/s.

The step is DIP denoising on the LIP skip net (width 128, 2.2 M parameters): input noise,
forward, backward, Adam, moving average, PSNR tracking against the clean image. lipkit runs
``lipkit.fitting.loop.fit`` (default options); the baseline is ``benchmarks/baseline.py``. Each
measurement runs in a fresh process with 1 or 2 threads; the two sides alternate, and each
side's time is the median over its repeats. Achieved GFLOP/s counts the forward and backward
FLOPs (``torch.utils.flop_counter``, on the meta device) over the measured step time, and is
given as a fraction of this machine's dense FP32 matmul GFLOP/s, measured in the same run.

    python benchmarks/step_time.py            # 64-512 px, 1 and 2 threads (a few minutes on 2 cores)
    python benchmarks/step_time.py --quick    # 64 px only, a few steps: a correctness run
    python benchmarks/step_time.py --device cuda --sizes 256 512 --threads 0   # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import StepClock, in_fresh_process, matmul_gflops, save, smooth_image, table

# timed steps per size on a CPU (warm-up steps first): few at large sizes, where one step takes seconds
CPU_STEPS = {64: (3, 12), 128: (2, 6), 256: (1, 3), 512: (1, 2)}
GPU_STEPS = {64: (20, 100), 128: (20, 100), 256: (10, 50), 512: (10, 30)}


def problem(size: int, seed: int = 0):
    from lipkit.fitting.loop import default_input
    from lipkit.models import skip_net
    from lipkit.operators import Denoising
    from lipkit.seeding import seeded

    clean = smooth_image(size)
    op = Denoising(25 / 255)
    noisy = op.observe(clean, seed=seed)
    with seeded(seed, "weights"):
        net = skip_net()
    z = default_input(net, size, size, seed)
    return net, z, op, noisy, clean


def time_lipkit(size: int, warmup: int, steps: int, device: str, options: dict) -> float:
    """Seconds per step of ``lipkit.fitting.loop.fit`` after ``warmup`` steps (timed by a callback)."""
    from lipkit.fitting.loop import fit

    net, z, op, noisy, clean = problem(size)
    clock = StepClock(warmup, steps, device)
    # lipkit's fast configuration: the fused Adam is opt-in because it rounds differently
    # (lipkit.runtime.make_adam)
    options = {"fused_adam": True, **options}
    fit(net, op, noisy, settings="denoise", num_iter=warmup + steps, net_input=z, reference=clean, device=device,
        progress=False, callbacks=[clock], **options)
    return clock.seconds_per_step


def time_baseline(size: int, warmup: int, steps: int, device: str) -> float:
    """Seconds per step of the plain DIP loop after ``warmup`` steps."""
    import torch

    from baseline import DipLoop

    net, z, op, noisy, clean = problem(size)
    torch.manual_seed(0)
    loop = DipLoop(net, z, noisy, clean, device=device)
    for _ in range(warmup):
        loop.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        loop.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def step_gflop(size: int) -> float:
    """Forward + backward GFLOP of one step (:func:`lipkit.fitting.flops.step_flops`, nothing runs)."""
    from lipkit.fitting.flops import step_flops
    from lipkit.models import skip_net

    return step_flops(skip_net(), size, size) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="64 px, 1 thread, 2+3 steps: a correctness run")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads; 0 = leave as is")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2, help="alternating repeats per side at 64 and 128 px")
    ap.add_argument("--options", default="", help="lipkit.fitting.loop.fit options, e.g. channels_last=1,allow_tf32=1,bf16=1")
    ap.add_argument("--name", default=None, help="results file name (default step_time_<device>)")
    args = ap.parse_args()
    options = {k: bool(int(v)) for k, v in (kv.split("=") for kv in args.options.split(",") if kv)}
    sizes, threads_list = ([64], [1]) if args.quick else (args.sizes, args.threads)
    gpu = args.device.startswith("cuda")

    rows = []
    for threads in threads_list:
        peak = matmul_gflops(threads or None) if not gpu else None
        for size in sizes:
            warmup, steps = (2, 3) if args.quick else (GPU_STEPS if gpu else CPU_STEPS)[size]
            repeats = 1 if args.quick or size >= 256 else args.repeats
            t_lip, t_base = [], []
            for r in range(repeats):  # alternate which side goes first
                sides = [("lipkit", t_lip), ("baseline", t_base)]
                for side, out in (sides if r % 2 == 0 else sides[::-1]):
                    if side == "lipkit":
                        out.append(in_fresh_process(time_lipkit, size, warmup, steps, args.device, options,
                                                    threads=threads or None))
                    else:
                        out.append(in_fresh_process(time_baseline, size, warmup, steps, args.device,
                                                    threads=threads or None))
            lip, base = statistics.median(t_lip), statistics.median(t_base)
            gflop = step_gflop(size)
            row = dict(device=args.device, threads=threads, size=size, steps=steps, repeats=repeats,
                       lipkit_ms=1e3 * lip, baseline_ms=1e3 * base, ratio=lip / base, gflop_per_step=gflop,
                       lipkit_gflops=gflop / lip, baseline_gflops=gflop / base, options=args.options,
                       lipkit_runs_ms=[1e3 * t for t in t_lip], baseline_runs_ms=[1e3 * t for t in t_base])
            if peak:
                row.update(matmul_gflops=peak, lipkit_fraction_of_matmul=gflop / lip / peak)
            rows.append(row)
            print(f"{args.device} {threads} thr {size:4d} px: lipkit {1e3 * lip:8.1f} ms, baseline {1e3 * base:8.1f} ms, "
                  f"ratio {lip / base:.3f}, {gflop / lip:.1f} GFLOP/s"
                  + (f" = {gflop / lip / peak:.2f} of matmul {peak:.0f}" if peak else ""), flush=True)
    print(table(rows, ["threads", "size", "steps", "lipkit_ms", "baseline_ms", "ratio", "lipkit_gflops",
                       "matmul_gflops", "lipkit_fraction_of_matmul"]))
    save(args.name or f"step_time_{args.device.split(':')[0]}" + ("_quick" if args.quick else ""), rows)


if __name__ == "__main__":
    main()
