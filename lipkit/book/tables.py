"""Chapter tables and verdicts, computed from stored records: the chapter shows them and glues
their numbers, and its test calls the same function on the same records, so the two can never
follow different arithmetic or different rules.

Means and stds over seeds are :func:`lipkit.summaries.mean_std` (population std).

>>> row = dict(lip_best=31.0, lip_best_std=1.0)
>>> mean_std_text(row, "lip_best")
'31.00 ± 1.00'
>>> spread_verdict(0.4, spread=0.5, ahead="ticket", behind="deep decoder")
'within about a standard deviation of each other'
>>> spread_verdict(-0.9, spread=0.5, ahead="ticket", behind="deep decoder")
'more than a standard deviation apart, the deep decoder ahead'
>>> count_text(0, 4), count_text(3, 4), count_text(4, 4), count_text(1, 1)
('none of the 4', '3 of the 4', 'all 4', 'the one')
>>> claim_verdict(0, 4), claim_verdict(3, 4), claim_verdict(4, 4)
('contradicts it', 'supports it only in part', 'supports it')
>>> bold_larger(24.1, 31.5, "24.10 ± 0.13", "31.45 ± 0.33")
('24.10 ± 0.13', '**31.45 ± 0.33**')
"""

from __future__ import annotations

from typing import Iterable, Sequence

from lipkit.summaries import mean_std

STOPPING_RULES = {"best": "best_psnr", "es": "es_psnr", "final": "final_psnr"}  # rule -> record field (dB)
RULE_NAMES = {"best": "oracle", "es": "ES-WMV", "final": "last"}  # rule -> a table column's short name


def mean_std_text(row: dict, key: str) -> str:
    """``"mean ± std"`` (dB, to 0.01) of a table row's ``key`` and ``key + "_std"``."""
    return f"{row[key]:.2f} ± {row[key + '_std']:.2f}"


def count_text(hits: int, n: int) -> str:
    """``hits`` of ``n`` in words for a sentence ("none of the 4", "3 of the 4", "all 4"), so that a
    page's claim reads right whichever way the run went."""
    if n == 1:
        return "the one" if hits else "not the one"
    return "none of the %d" % n if hits == 0 else "all %d" % n if hits == n else f"{hits} of the {n}"


def claim_verdict(hits: int, n: int) -> str:
    """What a run that found a paper's claim true in ``hits`` of ``n`` cases does to the claim."""
    if n == 0:
        return "cannot test it"
    return "contradicts it" if hits == 0 else "supports it" if hits == n else "supports it only in part"


def bold_highest(values: Sequence[float], texts: Sequence[str]) -> list[str]:
    """The cells ``texts`` of a table row comparing ``values`` (higher is better), the highest in bold
    (ties all bold): one rule for every table that marks a winner."""
    top = max(values)
    return [f"**{t}**" if v == top else t for v, t in zip(values, texts)]


def bold_larger(a: float, b: float, a_text: str, b_text: str) -> tuple[str, str]:
    """The two cells of a table comparing ``a`` and ``b``: :func:`bold_highest` of the pair."""
    return tuple(bold_highest([a, b], [a_text, b_text]))


def spread_verdict(gap: float, spread: float, *, ahead: str, behind: str) -> str:
    """The words for a difference of means ``gap`` (``ahead`` minus ``behind``) against ``spread``,
    the larger of the two stds: a gap smaller than the spread is no difference at this seed count."""
    if abs(gap) < spread:
        return "within about a standard deviation of each other"
    return f"more than a standard deviation apart, the {ahead if gap > 0 else behind} ahead"


