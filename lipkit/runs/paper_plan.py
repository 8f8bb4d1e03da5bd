"""The paper-scale plan: which IMP runs the GPU windows advance, in which order, level by level.

The first goal is the LIP paper's Fig. 2 (:data:`lipkit.paper.FIG2`): the dense DIP and its
tickets up to 99.53 % sparsity (24 rounds at rate 0.2) for baby (denoising), zebra ×4, pepper ×8
and kate (text inpainting), with the paper profile's settings (whole images, the 128-channel
net, the paper's iterations, 3 seeds), masks searched on the observation as in chapter 2; then
the denoising run searched on the clean image, as the official code does. These are the paper
profile's own runs (:class:`lipkit.experiments.Experiments`, same folder names), so a chapter
built with that profile finds them done.

:func:`advance` adds one level at a time in the order of :func:`schedule`: breadth first, level 0
of every run, then level 1 of every run, and so on, so that every run reaches level 8 (83 %, where
Fig. 2's tickets are) before any goes deeper, and a few short windows fill Fig. 2 row by row
across all its tasks instead of taking one run to 99.53 % first. It restores a run from the ledger (:mod:`lipkit.runs.ledger`) when this
machine does not have it, writes the ledger after every level, and stops before a level that
would end after the deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from lipkit.experiments import PAPER_TASKS, Experiments
from lipkit.lottery.imp import ImpRun
from lipkit.runs.ledger import LedgerRun, export_run, restore_run
from lipkit.paper import FIG2
from lipkit.store.paths import ImpFolder
from lipkit.summaries import level_curve

FIG2_ROUNDS = 24  # 1 - 0.8^24 = 99.53 %, Fig. 2's sparsest ticket


@dataclass
class PlanItem:
    """One run of the plan: a paper task (:data:`lipkit.experiments.PAPER_TASKS`) with ``experiments``'
    settings, trained to ``rounds`` rounds (no baselines: they branch off later)."""

    task: str
    experiments: Experiments
    rounds: int = FIG2_ROUNDS

    @property
    def run_name(self) -> str:
        spec = {k: v for k, v in PAPER_TASKS[self.task].items() if k not in ("title", "kind", "image")}
        return self.experiments.run_name(PAPER_TASKS[self.task]["kind"], PAPER_TASKS[self.task]["image"], **spec)

    @property
    def run_dir(self) -> Path:
        return Path(self.experiments.runs_root) / self.run_name

    def run_level(self, level: int) -> ImpRun:
        """Train (or resume) the run up to ``level`` rounds."""
        return replace(self.experiments, rounds=level, rounds_sr=level).paper_imp(self.task, baselines=[])


def fig2_plan(experiments: Experiments, rounds: int = FIG2_ROUNDS) -> list[PlanItem]:
    """Fig. 2's four runs with ``experiments``' settings, then denoising searched on the clean image."""
    items = [PlanItem(name, experiments, rounds) for name in FIG2]
    return items + [PlanItem("denoise", replace(experiments, search_on="clean"), rounds)]


def levels_done(run_dir: Path) -> int:
    """Levels every seed of the run folder has finished (0 when there is no folder)."""
    if not (run_dir / "config.json").exists():
        return 0
    return ImpFolder(run_dir).finished_levels_of_every_seed()


def ledger_levels(ledger: Path, name: str) -> int:
    """Levels the ledger holds for every seed of the run ``name``."""
    return LedgerRun(ledger, name).finished_levels()


def status(plan: list[PlanItem], ledger: Path) -> list[dict]:
    """Per run of the plan: its name, the levels the ledger holds (all seeds) and the target."""
    return [dict(task=item.task, search_on=item.experiments.search_on, run=item.run_name,
                 levels=ledger_levels(ledger, item.run_name), target=item.rounds + 1) for item in plan]


def _checkout(item: PlanItem, ledger: Path) -> None:
    """Make the run folder the ledger's latest state: restore it when the folder is missing, behind
    the ledger or holds other records than the ledger's (set aside, never deleted)."""
    have, kept = levels_done(item.run_dir), ledger_levels(ledger, item.run_name)
    if not kept:
        return
    entry, differs = LedgerRun(ledger, item.run_name), False
    if have and kept:
        run = ImpRun(item.run_dir)
        mine = {(r["seed"], r["round"]): r for r in run.records("imp")}
        differs = any(mine.get((s, e["record"]["round"]), e["record"]) != e["record"]
                      for s in entry.seeds() for e in entry.levels(s)[:have])
    if kept > have or differs:
        if item.run_dir.exists():
            item.run_dir.rename(item.run_dir.with_name(f"{item.run_name}.set-aside-{int(time.time())}"))
        restore_run(ledger, item.run_name, item.run_dir)


