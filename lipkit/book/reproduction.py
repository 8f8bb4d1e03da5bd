"""The reproduction page's rows: each published number beside this build's oracle, ES-WMV and last
PSNR for the same target (book/reproduction.ipynb).

A row is a dict: ``key`` (the glue prefix), ``target``, ``source``, ``published`` (dB, or None),
``setting`` (what this build ran), ``paper_scale`` (the oracle PSNR of a current paper-profile record,
or None) and ``best_psnr``, ``es_psnr``, ``final_psnr`` (means over seeds, dB).

>>> r = row("x", "baby, dense", "LIP Fig. 2", 31.0, dict(best_psnr=[30.0, 31.0], es_psnr=[29.0, 29.0],
...         final_psnr=[28.0, 28.0]), "dense")
>>> numbers([r])["x_diff"], numbers([r])["mean_diff"]
(-0.5, -0.5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lipkit.summaries import mean_std

RULES = ("best_psnr", "es_psnr", "final_psnr")  # oracle, ES-WMV, last


def row(key: str, target: str, source: str, published: float | None, values: dict, setting: str, *,
        results: Path | None = None) -> dict:
    """One row from ``values`` (rule -> one PSNR per seed); with ``results`` (the results folder),
    the paper-scale oracle PSNR recorded there under ``<key>_best``."""
    from lipkit.book.results import current_value

    paper_scale = None if results is None else current_value(results, "reproduction", f"{key}_best")
    return dict(key=key, target=target, source=source, published=published, setting=setting, paper_scale=paper_scale,
                **{rule: mean_std(values[rule])[0] for rule in RULES})


def by_rule(run, round_: int) -> dict:
    """Rule -> the PSNRs of every seed of ``run`` (a :class:`lipkit.lottery.imp.ImpRun`) at ``round_``."""
    return {rule: [r[rule] for r in run.records("imp") if r["round"] == round_] for rule in RULES}


def mean_at(run, round_: int, rule: str = "best_psnr") -> float:
    """Mean over seeds of ``rule``'s PSNR (dB) of ``run`` at ``round_``."""
    return mean_std(by_rule(run, round_)[rule])[0]


def fig2_rows(run, name: str, ref: dict, *, prefix: str = "fig2", dense: bool = True, note: str = "",
              setting_note: str = "", results: Path | None = None) -> list[dict]:
    """Rows of Fig. 2's task ``name`` (``ref``: :data:`lipkit.paper.FIG2`'s entry) from ``run``: the dense
    net (round 0) if ``dense``, then each published ticket against the round whose density is
    closest to it (:meth:`lipkit.lottery.imp.ImpRun.round_for_density`). Keys are ``<prefix>_<name>_<sparsity>``;
    ``note`` and ``setting_note`` end the target and setting texts."""
    curve = run.curve("imp")
    rows = [row(f"{prefix}_{name}_dense", f"{ref['image']}, dense{note}", "LIP Fig. 2", ref["dense"],
                by_rule(run, 0), f"dense{setting_note}", results=results)] if dense else []
    for sparsity, published in ref["tickets"]:
        k = run.round_for_density(1 - sparsity / 100)
        kept = 100 * curve["sparsity"][curve["round"].index(k)]
        key = f"{prefix}_{name}_{str(sparsity).replace('.', '_')}"
        rows.append(row(key, f"{ref['image']}, {sparsity:g} % ticket{note}", "LIP Fig. 2", published, by_rule(run, k),
                        f"{kept:.1f} % ticket{setting_note}", results=results))
    return rows


def numbers(rows: Sequence[dict]) -> dict:
    """What the page glues: per row ``<key>_best``, ``_es``, ``_final`` and, where a number is
    published, ``_published`` and ``_diff`` (oracle minus published); over the rows ``n_rows``,
    ``n_published`` (each counting the MOM row the table adds), ``n_paper_scale`` and ``mean_diff``."""
    out: dict = {}
    for r in rows:
        out.update({f"{r['key']}_{rule[:-5]}": r[rule] for rule in RULES})
        if r["published"] is not None:
            out.update({f"{r['key']}_published": r["published"], f"{r['key']}_diff": r["best_psnr"] - r["published"]})
    comparable = [r for r in rows if r["published"] is not None]
    out.update(n_published=len(comparable) + 1, n_rows=len(rows) + 1,
               n_paper_scale=sum(r["paper_scale"] is not None for r in rows),
               mean_diff=mean_std(r["best_psnr"] - r["published"] for r in comparable)[0])
    return out


def table(rows: Sequence[dict], mom_paper_scale: float | None) -> str:
    """The page's table (Markdown): every row, then the dense MOM row (:data:`lipkit.paper.MOM_DENSE`),
    whose paper-scale value is chapter 6's recorded ``pgan_dense_mse`` (``mom_paper_scale``, or None)."""
    from lipkit.paper import MOM_DENSE

    def fmt(v):
        return "—" if v is None else f"{v:.2f}"

    lines = ["| target | source | published | this build: setting | oracle / ES-WMV / last | Δ oracle "
             "| paper scale (oracle) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = None if r["published"] is None else r["best_psnr"] - r["published"]
        lines.append(f"| {r['target']} | {r['source']} | {fmt(r['published'])} | {r['setting']} | "
                     f"{r['best_psnr']:.2f} / {r['es_psnr']:.2f} / {r['final_psnr']:.2f} | "
                     f"{'—' if diff is None else f'{diff:+.2f}'} | "
                     f"{fmt(r['paper_scale']) if r['paper_scale'] is not None else 'not yet run at paper scale'} |")
    paper_scale = "not yet run at paper scale" if mom_paper_scale is None else f"{mom_paper_scale:.4f}"
    lines.append(f"| dense MOM, per-pixel MSE | LIP authors' notebook ({MOM_DENSE['setting']}) | "
                 f"{MOM_DENSE['at_1500']} (min {MOM_DENSE['minimum']}) | needs the PGAN checkpoint (chapter 6, paper "
                 f"tier) | — | — | {paper_scale} |")
    return "\n".join(lines)