def ticket_against_deep_decoder(run, deep_decoders: Sequence[dict], level: int, width: int) -> dict:
    """Chapter 5's row for one problem: the IMP ticket of ``run`` (a :class:`lipkit.lottery.imp.ImpRun`)
    at round ``level`` against the deep decoder of ``width`` channels (``k``) among the records
    ``deep_decoders`` (:func:`lipkit.studies.deep_decoder_runs.deep_decoder_runs`, one task).

    Returns, per stopping rule (``best``, ``es``, ``final``), ``lip_<rule>`` and ``dd_<rule>``
    with their ``_std`` (dB, over seeds); ``random_layerwise`` and ``random_global`` (best PSNR of
    the branch baselines at that round), ``dense`` (round 0), ``sparsity`` (mean measured, 0-1),
    ``seeds`` (how many of each), ``gap`` (ticket minus deep decoder, best PSNR) and ``verdict``
    (:func:`spread_verdict`).
    """
    records = run.records()  # read once: every call of run.records reads the folder's files

    def at(method: str, key: str, round_: int = level) -> list[float]:
        return [r[key] for r in records if r["method"] == method and r["round"] == round_]

    decoders = [r for r in deep_decoders if r["k"] == width]
    row: dict = {}
    for rule, key in STOPPING_RULES.items():
        row[f"lip_{rule}"], row[f"lip_{rule}_std"] = mean_std(at("imp", key))
        row[f"dd_{rule}"], row[f"dd_{rule}_std"] = mean_std(r[key] for r in decoders)
    for baseline in ("random_layerwise", "random_global"):
        row[baseline], row[f"{baseline}_std"] = mean_std(at(baseline, "best_psnr"))
    row["dense"], row["dense_std"] = mean_std(at("imp", "best_psnr", 0))
    row["sparsity"] = mean_std(at("imp", "conv_sparsity"))[0]
    row["seeds"] = dict(lip=len(at("imp", "best_psnr")), dd=len(decoders))
    row["gap"] = row["lip_best"] - row["dd_best"]
    row["verdict"] = spread_verdict(row["gap"], max(row["lip_best_std"], row["dd_best_std"]), ahead="ticket",
                                    behind="deep decoder")
    return row


def ticket_wins(rows: Iterable[dict], rule: str = "best") -> int:
    """How many of :func:`ticket_against_deep_decoder`'s ``rows`` the ticket wins under ``rule``."""
    return sum(row[f"lip_{rule}"] > row[f"dd_{rule}"] for row in rows)


def transfer_comparison(native: dict, moved: dict, random: dict) -> dict:
    """Chapter 3's comparison of a transferred ticket with the target's own (native) ticket, from
    three curves (:func:`lipkit.studies.transfer.curve` or :meth:`lipkit.lottery.imp.ImpRun.curve`: per round,
    mean best PSNR in dB): ``gaps`` per round of ``moved`` (moved minus native at the same
    round), ``mean_gap``, and at the sparsest round ``gap_max``, ``native_max``, ``transfer_max``,
    ``random_like_max``, ``sparsity_max`` (0-1), ``n_seeds`` and ``beats_random`` (transferred
    above random there)."""
    gaps = [moved["mean"][i] - native["mean"][native["round"].index(k)] for i, k in enumerate(moved["round"])]
    return dict(gaps=gaps, mean_gap=mean_std(gaps)[0], gap_max=gaps[-1],
                native_max=native["mean"][native["round"].index(moved["round"][-1])],
                transfer_max=moved["mean"][-1], random_like_max=random["mean"][-1], sparsity_max=moved["sparsity"][-1],
                n_seeds=moved["n"][-1], beats_random=moved["mean"][-1] > random["mean"][-1])


def transfer_rules(comparisons: dict) -> tuple[str, dict]:
    """Chapter 3's transfers under every stopping rule: ``comparisons`` maps a label to (the target's
    native :class:`lipkit.lottery.imp.ImpRun`, the transferred records split by
    :func:`lipkit.studies.transfer.by_variant`). At the transferred tickets' sparsest round, per rule,
    the native and transferred means over seeds and their gap (dB), as a Markdown table, and
    ``rules_gap_best``, ``rules_gap_es``, ``rules_gap_final``: the gap's mean over the labels."""
    from lipkit.studies.transfer import curve

    names = " / ".join(RULE_NAMES[rule] for rule in STOPPING_RULES)
    lines = [f"| ticket from → used for | native: {names} | transferred: {names} | gap: {names} |", "|---|---|---|---|"]
    gaps: dict[str, list[float]] = {rule: [] for rule in STOPPING_RULES}
    for label, (native_run, records) in comparisons.items():
        at = {rule: transfer_comparison(native_run.curve("imp", field), curve(records["ticket"], field),
                                        curve(records["random_like"], field))
              for rule, field in STOPPING_RULES.items()}
        for rule in STOPPING_RULES:
            gaps[rule].append(at[rule]["gap_max"])
        lines.append(f"| {label} | " + " / ".join(f"{at[r]['native_max']:.2f}" for r in STOPPING_RULES) + " | "
                     + " / ".join(f"{at[r]['transfer_max']:.2f}" for r in STOPPING_RULES) + " | "
                     + " / ".join(f"{at[r]['gap_max']:+.2f}" for r in STOPPING_RULES) + " |")
    return "\n".join(lines), {f"rules_gap_{rule}": mean_std(g)[0] for rule, g in gaps.items()}


