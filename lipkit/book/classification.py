"""Chapter 9's tables and numbers (book/09_restoration_and_classification.ipynb): restoration tickets as classifiers, classification tickets as image priors, and where the two keep their weights.

Each function reads records (of :func:`lipkit.lottery.classify.imp_classify`,
:mod:`lipkit.studies.cross_task` and :mod:`lipkit.studies.transfer`) or curves made from them and
returns plain numbers or a Markdown table, so that the page and its test compute the same. Accuracies
are in percent, PSNRs in dB, sparsities in percent of the conv weights; "± std" is over seeds
(:mod:`lipkit.summaries`).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from lipkit.book.tables import STOPPING_RULES, spread_verdict
from lipkit.datasets import require, smoke_stand_in
from lipkit.lottery.settings import ClassifyImpSettings
from lipkit.studies.transfer import curve as transfer_curve
from lipkit.summaries import level_curve, mean_std

CLASSIFIER_CURVES = ("classification IMP", "restoration ticket", "random, same per-layer counts")


def classifier_settings(parameters: Mapping, arch: Mapping) -> ClassifyImpSettings:
    """The classification IMP of the chapter's ``parameters`` (its ``classify_*``, ``dataset``, ``rate``
    and ``seeds``) on the backbone ``arch``; the smoke profile reads fake CIFAR-shaped data when the
    CIFAR-10 batches are not under ``data_root`` (:func:`lipkit.datasets.smoke_stand_in`); a dataset
    that cannot be read is refused here, in one line, before any run starts."""
    p = parameters
    dataset = smoke_stand_in(p["dataset"], p["data_root"]) if p["profile"] == "smoke" else p["dataset"]
    require(dataset, p["data_root"] or None)
    return ClassifyImpSettings(dataset=dataset, size=p["classify_size"], epochs=p["classify_epochs"],
                               milestones=p["classify_milestones"], batch_size=p["classify_batch_size"],
                               head=p["classify_head"], rewind=p["classify_rewind"], rounds=p["classify_rounds"],
                               rate=p["rate"], seeds=range(p["seeds"]), arch=dict(arch))


def _percent(c: dict) -> dict:
    return {**c, "mean": [100 * m for m in c["mean"]], "std": [100 * s for s in c["std"]]}


def _at(c: dict, level: int) -> tuple[float, float, float]:
    """(mean, std, sparsity %) of curve ``c`` at ``level``; NaNs where it has no such level."""
    if level not in c["round"]:
        return math.nan, math.nan, math.nan
    i = c["round"].index(level)
    return c["mean"][i], c["std"][i], 100 * c["sparsity"][i]


def accuracy_curves(classification_run, ticket_records: Sequence[dict]) -> dict[str, dict]:
    """(a): test accuracy (%) against level of the classification run's own tickets (level 0: the
    dense classifier), of the restoration tickets trained from θ0, and of random masks with their
    per-layer counts (the ``ticket`` and ``random_like`` records of
    :func:`lipkit.studies.cross_task.ticket_classifier_jobs`)."""
    by = {v: [r for r in ticket_records if r["variant"] == v] for v in ("ticket", "random_like")}
    own = classification_run.curve("imp_classify", "test_accuracy")
    moved = [level_curve(by[v], level_of=lambda r: r["round"], key="test_accuracy") for v in ("ticket", "random_like")]
    return dict(zip(CLASSIFIER_CURVES, map(_percent, [own, *moved])))


def accuracy_table(curves: Mapping[str, dict]) -> str:
    """(a) as Markdown: per level, each curve's sparsity and accuracy (mean ± std, %)."""
    own, ticket, rand = (curves[k] for k in CLASSIFIER_CURVES)
    rows = ["| level | restoration ticket: sparsity | accuracy | random, same counts | "
            "classification IMP: sparsity | accuracy |", "|---|---|---|---|---|---|"]
    for k in own["round"]:
        t, r, o = _at(ticket, k), _at(rand, k), _at(own, k)
        cell = lambda x: "–" if math.isnan(x[0]) else f"{x[0]:.1f} ± {x[1]:.1f}"
        rows.append(f"| {k} | {'–' if math.isnan(t[2]) else f'{t[2]:.1f} %'} | {cell(t)} | {cell(r)} | "
                    f"{o[2]:.1f} % | {cell(o)} |")
    return "\n".join(rows)


def accuracy_numbers(curves: Mapping[str, dict]) -> dict:
    """(a)'s numbers: the dense classifier, and at the sparsest level the restoration ticket, random
    masks of its counts and the classification ticket; the ticket's lead over random at every level
    both have, and the verdict at the sparsest (a lead within the larger std is no lead)."""
    own, ticket, rand = (curves[k] for k in CLASSIFIER_CURVES)
    k = max(ticket["round"])
    t, r, o = _at(ticket, k), _at(rand, k), _at(own, k)
    both = [j for j in ticket["round"] if j in rand["round"]]
    leads = [_at(ticket, j)[0] - _at(rand, j)[0] for j in both]
    return dict(dense_accuracy=own["mean"][0], dense_accuracy_std=own["std"][0], sparsest_level=k,
                ticket_sparsity=t[2], ticket_accuracy=t[0], ticket_accuracy_std=t[1], random_accuracy=r[0],
                random_accuracy_std=r[1], own_sparsity=o[2], own_accuracy=o[0], own_accuracy_std=o[1],
                ticket_minus_dense=t[0] - own["mean"][0], ticket_minus_random=t[0] - r[0],
                ticket_beats_random=sum(x > 0 for x in leads), n_random_levels=len(both),
                accuracy_verdict=spread_verdict(t[0] - r[0], max(t[1], r[1]), ahead="restoration ticket",
                                                behind="random masks"))


