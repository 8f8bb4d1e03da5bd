"""IMP tickets against masks chosen at initialization, all fitted by one protocol (chapter 8).

For one task on one image: IMP (LIP) runs on the observation (:meth:`Experiments.imp`), and the
levels whose measured densities are closest to the asked ones are the *matched densities*. At
each, every strategy of :mod:`lipkit.pruning.at_init` (OES, SNIP, GraSP, SynFlow, random) finds a
mask at the IMP ticket's exact density, from the same seed's θ0 and z
(:mod:`lipkit.studies.init_tickets`). Every contender is then fitted by the same loop, to the same
observation, with the same fit seed and for the same ``eval_iters`` (which may exceed the
search's, to show what happens after the peak):

- ``dense``: the dense DIP from θ0;
- ``imp``: the IMP ticket of the level;
- ``oes``, ``snip``, ``grasp``, ``synflow``, ``random``: the masks found at initialization;
- ``deep_decoder``: the deep decoder with the parameter count closest to the level's ticket,
  with Heckel & Hand's settings (:mod:`lipkit.studies.deep_decoder_runs`).

Every row says what its mask cost: forward-backward passes and seconds of the search (IMP: the
fits of the levels before it; dense and deep decoder: nothing), and how many conv layers the
mask left without a single weight (global rankings can empty a layer: *layer collapse*).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lipkit.lottery.imp import ImpRun
from lipkit.models.deep_decoder import deep_decoder_for
from lipkit.pruning.at_init import INIT_STRATEGIES
from lipkit.pruning.masks import mask_sparsity
from lipkit.studies.init_tickets import OES_PAPER_STEPS, InitTicketJob, init_tickets
from lipkit.studies.transfer import TransferJob
from lipkit.summaries import group_stats, mean_std

if TYPE_CHECKING:  # the book's experiments drive this study; it never builds one
    from lipkit.experiments import Experiments

CONTENDERS = ("dense", "imp") + INIT_STRATEGIES + ("deep_decoder",)
LABELS = {"dense": "dense DIP", "imp": "IMP ticket (LIP)", "oes": "OES", "snip": "SNIP", "grasp": "GraSP",
          "synflow": "SynFlow", "random": "random", "deep_decoder": "deep decoder"}
ITERS_FIELD = {"denoise": "denoise_iters", "sr": "sr_iters", "inpaint": "inpaint_iters"}


@dataclass
class Protocol:
    """What the comparison runs: the asked ``densities`` (fractions of conv weights kept), the
    fit length ``eval_iters`` of every contender (None: the task's), the strategies, their own
    lengths, and whether a deep decoder joins at each density."""

    densities: Sequence[float] = (0.5, 0.2, 0.05)
    eval_iters: int | None = None
    strategies: Sequence[str] = INIT_STRATEGIES
    oes_steps: int = OES_PAPER_STEPS
    synflow_rounds: int = 100
    deep_decoder: bool = True


def matched_levels(run: ImpRun, densities: Sequence[float]) -> list[int]:
    """The IMP levels (≥ 1) whose measured density, averaged over seeds, is closest in ratio to
    each of ``densities`` (:meth:`lipkit.lottery.imp.ImpRun.round_for_density`); a level matched twice is
    listed once, sparsest last."""
    return sorted({run.round_for_density(d) for d in densities})


def _kept(ticket) -> float:
    return 1 - mask_sparsity(ticket.masks)


def _imp_cost(run: ImpRun, seed: int, level: int) -> dict:
    """IMP's mask of ``level`` cost the fits of levels 0 .. level-1 of its chain."""
    fits = [r for r in run.records("imp") if r["seed"] == seed and r["round"] < level]
    return dict(passes=sum(r["iterations"] for r in fits), seconds=round(sum(r["seconds"] for r in fits), 3))


def _row(contender: str, level: int | None, record: dict, cost: dict | None, parameters: float) -> dict:
    keys = ("seed", "best_psnr", "es_psnr", "final_psnr", "best_iteration", "es_iteration", "iterations",
            "psnr_curve", "seconds")
    density = 1 - record["conv_sparsity"] if "conv_sparsity" in record else None
    return dict({k: record.get(k) for k in keys}, contender=contender, level=level, density=density,
                kind=record["target"]["kind"], image=record["target"]["image"], metric=record["target"]["metric"],
                parameters=float(parameters), mask_passes=(cost or {}).get("passes", 0),
                mask_seconds=(cost or {}).get("seconds", 0.0),
                empty_layers=sum(d == 0 for d in record.get("layer_density") or []))


def compare(ex: Experiments, kind: str, image: str, protocol: Protocol, *, factor: int = 4,
            mask: str = "bernoulli") -> list[dict]:
    """Every contender at every matched density (and the dense DIP once per seed) on ``image``:
    one row per fit with the contender, IMP level, measured density, seed, the three PSNRs,
    the thinned PSNR curve, parameters left and the mask's cost."""
    run = ex.imp(kind, image, factor=factor, mask=mask, baselines=[])
    search_task = ex.task(kind, image, factor=factor, mask=mask)
    ev, eval_task = _eval_task(ex, kind, image, protocol, factor=factor, mask=mask)
    levels, seeds = matched_levels(run, protocol.densities), run.seeds
    imp_tickets = {(k, s): run.ticket(s, k) for k in levels for s in seeds}
    keys = [(k, s, m) for k in levels for s in seeds for m in protocol.strategies]
    init_jobs = [InitTicketJob(search_task, m, _kept(imp_tickets[k, s]), seed=s, width=ex.width,
                               oes_steps=protocol.oes_steps, synflow_rounds=protocol.synflow_rounds)
                 for k, s, m in keys]
    found = init_tickets(init_jobs, ex.runs_root / "init_tickets", workers=ex.workers, progress=ex.progress)
    imp_plan = [("dense", None, job, None) for job in ex.dense_jobs(eval_task, seeds)]
    imp_plan += [("imp", k, TransferJob(imp_tickets[k, s], eval_task, "ticket", s), _imp_cost(run, s, k))
                 for k in levels for s in seeds]
    init_plan = [(m, k, TransferJob(t, eval_task, "ticket", s), t.meta["cost"]) for (k, s, m), t in zip(keys, found)]
    own = [run.fit_alone(job.seed, k or 0) for _, k, job, _ in imp_plan] if protocol.eval_iters is None else [None]
    if all(r is not None for r in own):
        # the same θ0, masks, observation, seed and length, fitted alone: IMP's own fits are these fits
        records = ([dict(r, target=eval_task.target()) for r in own]
                   + ex.transfer([job for _, _, job, _ in init_plan]))
    else:
        records = ex.transfer([job for _, _, job, _ in imp_plan + init_plan])
    plan = imp_plan + init_plan
    rows = [_row(c, k, r, cost, r["unpruned_params"]) for (c, k, _, cost), r in zip(plan, records)]
    if protocol.deep_decoder:
        sizes = {k: float(np.mean([r["parameters"] for r in rows if r["contender"] == "imp" and r["level"] == k]))
                 for k in levels}
        widths = {k: deep_decoder_for(n, out_channels=eval_task.clean.shape[0])["k"] for k, n in sizes.items()}
        dd = ev.deep_decoders(eval_task, sorted(set(widths.values())))
        for k in levels:
            rows += [_row("deep_decoder", k, r, None, r["parameters"]) for r in dd if r["k"] == widths[k]]
    return rows


def _eval_task(ex: Experiments, kind: str, image: str, protocol: Protocol, **spec):
    ev = ex if protocol.eval_iters is None else replace(ex, **{ITERS_FIELD[kind]: protocol.eval_iters})
    return ev, ev.task(kind, image, **spec)


def transfer_rows(ex: Experiments, kind: str, source: str, target: str, protocol: Protocol, *,
                  contenders: Sequence[str] = ("imp", "oes")) -> list[dict]:
    """Masks found on ``source`` fitted to ``target``, beside the target's own, at the sparsest
    matched density, with the target's dense DIP: rows as :func:`compare`'s with ``origin``
    ("own" or "transferred"). The weights are θ0 of the fit's seed either way: only the mask moves."""
    sparsest = replace(protocol, densities=[min(protocol.densities)], deep_decoder=False,
                       strategies=[c for c in contenders if c != "imp"])
    rows = [dict(r, origin="own") for r in compare(ex, kind, target, sparsest)
            if r["contender"] == "dense" or r["contender"] in contenders]
    source_run = ex.imp(kind, source, baselines=[])
    level = matched_levels(source_run, sparsest.densities)[0]
    search_task, (_, eval_task) = ex.task(kind, source), _eval_task(ex, kind, target, protocol)
    moved = [("imp", source_run.ticket(s, level), _imp_cost(source_run, s, level))
             for s in source_run.seeds if "imp" in contenders]
    jobs = [InitTicketJob(search_task, m, _kept(source_run.ticket(s, level)), seed=s, width=ex.width,
                          oes_steps=protocol.oes_steps, synflow_rounds=protocol.synflow_rounds)
            for s in source_run.seeds for m in sparsest.strategies]
    found = init_tickets(jobs, ex.runs_root / "init_tickets", workers=ex.workers, progress=ex.progress)
    moved += [(job.strategy, t, t.meta["cost"]) for job, t in zip(jobs, found)]
    records = ex.transfer([TransferJob(t, eval_task, "ticket", int(t.meta["seed"])) for _, t, _ in moved])
    rows += [dict(_row(m, level, r, cost, r["unpruned_params"]), origin="transferred")
             for (m, _, cost), r in zip(moved, records)]
    return rows


def summarize(rows: Sequence[dict], by: Sequence[str] = ("contender", "level")) -> list[dict]:
    """Mean and std over seeds of each group of ``rows`` (default: contender and level): the three
    PSNRs and the drop from the best to the last, the measured density, parameters, mask cost and
    ``empty_layers`` (conv layers the mask removed entirely)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, members in groups.items():
        row = dict(zip(by, key), n=len(members), label=LABELS[members[0]["contender"]])
        row.update(group_stats(members, ("best_psnr", "es_psnr", "final_psnr", "parameters", "mask_passes",
                                         "mask_seconds", "empty_layers")))
        row["drop"], row["drop_std"] = mean_std(m["best_psnr"] - m["final_psnr"] for m in members)
        densities = [m["density"] for m in members if m["density"] is not None]
        row["density"] = float(np.mean(densities)) if densities else None
        out.append(row)
    order = {c: i for i, c in enumerate(CONTENDERS)}
    return sorted(out, key=lambda r: (r.get("level") or 0, order[r["contender"]], str(r.get("origin", ""))))