def transfer_matrix(records: Sequence[dict], images: Sequence[str]) -> dict:
    """Chapter 3's matrix: one ticket (variants ``ticket``, ``random_like``, ``dense`` of
    :mod:`lipkit.studies.transfer`) on each of ``images``. Per image, in that order, ``ticket_gain`` and
    ``random_gain`` (mean best PSNR over seeds minus the dense net's, dB) and ``structure``
    (their difference); their means, and ``ticket_wins`` (images where the ticket beats random)."""
    def mean_psnr(variant: str, image: str) -> float:
        return mean_std(r["best_psnr"] for r in records if r["variant"] == variant and r["target"]["image"] == image)[0]

    ticket = [mean_psnr("ticket", n) - mean_psnr("dense", n) for n in images]
    random = [mean_psnr("random_like", n) - mean_psnr("dense", n) for n in images]
    structure = [t - r for t, r in zip(ticket, random)]
    return dict(ticket_gain=ticket, random_gain=random, structure=structure, mean_ticket_gain=mean_std(ticket)[0],
                mean_random_gain=mean_std(random)[0], mean_structure=mean_std(structure)[0],
                ticket_wins=sum(x > 0 for x in structure))


# Chapter 7's target, as its page states it (book/07_tickets_that_save_time.ipynb): a channel ticket with
# at least 4x fewer FLOPs and a 3x faster fit than the dense net, no more than 0.3 dB below it (best
# PSNR) on at least two of the three tasks
RACE_TARGET = dict(flops_ratio=4.0, speedup=3.0, gap_db=0.3, tasks_within=2)


def race_rows(summary: Sequence[dict], task) -> list[dict]:
    """The rows of :func:`lipkit.studies.fast_tickets.summarize` for ``task`` (a :class:`lipkit.tasks.Task`),
    one per contender in :data:`lipkit.studies.fast_tickets.CONTENDERS` order."""
    from lipkit.studies.fast_tickets import CONTENDERS

    mine = [r for r in summary if (r["kind"], r["image"], r["task_params"]) == (task.kind, task.image, str(task.params))]
    return [next(r for r in mine if r["contender"] == c) for c in CONTENDERS]


def race_numbers(by_task: dict[str, list[dict]]) -> dict:
    """Chapter 7's numbers from :func:`race_rows` per task name: for each task ``<name>_flops_ratio``,
    ``_speedup`` (channel ticket against dense), ``_ticket_best``, ``_dense_best``, ``_gap`` (ticket
    minus dense, dB), ``_narrow_best``, ``_vs_narrow``, ``_ticket_final``, ``_dense_final``,
    ``_unstructured_speedup``, ``_random_best``, ``_dd_best``; over the tasks ``min_``/``max_speedup``,
    ``min_``/``max_flops_ratio``, ``within_03`` (tasks within :data:`RACE_TARGET`'s gap),
    ``beats_narrow``, ``unstructured_speedup`` (mean), ``ticket_on_front`` (tasks whose
    time-PSNR Pareto front holds the ticket), ``dd_leads`` (tasks where the deep decoder has the
    highest best PSNR of every contender), ``ticket_max_std`` and ``target_verdict``."""
    from lipkit.studies.fast_tickets import pareto_front

    out: dict = {}
    for name, rows in by_task.items():
        row = {r["contender"]: r for r in rows}
        ticket, dense, narrow = row["channel_ticket"], row["dense"], row["narrow"]
        out.update({f"{name}_flops_ratio": ticket["flops_ratio"], f"{name}_speedup": ticket["speedup"],
                    f"{name}_ticket_best": ticket["best_psnr"], f"{name}_dense_best": dense["best_psnr"],
                    f"{name}_gap": ticket["gap_to_dense"], f"{name}_narrow_best": narrow["best_psnr"],
                    f"{name}_vs_narrow": ticket["best_psnr"] - narrow["best_psnr"],
                    f"{name}_ticket_final": ticket["final_psnr"], f"{name}_dense_final": dense["final_psnr"],
                    f"{name}_unstructured_speedup": row["unstructured"]["speedup"],
                    f"{name}_random_best": row["random_channels"]["best_psnr"],
                    f"{name}_dd_best": row["deep_decoder"]["best_psnr"]})
    names = list(by_task)
    speedups = [out[f"{n}_speedup"] for n in names]
    ratios = [out[f"{n}_flops_ratio"] for n in names]
    within = sum(out[f"{n}_gap"] >= -RACE_TARGET["gap_db"] for n in names)
    fronts = {n: [rows[i]["contender"] for i in pareto_front([(r["seconds"], r["best_psnr"]) for r in rows])]
              for n, rows in by_task.items()}
    met = (min(ratios) >= RACE_TARGET["flops_ratio"] and min(speedups) >= RACE_TARGET["speedup"]
           and within >= RACE_TARGET["tasks_within"])
    out.update(min_speedup=min(speedups), max_speedup=max(speedups), min_flops_ratio=min(ratios),
               max_flops_ratio=max(ratios), within_03=within,
               beats_narrow=sum(out[f"{n}_vs_narrow"] > 0 for n in names),
               unstructured_speedup=mean_std(out[f"{n}_unstructured_speedup"] for n in names)[0],
               ticket_on_front=sum("channel_ticket" in fronts[n] for n in names),
               dd_leads=sum(next(r for r in rows if r["contender"] == "deep_decoder")["best_psnr"]
                            >= max(r["best_psnr"] for r in rows) for rows in by_task.values()),
               ticket_max_std=max(next(r for r in by_task[n] if r["contender"] == "channel_ticket")["best_psnr_std"]
                                  for n in names),
               target_verdict="meets the target" if met else "does not meet the target")
    return out