def prior_curves(native_run, records: Sequence[dict]) -> dict[str, dict[str, dict]]:
    """(b) on one task: for each stopping rule (best, ES-WMV, last), PSNR against level of the task's
    own IMP tickets (``native_run``, level 0: the dense DIP), of the classification tickets and of
    random masks with their per-layer counts (the records of
    :func:`lipkit.studies.cross_task.classification_ticket_jobs`)."""
    by = {v: [r for r in records if r["variant"] == v] for v in ("ticket", "random_like")}
    return {rule: {"restoration ticket (the task's own IMP)": native_run.curve("imp", key),
                   "classification ticket": transfer_curve(by["ticket"], key),
                   "random, same per-layer counts": transfer_curve(by["random_like"], key)}
            for rule, key in STOPPING_RULES.items()}


def prior_numbers(curves: Mapping[str, Mapping[str, dict]]) -> dict:
    """(b)'s numbers on one task at its sparsest compared level, per stopping rule ``{rule}_...``: the
    dense DIP, the task's own ticket, the classification ticket and random masks (dB), the
    classification ticket's lead over each, and the verdicts for the best PSNR."""
    out = {}
    for rule, c in curves.items():
        native, moved, rand = c.values()
        k = max(moved["round"])
        n, m, r = _at(native, k), _at(moved, k), _at(rand, k)
        out.update({f"{rule}_dense": native["mean"][0], f"{rule}_native": n[0], f"{rule}_native_std": n[1],
                    f"{rule}_moved": m[0], f"{rule}_moved_std": m[1], f"{rule}_random": r[0],
                    f"{rule}_random_std": r[1], f"{rule}_moved_minus_native": m[0] - n[0],
                    f"{rule}_moved_minus_random": m[0] - r[0]})
        if rule == "best":
            out.update(level=k, native_sparsity=n[2], moved_sparsity=m[2],
                       against_native=spread_verdict(m[0] - n[0], max(m[1], n[1]), ahead="classification ticket",
                                                     behind="task's own ticket"),
                       against_random=spread_verdict(m[0] - r[0], max(m[1], r[1]), ahead="classification ticket",
                                                     behind="random masks"))
    return out


def prior_table(curves: Mapping[str, Mapping[str, dict]]) -> str:
    """(b) on one task as Markdown: per level, the three tickets' best / ES-WMV / last PSNR (mean over
    seeds, dB) and the sparsities."""
    names = list(curves["best"])
    rows = ["| level | sparsity (own / classification) | " + " | ".join(f"{n}: best / ES-WMV / last" for n in names)
            + " |", "|---|---|" + "---|" * len(names)]
    for k in curves["best"][names[1]]["round"]:
        cells = []
        for n in names:
            values = [_at(curves[rule][n], k)[0] for rule in STOPPING_RULES]
            cells.append(" / ".join(f"{v:.2f}" for v in values))
        sparsity = f"{_at(curves['best'][names[0]], k)[2]:.1f} % / {_at(curves['best'][names[1]], k)[2]:.1f} %"
        rows.append(f"| {k} | {sparsity} | " + " | ".join(cells) + " |")
    dense = [curves[rule][names[0]]["mean"][0] for rule in STOPPING_RULES]
    rows.append("| 0 (dense DIP) | 0 % | " + " / ".join(f"{v:.2f}" for v in dense) + " | | |")
    return "\n".join(rows)


def overlap_numbers(kept: Mapping[int, Sequence[dict]]) -> dict:
    """(c): per level (``{level: [cross_task.kept_weights(...) per seed]}``), the mean measured Jaccard
    overlap of the two tickets' kept weights, what random masks of the same counts would have, and
    their ratio (1: no more shared than chance)."""
    levels = sorted(kept)
    iou = [mean_std(k["iou"] for k in kept[j]) for j in levels]
    chance = [mean_std(k["random_iou"] for k in kept[j])[0] for j in levels]
    return dict(levels=levels, iou=[m for m, _ in iou], iou_std=[s for _, s in iou], random_iou=chance,
                iou_ratio=[m / c if c else math.nan for (m, _), c in zip(iou, chance)])


def overlap_table(numbers: Mapping) -> str:
    """(c) as Markdown: per level, the measured overlap, chance and their ratio."""
    rows = ["| level | overlap of kept weights (IoU) | random masks, same counts | ratio |", "|---|---|---|---|"]
    for j, m, s, c, q in zip(numbers["levels"], numbers["iou"], numbers["iou_std"], numbers["random_iou"],
                             numbers["iou_ratio"]):
        rows.append(f"| {j} | {m:.3f} ± {s:.3f} | {c:.3f} | {q:.2f} |")
    return "\n".join(rows)
