"""Command line: ``python -m lipkit imp ...`` for long IMP runs outside notebooks.

Example (the paper's denoising protocol on Set5 baby, 3 seeds):

    python -m lipkit imp --task denoise --image set5/baby --rounds 16 --seeds 3 --out runs/baby

Small runs: ``--crop 64 --iters 200 --width 32``. Running the same command again resumes after
the last completed round; ``summary.json`` in the run folder holds every round's numbers.
"""

from __future__ import annotations

import argparse
import json
import sys


def _imp(a: argparse.Namespace) -> int:
    from lipkit.imp import imp
    from lipkit.store.folder import RunConfigError
    from lipkit.tasks import make_task

    if a.sigma <= 0 or a.sigma > 255:
        raise SystemExit(f"--sigma is in 0-255 units and must be in (0, 255], got {a.sigma}")
    task = make_task(a.task, a.image, sigma=a.sigma / 255, factor=a.factor, mask=a.mask,
                     zero_fraction=a.zero_fraction, crop=a.crop, seed=a.observation_seed, iters=a.iters)
    arch = {}
    if a.width:
        arch = dict(num_channels_down=[a.width] * 5, num_channels_up=[a.width] * 5)
    seeds = a.seed_list if a.seed_list else list(range(a.seeds))
    try:
        run = imp(task, rounds=a.rounds, rate=a.rate, seeds=seeds, search_on=a.search_on,
                  rewind_iteration=a.rewind_iter, keep_input_convs_dense=a.keep_input_convs_dense,
                  method=a.method, arch=arch or None, baselines=a.baselines, run_dir=a.out,
                  workers=a.workers, device=a.device, batch_seeds=a.batch_seeds, progress=not a.quiet)
    except RunConfigError as err:
        print(f"lipkit imp: {err}", file=sys.stderr)
        return 2
    path = run.write_summary()
    curve = run.curve("imp")
    print(json.dumps({"summary": str(path), "sparsity": curve["sparsity"], "best_psnr_mean": curve["mean"],
                      "es_psnr_mean": run.curve("imp", "es_psnr")["mean"],
                      "final_psnr_mean": run.curve("imp", "final_psnr")["mean"]}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lipkit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("imp", help="iterative magnitude pruning on one image (resumable)")
    p.add_argument("--task", required=True, choices=["denoise", "sr", "inpaint"])
    p.add_argument("--image", required=True, help="registry name (set5/baby, dip/kate, ...) or path")
    p.add_argument("--out", required=True, help="run folder (created, or resumed when it exists)")
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--rate", type=float, default=0.2, help="fraction of remaining weights pruned per round")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds: 0..N-1")
    p.add_argument("--seed-list", type=int, nargs="*", help="explicit seeds (overrides --seeds)")
    p.add_argument("--sigma", type=float, default=25, help="denoising noise std in 0-255 units")
    p.add_argument("--factor", type=int, default=4, help="super-resolution factor")
    p.add_argument("--mask", default="bernoulli", help="inpainting: bernoulli, text, or a mask file / registry name")
    p.add_argument("--zero-fraction", type=float, default=0.5, help="inpainting: dropped fraction (bernoulli)")
    p.add_argument("--observation-seed", type=int, default=0,
                   help="seeds the noise or the random mask (its own stream: it may equal a --seeds value)")
    p.add_argument("--crop", type=int, default=None, help="centre crop of this size (small runs)")
    p.add_argument("--iters", type=int, default=None, help="fit iterations per round (default: per-task value)")
    p.add_argument("--width", type=int, default=None, help="channels per level (default 128, the LIP backbone)")
    p.add_argument("--search-on", default="observation", choices=["observation", "clean"])
    p.add_argument("--rewind-iter", type=int, default=0, help="rewind to the weights after this many iterations")
    p.add_argument("--keep-input-convs-dense", action="store_true", help="the official code's quirk")
    p.add_argument("--method", default="magnitude", choices=["magnitude", "random"])
    p.add_argument("--baselines", nargs="*", default=[], choices=["random_global", "random_layerwise", "oneshot"])
    p.add_argument("--workers", type=int, default=None, help="processes for the seeds (default: auto)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    p.add_argument("--batch-seeds", action=argparse.BooleanOptionalAction, default=None,
                   help="fit the seeds of each round as one batched model (default: on a GPU with several seeds)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = ap.parse_args(argv)
    if a.command == "imp":
        return _imp(a)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