# Chapter 4 (book/04_weight_sharing.ipynb): tables of Experiments.tickets_on_images, {label: {image: best PSNR}}.
def row_mean(table: dict[str, dict[str, float]], label: str, images: Sequence[str]) -> float:
    """Mean over ``images`` of ``label``'s row (dB)."""
    return mean_std(table[label][i] for i in images)[0]


def tickets_table(table: dict[str, dict[str, float]], own: Sequence[str], held_out: Sequence[str]) -> str:
    """Chapter 4's table (Markdown): a row per ticket label, a column per image (``own``, the search's
    images, then ``held_out``), and the row's means over each group."""
    cols = list(own) + list(held_out)
    head = "| ticket | " + " | ".join(c.split("/")[1] + (" (held out)" if c in held_out else "") for c in cols)
    lines = [head + " | mean, own | mean, held out |", "|---|" + "---|" * (len(cols) + 2)]
    for label, row in table.items():
        lines.append(f"| {label} | " + " | ".join(f"{row[c]:.2f}" for c in cols)
                     + f" | {row_mean(table, label, own):.2f} | {row_mean(table, label, held_out):.2f} |")
    return "\n".join(lines)


def tickets_rules_table(by_rule: dict[str, dict[str, dict[str, float]]], own: Sequence[str],
                        held_out: Sequence[str]) -> str:
    """Chapter 4's tables of :meth:`lipkit.experiments.Experiments.tickets_on_images`, one per stopping
    rule (``by_rule``: rule of :data:`STOPPING_RULES` -> table), as one Markdown table: per label, the
    means over ``own`` and over ``held_out`` under each rule (dB)."""
    if not by_rule:
        raise ValueError("no stopping rule given: by_rule maps rules of STOPPING_RULES to tables")
    rules = " / ".join(RULE_NAMES[r] for r in by_rule)
    lines = [f"| ticket | own images: {rules} | held out: {rules} |", "|---|---|---|"]
    for label in next(iter(by_rule.values())):
        lines.append(f"| {label} | " + " / ".join(f"{row_mean(t, label, own):.2f}" for t in by_rule.values()) + " | "
                     + " / ".join(f"{row_mean(t, label, held_out):.2f}" for t in by_rule.values()) + " |")
    return "\n".join(lines)


def layer_density_gap(a: dict, b: dict) -> float:
    """Largest difference, in percentage points, between the per-layer densities of mask sets ``a``
    and ``b`` (name -> {0,1} tensor, the same layers)."""
    from lipkit.pruning.masks import layer_densities

    return 100 * max(abs(x - y) for x, y in zip(layer_densities(a).values(), layer_densities(b).values()))


def overlap_table(overlaps: dict[str, dict]) -> str:
    """Chapter 4's overlap table (Markdown): per label, the Jaccard overlap (``iou`` of
    :func:`lipkit.pruning.masks.mask_overlap`) of its kept weights with the per-image shared ticket's."""
    lines = ["| ticket | kept weights shared with the per-image shared ticket |", "|---|---|"]
    lines += [f"| {label} | {100 * o['iou']:.1f} % (Jaccard) |" for label, o in overlaps.items()]
    return "\n".join(lines)


# Chapter 2 (book/02_single_image_imp.ipynb): IMP runs (lipkit.lottery.imp.ImpRun) per task name, with branch baselines.
BASELINE_NAMES = {"random_global": "random (global)", "random_layerwise": "random (layer-wise)",
                  "oneshot": "one-shot magnitude"}


