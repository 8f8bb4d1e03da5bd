"""Chapter 8's tables and verdicts (book/08_lip_against_its_rivals.ipynb): LIP's IMP ticket against
masks chosen at initialization, the dense net and the deep decoder.

They are made from the rows of :func:`lipkit.studies.init_vs_imp.compare` and their summaries
(:func:`lipkit.studies.init_vs_imp.summarize`). The page shows and glues them; its test calls them on
the cached records (:mod:`lipkit.book.tables` holds the other chapters').
"""

from __future__ import annotations

from typing import Iterable, Sequence

from lipkit.book.tables import mean_std_text
from lipkit.summaries import mean_std

FALL_DB = 1.0  # a curve "falls" when its last PSNR is at least this far below its best (dB)


def level_densities(rows: Iterable[dict]) -> dict[int, float]:
    """Level -> mean measured density (0-1) of the IMP ticket's rows at that level: the matched densities."""
    imp = [r for r in rows if r["contender"] == "imp" and r["level"] is not None]
    return {k: mean_std(r["density"] for r in imp if r["level"] == k)[0] for k in sorted({r["level"] for r in imp})}


def _kept(row: dict, density_of: dict[int, float]) -> str:
    if row["contender"] == "dense":
        return "100 %"
    if row["level"] is None:
        return ""
    kept = f"{100 * density_of[row['level']]:.1f} %"
    return f"≈ {kept} (params)" if row["contender"] == "deep_decoder" else kept


def rivals_table(summary: Sequence[dict], density_of: dict[int, float]) -> str:
    """Chapter 8's main table (Markdown): per contender and level, the kept fraction, parameters, the
    three PSNRs (mean ± std, dB), the drop from best to last, emptied layers and the mask's cost."""
    lines = ["| kept | contender | parameters | best | ES | last | drop | empty | mask cost: passes | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        lines.append(f"| {_kept(r, density_of)} | {r['label']} | {r['parameters']:,.0f} "
                     f"| {mean_std_text(r, 'best_psnr')} | {mean_std_text(r, 'es_psnr')} "
                     f"| {mean_std_text(r, 'final_psnr')} | {r['drop']:.2f} | {r['empty_layers']:g} "
                     f"| {r['mask_passes']:,.0f} | {r['mask_seconds']:.1f} |")
    return "\n".join(lines)


def rivals_transfer_table(moved: Sequence[dict], source: str) -> str:
    """Chapter 8's transfer table (Markdown) from the summary of
    :func:`lipkit.studies.init_vs_imp.transfer_rows` by contender and origin; ``source`` names the image the
    transferred masks come from."""
    lines = ["| contender | mask from | best | ES | last |", "|---|---|---|---|---|"]
    for r in moved:
        origin = "—" if r["contender"] == "dense" else ("the target" if r["origin"] == "own" else source)
        lines.append(f"| {r['label']} | {origin} | {mean_std_text(r, 'best_psnr')} | {mean_std_text(r, 'es_psnr')} "
                     f"| {mean_std_text(r, 'final_psnr')} |")
    return "\n".join(lines)