def _work(item: PlanItem) -> float:
    """A level's work in (steps x pixels x seeds x fits), for scaling one measured level to another."""
    ex = item.experiments
    fits = 2 if ex.search_on == "clean" else 1  # the clean search fits, then evaluates on the observation
    return ex.iters(PAPER_TASKS[item.task]["kind"]) * (ex.crop or 512) ** 2 * ex.seeds * fits


# The first level of a window, before any is measured: the target, 30 s per 3,000-step round
# at 512² per seed on one GPU. Later levels scale the last measured one by their work.
GUESS_SECONDS_PER_WORK = 30.0 / (3000 * 512 ** 2)


def schedule(plan: list[PlanItem]) -> list[tuple[int, int]]:
    """``(index in plan, level)`` in the order the windows train them: level k of every run (in
    plan order) before level k + 1 of any.

    >>> class Run:
    ...     def __init__(self, rounds):
    ...         self.rounds = rounds
    >>> schedule([Run(2), Run(1)])
    [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]
    """
    last = max((item.rounds for item in plan), default=-1)
    return [(i, level) for level in range(last + 1) for i, item in enumerate(plan) if level <= item.rounds]


def advance(plan: list[PlanItem], ledger: Path, deadline: float, *, device="cpu", log=print,
            moved: list | None = None) -> list[dict]:
    """Train the plan's levels in :func:`schedule`'s order until the deadline (``time.monotonic()``);
    a level whose estimate would end after it is not started (one that overruns its estimate is
    not stopped). Returns what moved, per run: the levels before and after and the seconds spent;
    ``moved``, when given, is that list, kept up to date after every level."""
    moved = [] if moved is None else moved
    per_work = GUESS_SECONDS_PER_WORK
    entries: dict[str, dict] = {}
    checked_out = set()
    for i, level in schedule(plan):
        item = plan[i]
        if i not in checked_out:
            _checkout(item, ledger)
            checked_out.add(i)
        done = levels_done(item.run_dir)
        if done > level:
            continue
        estimate = 1.2 * per_work * _work(item)
        if time.monotonic() + estimate > deadline:
            log(f"plan: stop before {item.run_name} level {done}: about {estimate:.0f} s, "
                f"{max(0.0, deadline - time.monotonic()):.0f} s left")
            break  # the deadline came: the rest waits for the next window
        t0 = time.monotonic()
        item.run_level(level)
        export_run(item.run_dir, ledger, device=device)
        seconds = time.monotonic() - t0
        per_work = seconds / _work(item)
        if item.run_name not in entries:
            entries[item.run_name] = dict(run=item.run_name, task=item.task, search_on=item.experiments.search_on,
                                          levels_before=done, target=item.rounds + 1, seconds=0.0)
            moved.append(entries[item.run_name])
        entries[item.run_name].update(levels_after=levels_done(item.run_dir),
                                      seconds=round(entries[item.run_name]["seconds"] + seconds, 1))
        log(f"plan: {item.run_name} level {level} done in {seconds:.1f} s")
    return moved


# --- what the ledger holds, for the book ------------------------------------------------------------
def profile_experiments(profiles_yml: str | Path, runs_root: str | Path, profile: str = "paper",
                        **overrides) -> Experiments:
    """Chapter 2's experiments of ``profile`` in the book's ``profiles.yml`` (then ``overrides``):
    the settings, and so the run names, of the plan."""
    import yaml

    params = yaml.safe_load(Path(profiles_yml).read_text())[profile]["02_single_image_imp"]
    return Experiments.from_parameters(params, runs_root=runs_root, **{"progress": False, **overrides})