def imp_numbers(runs: dict, baselines: Sequence[str], rate: float, titles: dict[str, str] | None = None) -> dict:
    """Chapter 2's numbers at each run's sparsest round (means over seeds, dB): per task name
    ``<name>_dense``, ``_imp_max``, ``_es_max``, ``_final_max``, ``_dense_es``, ``_dense_final``,
    ``_sparsity_max`` (%), ``_params_max`` and ``_<baseline>_max``; over the tasks ``imp_wins`` (tasks
    where IMP is at least as good as every baseline), ``imp_behind_text`` (the others, by ``titles``
    or name, or "none"), ``n_methods`` (IMP and the baselines), ``<method>_mean_max``,
    ``imp_es_mean_max``, ``imp_final_mean_max``, ``n_tasks``, ``n_convs`` and ``max_sparsity_error``
    (largest distance, in weights, of any round's kept count from ``total·(1 − rate)^round``)."""
    out: dict = {}
    wins = max_error = n_layers = 0
    behind = []
    for name, run in runs.items():
        imp_c, es_c, final_c = (run.curve("imp", key) for key in ("best_psnr", "es_psnr", "final_psnr"))
        last = len(imp_c["round"]) - 1
        at_max = {m: run.curve(m)["mean"][-1] for m in baselines}
        out.update({f"{name}_dense": imp_c["mean"][0], f"{name}_imp_max": imp_c["mean"][last],
                    f"{name}_final_max": final_c["mean"][last], f"{name}_es_max": es_c["mean"][last],
                    f"{name}_dense_es": es_c["mean"][0], f"{name}_dense_final": final_c["mean"][0],
                    f"{name}_sparsity_max": 100 * imp_c["sparsity"][last],
                    f"{name}_params_max": int(imp_c["unpruned_params"][last])})
        out.update({f"{name}_{m}_max": at_max[m] for m in baselines})
        won = imp_c["mean"][last] >= max(at_max.values(), default=float("-inf"))  # the table's bold: ties too
        wins += won
        if not won:
            behind.append((titles or {}).get(name, name))
        records = run.records("imp")
        n_layers, total = len(records[0]["layer_density"]), records[0]["conv_nonzero"]
        for r in records:
            max_error = max(max_error, abs(r["conv_nonzero"] - round(total * (1 - rate) ** r["round"])))
    out.update(imp_wins=wins, n_tasks=len(runs), max_sparsity_error=max_error, n_convs=n_layers,
               imp_behind_text=", ".join(behind) or "none", n_methods=1 + len(baselines))
    for m in ["imp"] + list(baselines):
        out[f"{m}_mean_max"] = mean_std(run.curve(m)["mean"][-1] for run in runs.values())[0]
    out["imp_es_mean_max"] = mean_std(run.curve("imp", "es_psnr")["mean"][-1] for run in runs.values())[0]
    out["imp_final_mean_max"] = mean_std(run.curve("imp", "final_psnr")["mean"][-1] for run in runs.values())[0]
    return out


def imp_table(runs: dict, titles: dict[str, str], baselines: Sequence[str]) -> str:
    """Chapter 2's summary table (Markdown): per task (headed ``titles[name]``) the dense net, and at
    the sparsest round the sparsity, parameters, IMP, each baseline and IMP's ES-WMV and last PSNR;
    the highest best PSNR of IMP and the baselines in bold."""
    lines = ["| task | dense | sparsity | params | IMP | " + " | ".join(BASELINE_NAMES[m] for m in baselines)
             + " | IMP, ES-WMV | IMP, last |", "|---|---|---|---|---|" + "---|" * len(baselines) + "---|---|"]
    for name, run in runs.items():
        imp_c, es_c, final_c = (run.curve("imp", key) for key in ("best_psnr", "es_psnr", "final_psnr"))
        last = len(imp_c["round"]) - 1
        at_max = [run.curve(m) for m in baselines]  # each curve reads the run's records once
        pruned = [(imp_c["mean"][last], imp_c["std"][last])] + [(c["mean"][-1], c["std"][-1]) for c in at_max]
        means = [m for m, _ in pruned]
        cells = [f"{mean} ± {s:.2f}" for mean, (_, s) in zip(bold_highest(means, [f"{m:.2f}" for m in means]), pruned)]
        lines.append(
            f"| {titles[name]} | {imp_c['mean'][0]:.2f} | {100 * imp_c['sparsity'][last]:.2f} % | "
            f"{int(imp_c['unpruned_params'][last]):,} | " + " | ".join(cells)
            + f" | {es_c['mean'][last]:.2f} ± {es_c['std'][last]:.2f} "
            f"| {final_c['mean'][last]:.2f} ± {final_c['std'][last]:.2f} |")
    return "\n".join(lines)
