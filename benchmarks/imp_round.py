"""One IMP round at the quick profile's size: lipkit.lottery.imp vs the plain DIP loop plus pruning.

A round is one fit of the (dense) skip net followed by global magnitude pruning of 20% of the
conv weights. Quick profile size: 64 px crop of set5/baby (or a synthetic image when the image
mirror is missing), skip net of width 32, DIP denoising for 200 iterations. lipkit runs
``lipkit.lottery.imp.imp(rounds=0)`` into a temporary run folder (fit, PNG, masks, records); the
baseline runs ``benchmarks/baseline.py``'s loop, then ranks all conv weights by magnitude.
Both sides use every core, in fresh processes. With several seeds lipkit runs them in worker
processes on a CPU and as one batched model on a GPU (its defaults); the baseline runs them one
after the other.

    python benchmarks/imp_round.py             # 1 and 2 seeds, 200 iterations
    python benchmarks/imp_round.py --quick     # 1 seed, 10 iterations
    python benchmarks/imp_round.py --device cuda --size 512 --width 128 --iters 3000 --seeds 1   # paper profile
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from common import in_fresh_process, save, smooth_image, table


def quick_task(size: int, iters: int):
    """Denoising a ``size`` px crop of set5/baby from the image mirror, or a synthetic image without one."""
    from dataclasses import replace

    from lipkit.fitting.settings import PRESETS
    from lipkit.operators import Denoising
    from lipkit.tasks import Task, make_task

    if os.environ.get("LIPKIT_DATA_MIRROR"):
        return make_task("denoise", "set5/baby", crop=size, iters=iters)
    clean = smooth_image(size)
    op = Denoising(25 / 255)
    return Task("denoise", "synthetic", clean, op, op.observe(clean, seed=0), replace(PRESETS["denoise"], num_iter=iters))


def lipkit_round(size, width, iters, n_seeds, device) -> float:
    import torch

    from lipkit.lottery.imp import imp

    task = quick_task(size, iters)
    arch = dict(num_channels_down=[width] * 5, num_channels_up=[width] * 5)
    with tempfile.TemporaryDirectory() as run_dir:
        t = time.perf_counter()
        imp(task, rounds=0, rate=0.2, seeds=range(n_seeds), arch=arch, run_dir=run_dir, device=device,
            progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t


def baseline_round(size, width, iters, n_seeds, device) -> float:
    import torch

    from baseline import DipLoop
    from lipkit.fitting.loop import default_input
    from lipkit.models import skip_net
    from lipkit.seeding import seeded

    task = quick_task(size, iters)
    t = time.perf_counter()
    for seed in range(n_seeds):
        with seeded(seed, "weights"):
            net = skip_net(num_channels_down=[width] * 5, num_channels_up=[width] * 5)
        z = default_input(net, size, size, seed)
        loop = DipLoop(net, z, task.observation, task.clean, device=device)
        for _ in range(iters):
            loop.step()
        weights = [m.weight.detach().abs().flatten() for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        flat = torch.cat(weights).cpu()
        threshold = flat.kthvalue(int(0.2 * flat.numel())).values
        masks = [(w.abs() > threshold).float() for w in weights]
        assert len(masks) == len(weights)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 10 iterations: a correctness run")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default=None, help="results file name (default imp_round_<device>)")
    args = ap.parse_args()
    seed_counts, iters = ([1], 10) if args.quick else (args.seeds, args.iters)

    rows = []
    for n in seed_counts:
        lip = in_fresh_process(lipkit_round, args.size, args.width, iters, n, args.device)
        base = in_fresh_process(baseline_round, args.size, args.width, iters, n, args.device)
        row = dict(device=args.device, size=args.size, width=args.width, iters=iters, seeds=n, lipkit_s=lip,
                   baseline_s=base, ratio=lip / base)
        rows.append(row)
        print(f"{n} seed(s): lipkit {lip:.1f} s, baseline {base:.1f} s, ratio {lip / base:.2f}", flush=True)
    print(table(rows, ["size", "width", "iters", "seeds", "lipkit_s", "baseline_s", "ratio"]))
    save(args.name or f"imp_round_{args.device.split(':')[0]}" + ("_quick" if args.quick else ""), rows)


if __name__ == "__main__":
    main()