def ledger_curve(ledger: Path, name: str, key: str = "best_psnr") -> dict:
    """Per level the ledger holds for every one of its seeds: mean and std of ``key``, the mean
    measured sparsity and unpruned parameters (:func:`lipkit.summaries.level_curve`)."""
    entry = LedgerRun(ledger, name)
    levels = entry.finished_levels()
    return level_curve((e["record"] for s in entry.seeds() for e in entry.levels(s)[:levels]),
                       level_of=lambda r: r["round"], key=key)


def fig2_level(sparsity_percent: float, rate: float = 0.2) -> int:
    """The IMP level whose nominal sparsity 1 - (1 - rate)^k is the printed one (59 % -> 4)."""
    import math

    return round(math.log(1 - sparsity_percent / 100) / math.log(1 - rate))


def fig2_rows(plan: list[PlanItem], ledger: Path) -> list[dict]:
    """One row per number printed in Fig. 2, per run of the plan (``sparsity``: the printed one in %,
    None for the dense net): the published PSNR and the ledger's three PSNRs (means over the seeds
    that have the level; None before any has it), with where and when they were made."""
    import numpy as np

    out = []
    for item in plan:
        ref, entry = FIG2[item.task], LedgerRun(ledger, item.run_name)
        targets = [("dense", None, 0, ref["dense"])] + [(f"{s:g} %", s, fig2_level(s), v) for s, v in ref["tickets"]]
        for label, sparsity, level, published in targets:
            found = [entry.levels(s)[level] for s in entry.seeds() if len(entry.levels(s)) > level]
            row = dict(task=item.task, image=ref["image"], search_on=item.experiments.search_on, target=label,
                       sparsity=sparsity, level=level, published=published, n=len(found),
                       devices=sorted({f["provenance"]["device"] for f in found}),
                       dates=sorted({f["provenance"]["date"][:10] for f in found}))
            for key in ("best_psnr", "es_psnr", "final_psnr"):
                row[key] = float(np.mean([f["record"][key] for f in found])) if found else None
            out.append(row)
    return out


def fig2_markdown(rows: list[dict], status: list[dict]) -> str:
    """:func:`fig2_rows` as a Markdown table, then what the ledger still lacks, in plain words."""
    lines = ["| run | network (IMP level) | published | ledger: oracle / ES-WMV / last | seeds | made on |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        mine = "not yet run" if not r["n"] else f"{r['best_psnr']:.2f} / {r['es_psnr']:.2f} / {r['final_psnr']:.2f}"
        lines.append(f"| {r['image']}, searched on the {r['search_on']} | {r['target']} (level {r['level']}) | "
                     f"{r['published']:.2f} | {mine} | {r['n']} | {', '.join(r['devices'] + r['dates']) or '—'} |")
    missing = [f"- `{s['run']}`: {s['levels']} of {s['target']} levels" for s in status if s["levels"] < s["target"]]
    lines += ["", "Still missing from the ledger:" if missing else "Every level of the plan is in the ledger.", ""]
    return "\n".join(lines + missing)


def fig2_figure(plan: list[PlanItem], ledger: Path):
    """Fig. 2's published tickets against the ledger's curve, one panel per run searched on the observation."""
    import matplotlib.pyplot as plt

    from lipkit.plots import plot_curves

    items = [item for item in plan if item.experiments.search_on == "observation"]
    fig, axes = plt.subplots(1, len(items), figsize=(4 * len(items), 3.6), squeeze=False)
    for ax, item in zip(axes[0], items):
        ref = FIG2[item.task]
        published = dict(sparsity=[s / 100 for s, _ in ref["tickets"]], mean=[v for _, v in ref["tickets"]],
                         std=[0.0] * len(ref["tickets"]))
        plot_curves({"Fig. 2 (published)": published, "ledger": ledger_curve(ledger, item.run_name)},
                    dense=(ref["dense"], 0.0), title=ref["image"], ax=ax)
    fig.tight_layout()
    return fig
