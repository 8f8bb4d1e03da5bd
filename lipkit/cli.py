"""Command line: ``python -m lipkit imp|classify|ticket|prune-init|transfer|sweep ...`` for long runs outside notebooks.

Example (the paper's denoising protocol on Set5 baby, 3 seeds; then round 8's ticket of seed 0,
fitted to ×4 super-resolution of another image, beside random masks of its layer counts):

    python -m lipkit imp --task denoise --image set5/baby --rounds 16 --seeds 3 --out runs/baby
    python -m lipkit ticket --run runs/baby --seed 0 --round 8 --out tickets/baby_08
    python -m lipkit transfer --ticket tickets/baby_08 --task sr --image set5/bird \\
        --variants ticket random_like --out runs/baby_08_to_bird

A ticket from a mask chosen at initialization instead (OES here; also snip, grasp, synflow,
random), 5 % of the conv weights kept, from seed 0's θ0 (IMP's seed 0 starts from the same):

    python -m lipkit prune-init --strategy oes --density 0.05 --task denoise --image set14/pepper \
        --sigma 25.5 --out tickets/pepper_oes_5

A grid of IMP runs (a sweep file, ``sweeps/*.yml``) on this machine's cores, or on a Ray cluster,
then where it stands:

    python -m lipkit sweep sweeps/paper_ch2.yml --out runs/paper
    python -m lipkit sweep sweeps/paper_ch2.yml --out /shared/runs --engine ray --address auto
    python -m lipkit sweep sweeps/paper_ch2.yml --out runs/paper --status

Small runs: ``--crop 64 --iters 200 --width 32``. Running the same command again resumes after
the last completed round (or transfer); ``summary.json`` in an IMP run folder holds every round's
numbers. An input that cannot work is reported in one line (``lipkit: error: ...``, exit code 2)
before anything is written; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json

from lipkit.errors import UsageError, reported


def check_options(a: argparse.Namespace) -> None:
    """Every numeric option of the command (the rules of :mod:`lipkit.checks`) and the device,
    checked before anything is loaded or written; every problem is named at once."""
    from lipkit.checks import problems
    from lipkit.device import resolve_device

    resolve_device(a.device)  # a device that is not one, or CUDA on a machine without it: one line
    values = dict(workers=a.workers)
    if a.command != "classify":  # the options of a restoration task
        values.update(sigma=a.sigma, zero_fraction=a.zero_fraction, crop=a.crop, iters=a.iters)
        if a.task == "sr":
            values["factor"] = a.factor
    if a.seeds is not None:
        values["seeds"] = a.seeds
    if a.command in ("imp", "prune-init", "classify") and a.width is not None:
        values["width"] = a.width
    found = problems(values, flag=True)
    seeds_ok = a.seed_list is None or (all(s >= 0 for s in a.seed_list) and len(set(a.seed_list)) == len(a.seed_list))
    if a.seed_list is not None and any(s < 0 for s in a.seed_list):
        found.append(f"--seed-list takes seeds >= 0, got {a.seed_list}")
    if a.seed_list is not None and len(set(a.seed_list)) != len(a.seed_list):
        found.append(f"--seed-list names a seed twice: {a.seed_list}")
    if a.command in ("imp", "classify"):
        from lipkit.lottery.settings import option_problems

        found += option_problems(_settings_class(a), a, seeds=_seeds(a, [0]) if seeds_ok else [0])
    if a.command == "prune-init":
        rules = [
            (0 < a.density < 1,
             f"--density is the fraction of conv weights kept and must be in (0, 1), got {a.density}"),
            (a.seed >= 0, f"--seed must be >= 0, got {a.seed}"),
            (a.oes_steps >= 1, f"--oes-steps must be >= 1, got {a.oes_steps}"),
            (a.synflow_rounds >= 1, f"--synflow-rounds must be >= 1, got {a.synflow_rounds}"),
        ]
        found += [message for ok, message in rules if not ok]
    if found:
        raise UsageError("; ".join(found))


def _settings_class(a: argparse.Namespace) -> type:
    from lipkit.lottery.settings import ClassifyImpSettings, ImpSettings

    return ClassifyImpSettings if a.command == "classify" else ImpSettings


def _arch(a: argparse.Namespace) -> dict | None:
    return None if a.width is None else dict(num_channels_down=[a.width] * 5, num_channels_up=[a.width] * 5)


def _task(a: argparse.Namespace):
    from lipkit.tasks import make_task

    return make_task(a.task, a.image, sigma=a.sigma / 255, factor=a.factor, mask=a.mask,
                     zero_fraction=a.zero_fraction, crop=a.crop, seed=a.observation_seed, iters=a.iters)


def _seeds(a: argparse.Namespace, default: list) -> list:
    return a.seed_list if a.seed_list else list(range(a.seeds)) if a.seeds else default


def _imp(a: argparse.Namespace) -> int:
    from lipkit.lottery.imp import imp
    from lipkit.lottery.settings import ImpSettings, from_options

    check_options(a)
    task = _task(a)
    settings = from_options(ImpSettings, a, seeds=_seeds(a, [0]), arch=_arch(a))
    run = imp(task, settings, run_dir=a.out, workers=a.workers, device=a.device, batch_seeds=a.batch_seeds,
              progress=not a.quiet)
    # imp() wrote the summary of every finished level; these numbers are the levels asked for
    curve = run.curve("imp")
    shown = {"rounds_in_folder": run.config["rounds"]} if run.config["rounds"] > a.rounds else {}
    print(json.dumps({"summary": str(run.folder.summary), **shown, "sparsity": curve["sparsity"],
                      "best_psnr_mean": curve["mean"],
                      "es_psnr_mean": run.curve("imp", "es_psnr")["mean"],
                      "final_psnr_mean": run.curve("imp", "final_psnr")["mean"],
                      "empty_layers": run.empty_layers()}, indent=1))
    return 0


def _classify(a: argparse.Namespace) -> int:
    from lipkit.lottery.classify import imp_classify
    from lipkit.lottery.settings import ClassifyImpSettings, from_options

    check_options(a)
    settings = from_options(ClassifyImpSettings, a, seeds=_seeds(a, [0]), arch=_arch(a))
    run = imp_classify(settings, run_dir=a.out, data_root=a.data_root, device=a.device, workers=a.workers,
                       progress=not a.quiet)
    curve = run.curve("imp_classify", "test_accuracy")
    print(json.dumps({"summary": str(run.folder.summary), "sparsity": curve["sparsity"],
                      "test_accuracy_mean": curve["mean"],
                      "best_accuracy_mean": run.curve("imp_classify", "best_accuracy")["mean"]}, indent=1))
    return 0


def _ticket(a: argparse.Namespace) -> int:
    from lipkit.lottery.imp import ImpRun
    from lipkit.pruning.tickets import Ticket

    if a.round < 0 or a.seed < 0:
        raise UsageError(f"--round and --seed must be >= 0, got {a.round} and {a.seed}")
    _refuse_existing(a.out)
    ticket = ImpRun(a.run).ticket(a.seed, a.round)
    stem = ticket.save(a.out)
    Ticket.load(stem)  # what was written reads back
    print(json.dumps({"ticket": str(stem), "round": a.round, "seed": a.seed,
                      "conv_sparsity": ticket.meta["conv_sparsity"]}, indent=1))
    return 0


def _refuse_existing(out: str) -> None:
    from lipkit.pruning.tickets import ticket_files

    for path in ticket_files(out):  # a ticket someone made is never overwritten
        if path.exists():
            raise UsageError(f"{path} exists; give another --out or delete it")


def _prune_init(a: argparse.Namespace) -> int:
    from lipkit.studies.init_tickets import InitTicketJob, init_ticket
    from lipkit.pruning.tickets import Ticket

    check_options(a)
    _refuse_existing(a.out)
    job = InitTicketJob(_task(a), a.strategy, a.density, seed=a.seed, width=a.width or 128, oes_steps=a.oes_steps,
                        synflow_rounds=a.synflow_rounds)
    ticket = init_ticket(job, device=a.device)
    stem = ticket.save(a.out)
    Ticket.load(stem)  # what was written reads back
    print(json.dumps({"ticket": str(stem), "strategy": a.strategy, "density": ticket.meta["measured_density"],
                      "seed": a.seed, "cost": ticket.meta["cost"]}, indent=1))
    return 0


def _transfer(a: argparse.Namespace) -> int:
    from lipkit.pruning.tickets import Ticket
    from lipkit.studies.transfer import TransferJob, transfer_many

    check_options(a)
    ticket = Ticket.load(a.ticket)
    task = _task(a)
    jobs = [TransferJob(ticket, task, variant, seed) for variant in a.variants for seed in _seeds(a, [None])]
    records = transfer_many(jobs, cache_dir=a.out, workers=a.workers, device=a.device, progress=not a.quiet)
    keys = ("variant", "seed", "conv_sparsity", "best_psnr", "es_psnr", "final_psnr")
    print(json.dumps({"out": a.out, "records": [{k: r[k] for k in keys} for r in records]}, indent=1))
    return 0


def _sweep(a: argparse.Namespace) -> int:
    from lipkit.runs import sweep
    from lipkit.runs.sweep_engines import run_sweep

    plan = sweep.load(a.file)
    if a.workers is not None and a.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {a.workers}")
    if not a.status:
        try:
            run_sweep(plan, a.out, engine=a.engine, address=a.address, workers=a.workers, progress=not a.quiet)
        except ImportError as err:
            raise UsageError(str(err)) from None
    rows = sweep.status(plan, a.out)
    width = max(len(r["id"]) for r in rows)
    print(f"{'job':<{width}}  {'state':<8} records   attempts  error")
    for r in rows:
        print(f"{r['id']:<{width}}  {r['state']:<8} {r['records']:>3}/{r['expected']:<5} {r['attempts']:>8}  "
              f"{r['error'] or ''}")
    counts = {s: sum(r["state"] == s for r in rows) for s in dict.fromkeys(r["state"] for r in rows)}
    print(f"{plan.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 1 if any(r["state"] in ("failed", "crashed") for r in rows) else 0


def add_task_options(p: argparse.ArgumentParser) -> None:
    """The options that make a task (image, degradation, observation seed, crop, iterations)."""
    p.add_argument("--task", required=True, choices=["denoise", "sr", "inpaint"])
    p.add_argument("--image", required=True, help="registry name (set5/baby, dip/kate, ...) or path")
    p.add_argument("--sigma", type=float, default=25, help="denoising noise std in 0-255 units")
    p.add_argument("--factor", type=int, default=4, help="super-resolution factor")
    p.add_argument("--mask", default="bernoulli", help="inpainting: bernoulli, text, or a mask file / registry name")
    p.add_argument("--zero-fraction", type=float, default=0.5, help="inpainting: dropped fraction (bernoulli)")
    p.add_argument("--observation-seed", type=int, default=0,
                   help="seeds the noise or the random mask (its own stream: it may equal a --seeds value)")
    p.add_argument("--crop", type=int, default=None, help="centre crop of this size (small runs)")
    p.add_argument("--iters", type=int, default=None, help="fit iterations (default: per-task value)")


def add_run_options(p: argparse.ArgumentParser, what: str) -> None:
    """Seeds, processes, device and output of a command that fits."""
    p.add_argument("--seeds", type=int, default=None, help=f"number of seeds: 0..N-1 ({what})")
    p.add_argument("--seed-list", type=int, nargs="*", help="explicit seeds (overrides --seeds)")
    p.add_argument("--workers", type=int, default=None, help="processes for the fits (default: auto)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (or LIPKIT_DEBUG=1)")


def main(argv: list[str] | None = None) -> int:
    from lipkit.lottery.settings import ClassifyImpSettings, ImpSettings, add_options

    ap = argparse.ArgumentParser(prog="python -m lipkit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("imp", help="iterative magnitude pruning on one image (resumable)")
    add_task_options(p)
    p.add_argument("--out", required=True, help="run folder (created, or resumed when it exists)")
    add_options(p, ImpSettings)  # one option per setting of the run, with its help text
    p.add_argument("--width", type=int, default=None, help="channels per level (default 128, the LIP backbone)")
    p.add_argument("--batch-seeds", action=argparse.BooleanOptionalAction, default=None,
                   help="fit the seeds of each round as one batched model (default: on a GPU with several seeds)")
    add_run_options(p, "one IMP chain each; default 1")
    p.set_defaults(handler=_imp)

    p = sub.add_parser("classify", help="iterative magnitude pruning of the skip net as an image classifier "
                                        "(the official code's CIFAR-10 experiment; resumable)")
    add_options(p, ClassifyImpSettings)
    p.add_argument("--data-root", default=None,
                   help="cifar10: the folder holding cifar-10-batches-py (never downloaded)")
    p.add_argument("--width", type=int, default=None, help="channels per level (default 128, the LIP backbone)")
    p.add_argument("--out", required=True, help="run folder (created, or resumed when it exists)")
    add_run_options(p, "one IMP chain each; default 1")
    p.set_defaults(handler=_classify)

    p = sub.add_parser("ticket", help="save one round of an IMP run as a ticket (.safetensors + .json)")
    p.add_argument("--run", required=True, help="an IMP run folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--round", type=int, required=True, help="the level (0: dense)")
    p.add_argument("--out", required=True, help="the ticket's path without suffix")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (or LIPKIT_DEBUG=1)")
    p.set_defaults(handler=_ticket)

    from lipkit.pruning.at_init import INIT_STRATEGIES
    from lipkit.studies.init_tickets import OES_PAPER_STEPS

    p = sub.add_parser("prune-init", help="a ticket from a mask chosen at initialization (.safetensors + .json)")
    add_task_options(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--strategy", choices=INIT_STRATEGIES, help="how the mask is chosen at θ0")
    how.add_argument("--method", dest="strategy", choices=INIT_STRATEGIES, help=argparse.SUPPRESS)  # its old name
    p.add_argument("--density", type=float, required=True, help="fraction of the conv weights kept, in (0, 1)")
    p.add_argument("--seed", type=int, default=0, help="θ0 and z of this seed (as IMP's chain of this seed)")
    p.add_argument("--width", type=int, default=None, help="channels per level (default 128, the LIP backbone)")
    p.add_argument("--oes-steps", type=int, default=OES_PAPER_STEPS,
                   help=f"OES: Adam steps on the keep-logits (its code: {OES_PAPER_STEPS})")
    p.add_argument("--synflow-rounds", type=int, default=100, help="SynFlow: pruning rounds (its paper: 100)")
    p.add_argument("--out", required=True, help="the ticket's path without suffix")
    p.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (or LIPKIT_DEBUG=1)")
    p.set_defaults(handler=_prune_init, seeds=None, seed_list=None, workers=None)

    p = sub.add_parser("transfer", help="fit a ticket to another image or task (resumable)")
    p.add_argument("--ticket", required=True, help="a ticket's path, with or without suffix")
    add_task_options(p)
    p.add_argument("--variants", nargs="+", default=["ticket"], choices=["ticket", "random_like", "dense"],
                   help="the ticket's masks, random masks of its per-layer counts, no masks")
    p.add_argument("--out", required=True, help="folder of the records (a rerun skips the fits already there)")
    add_run_options(p, "the fit's z and step noise; default: the ticket's seed")
    p.set_defaults(handler=_transfer)
    p = sub.add_parser("sweep", help="a grid of IMP runs on this machine or a Ray cluster (resumable)")
    p.add_argument("file", help="a sweep file (YAML): settings, jobs, resources, retries; see sweeps/")
    p.add_argument("--out", required=True, help="the runs folder, one run folder per job (on a cluster: storage "
                                                "every node sees)")
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="worker processes here, or Ray tasks")
    p.add_argument("--address", default=None, help="ray: 'auto' or host:port of a running cluster (default: a "
                                                   "private local Ray instance)")
    p.add_argument("--workers", type=int, default=None, help="local: jobs at once (default: cores / resources.cpus)")
    p.add_argument("--status", action="store_true", help="print where each job stands and run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (or LIPKIT_DEBUG=1)")
    p.set_defaults(handler=_sweep)
    a = ap.parse_args(argv)
    return reported(lambda: a.handler(a), debug=a.debug, interrupted=lambda: _interrupted(a))


def _interrupted(a: argparse.Namespace) -> str:
    """After Ctrl-C: what the run folder holds, and what the same command will do."""
    from lipkit.errors import RESUME
    from lipkit.store.paths import ImpFolder

    if a.command != "imp":
        return RESUME
    folder = ImpFolder(a.out)
    done = {s: folder.finished_levels(s) for s in folder.seeds()}
    if not any(done.values()):
        return f"no level was finished in {a.out}: the same command starts it again"
    said = ", ".join(f"seed {s}: levels 0-{n - 1}" if n else f"seed {s}: none" for s, n in done.items())
    return f"finished in {a.out}: {said}; run the same command to resume after them"


if __name__ == "__main__":
    raise SystemExit(main())