def rivals_book_table(book: dict[str, Sequence[dict]], titles: dict[str, str]) -> str:
    """Chapter 8's table on the book's tasks (Markdown): best / last PSNR of every contender but the
    deep decoder, one column per task name of ``book`` (its summary), headed by ``titles[name]``."""
    from lipkit.studies.init_vs_imp import CONTENDERS, LABELS

    names = list(book)
    lines = ["| contender | " + " | ".join(titles[n] for n in names) + " |", "|---|" + "---|" * len(names)]
    for c in (c for c in CONTENDERS if c != "deep_decoder"):
        cells = [next(f"{r['best_psnr']:.2f} / {r['final_psnr']:.2f}" for r in book[n] if r["contender"] == c)
                 for n in names]
        lines.append(f"| {LABELS[c]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _at(summary: Sequence[dict], contender: str, level: int) -> dict:
    """``contender``'s summary row at ``level`` (the dense net's, which has no level, for "dense")."""
    want = None if contender == "dense" else level
    return next(r for r in summary if r["contender"] == contender and r["level"] == want)


def rivals_published_table(summary: Sequence[dict], density_of: dict[int, float], level: int) -> str:
    """Chapter 8's comparison with OES's published Set14 means (:data:`lipkit.paper.OES_SET14`), ours
    at ``level`` (Markdown)."""
    from lipkit.paper import OES_SET14

    lines = ["| published (Set14 mean, σ = 0.1) | net | kept | best / last | ours: kept | best / last |",
             "|---|---|---|---|---|---|"]
    for key, ref in OES_SET14.items():
        mine = _at(summary, {"oes_skip": "oes"}.get(key, key), level)
        kept = "—" if ref["density"] is None else f"{ref['density']:g} %"
        lines.append(f"| {ref['label']} | {ref['net']} | {kept} | {ref['best']:.2f} / {ref['final']:.2f} "
                     f"| {_kept(dict(mine, level=level), density_of)} "
                     f"| {mine['best_psnr']:.2f} / {mine['final_psnr']:.2f} |")
    return "\n".join(lines)


def rival_numbers(summary: Sequence[dict], density_of: dict[int, float], *, curves: Sequence[dict],
                  moved: Sequence[dict], book: dict[str, Sequence[dict]], titles: dict[str, str]) -> dict:
    """Chapter 8's verdicts at its sparsest matched level: ``summary`` of the Set14 rows,
    ``curves`` the rows whose curves the page plots (one image and seed), ``moved`` the transfer
    summary (by contender and origin), ``book`` the summary per book task (titles in ``titles``).

    Returns PSNRs in dB (``imp_best``, ``oes_final``, ``dense_drop``, ...), the same differences in
    OES's published table (``published_...``) and whether ours rank OES and IMP as it does, the best
    contender at the last iteration and at its peak, the mask strategies above random (best PSNR), the curves that
    fall by :data:`FALL_DB` or more, the masks that emptied a layer, the search costs of OES and
    IMP, the transfer losses (moved minus own, last PSNR) and the best sparse contender per task.
    """
    from lipkit.paper import OES_SET14
    from lipkit.studies.init_vs_imp import LABELS

    sparsest = max(density_of)
    imp, oes, dense, random = (_at(summary, c, sparsest) for c in ("imp", "oes", "dense", "random"))
    at_sparsest = [r for r in summary if r["level"] == sparsest]
    best_final = max(at_sparsest, key=lambda r: r["final_psnr"])
    best_peak = max(at_sparsest, key=lambda r: r["best_psnr"])
    beat_random = [r["label"] for r in at_sparsest if r["contender"] in ("imp", "oes", "snip", "grasp", "synflow")
                   and r["best_psnr"] > random["best_psnr"]]
    falls = [r for r in curves if r["best_psnr"] - r["final_psnr"] >= FALL_DB]
    collapsed = [r for r in summary if r["empty_layers"] > 0]
    by_origin = {(r["contender"], r["origin"]): r for r in moved}
    best_book = {n: max((r for r in rows if r["contender"] != "dense"), key=lambda r: r["best_psnr"])["label"]
                 for n, rows in book.items()}
    published_final = OES_SET14["oes"]["final"] - OES_SET14["imp"]["final"]  # on OES's hourglass (dB)
    return dict(
        imp_best=imp["best_psnr"], imp_final=imp["final_psnr"], oes_best=oes["best_psnr"],
        oes_final=oes["final_psnr"], dense_best=dense["best_psnr"], dense_final=dense["final_psnr"],
        dense_drop=dense["drop"], imp_drop=imp["drop"], oes_drop=oes["drop"],
        oes_minus_imp_final=oes["final_psnr"] - imp["final_psnr"],
        oes_minus_imp_best=oes["best_psnr"] - imp["best_psnr"],
        oes_vs_imp_final="above" if oes["final_psnr"] > imp["final_psnr"] else "below",
        published_oes_minus_imp_final=published_final,
        published_oes_minus_imp_best=OES_SET14["oes"]["best"] - OES_SET14["imp"]["best"],
        published_dense_drop=OES_SET14["dense"]["best"] - OES_SET14["dense"]["final"],
        oes_order_vs_published=("level with IMP, unlike the published table" if oes["final_psnr"] == imp["final_psnr"]
                                else "the same order as the published table"
                                if (oes["final_psnr"] > imp["final_psnr"]) == (published_final > 0)
                                else "the reverse of the published order"),
        best_final_label=best_final["label"], best_final_psnr=best_final["final_psnr"],
        best_peak_label=best_peak["label"], best_peak_psnr=best_peak["best_psnr"],
        n_beat_random=len(beat_random), beat_random=", ".join(beat_random) or "none", random_best=random["best_psnr"],
        n_falling=len(falls), n_curves=len(curves),
        falling=", ".join(LABELS[r["contender"]] for r in falls) or "none",
        oes_seconds=oes["mask_seconds"], imp_seconds=imp["mask_seconds"], oes_passes=oes["mask_passes"],
        imp_passes=imp["mask_passes"],
        oes_moved_minus_own=by_origin["oes", "transferred"]["final_psnr"] - by_origin["oes", "own"]["final_psnr"],
        imp_moved_minus_own=by_origin["imp", "transferred"]["final_psnr"] - by_origin["imp", "own"]["final_psnr"],
        n_collapsed=len(collapsed), n_masks=sum(r["contender"] not in ("dense", "deep_decoder") for r in summary),
        collapsed=", ".join(f"{r['label']} at {100 * density_of[r['level']]:.1f} %" for r in collapsed) or "none",
        collapsed_best_max=max((r["best_psnr"] for r in collapsed), default=float("nan")),
        book_best=", ".join(f"{titles[n]}: {best_book[n]}" for n in book),
        book_density=100 * mean_std(r["density"] for rows in book.values() for r in rows if r["contender"] == "imp")[0],
    )


def plotted_curves(rows: Iterable[dict], image: str, level: int) -> list[dict]:
    """Chapter 8's curves: seed 0's rows on ``image`` at ``level`` and the dense net's, in
    :data:`lipkit.studies.init_vs_imp.CONTENDERS` order."""
    from lipkit.studies.init_vs_imp import CONTENDERS

    order = {c: i for i, c in enumerate(CONTENDERS)}
    chosen = [r for r in rows if r["image"] == image and r["seed"] == 0 and r["level"] in (None, level)]
    return sorted(chosen, key=lambda r: order[r["contender"]])
