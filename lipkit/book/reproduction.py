"""The reproduction page's rows: each published number beside this build's oracle, ES-WMV and last
PSNR for the same target (book/reproduction.ipynb).

A row is a dict: ``key`` (the glue prefix), ``target``, ``source``, ``published`` (dB, or None),
``setting`` (what this build ran), ``paper_scale`` (the oracle PSNR of a current paper-profile record,
or None) and ``best_psnr``, ``es_psnr``, ``final_psnr`` (means over seeds, dB).

>>> r = row("x", "baby, dense", "LIP Fig. 2", 31.0, dict(best_psnr=[30.0, 31.0], es_psnr=[29.0, 29.0],
...         final_psnr=[28.0, 28.0]), "dense")
>>> numbers([r])["x_diff"], numbers([r])["mean_diff"]
(-0.5, -0.5)
>>> numbers([r])["paper_scale_text"]
'no published number has a paper-scale value yet'
>>> z = row("z", "zebra, dense", "LIP Fig. 2", 25.59, dict(best_psnr=[24.7], es_psnr=[24.2], final_psnr=[24.2]),
...         "dense", ledger_value=25.47)
>>> z["paper_scale"], numbers([r, z])["n_paper_scale"], numbers([r, z])["paper_scale_text"]
(25.47, 1, 'the one paper-scale value is -0.12 dB from its published number')
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lipkit.summaries import mean_std

RULES = ("best_psnr", "es_psnr", "final_psnr")  # oracle, ES-WMV, last


def row(key: str, target: str, source: str, published: float | None, values: dict, setting: str, *,
        results: Path | None = None, ledger_value: float | None = None) -> dict:
    """One row from ``values`` (rule -> one PSNR per seed); its paper-scale oracle PSNR is the one
    recorded in ``results`` (the results folder) under ``<key>_best``, else ``ledger_value`` (the
    same number from the GPU windows' ledger, :func:`lipkit.runs.paper_plan.fig2_rows`), else None."""
    from lipkit.book.results import current_value

    paper_scale = None if results is None else current_value(results, "reproduction", f"{key}_best")
    paper_scale = ledger_value if paper_scale is None else paper_scale
    return dict(key=key, target=target, source=source, published=published, setting=setting, paper_scale=paper_scale,
                **{rule: mean_std(values[rule])[0] for rule in RULES})


def by_rule(run, round_: int) -> dict:
    """Rule -> the PSNRs of every seed of ``run`` (a :class:`lipkit.lottery.imp.ImpRun`) at ``round_``."""
    return {rule: [r[rule] for r in run.records("imp") if r["round"] == round_] for rule in RULES}


def mean_at(run, round_: int, rule: str = "best_psnr") -> float:
    """Mean over seeds of ``rule``'s PSNR (dB) of ``run`` at ``round_``."""
    return mean_std(by_rule(run, round_)[rule])[0]


def fig2_rows(run, name: str, ref: dict, *, prefix: str = "fig2", dense: bool = True, note: str = "",
              setting_note: str = "", results: Path | None = None, ledger: Sequence[dict] = ()) -> list[dict]:
    """Rows of Fig. 2's task ``name`` (``ref``: :data:`lipkit.paper.FIG2`'s entry) from ``run``: the dense
    net (round 0) if ``dense``, then each published ticket against the round whose density is
    closest to it (:meth:`lipkit.lottery.imp.ImpRun.round_for_density`). Keys are ``<prefix>_<name>_<sparsity>``;
    ``note`` and ``setting_note`` end the target and setting texts. ``ledger``: the ledger's rows of
    the same task and search (:func:`lipkit.runs.paper_plan.fig2_rows`), whose oracle PSNRs are the
    paper-scale values where ``results`` has none."""
    mine = [r for r in ledger if r["task"] == name]
    at_scale = {r["sparsity"]: r["best_psnr"] for r in mine}
    if len(at_scale) < len(mine):
        raise ValueError(f"the ledger rows hold {name!r} more than once; give the rows of one search "
                         "(filter paper_plan.fig2_rows by search_on)")

    curve = run.curve("imp")
    rows = [row(f"{prefix}_{name}_dense", f"{ref['image']}, dense{note}", "LIP Fig. 2", ref["dense"],
                by_rule(run, 0), f"dense{setting_note}", results=results, ledger_value=at_scale.get(None))
            ] if dense else []
    for sparsity, published in ref["tickets"]:
        k = run.round_for_density(1 - sparsity / 100)
        kept = 100 * curve["sparsity"][curve["round"].index(k)]
        key = f"{prefix}_{name}_{str(sparsity).replace('.', '_')}"
        rows.append(row(key, f"{ref['image']}, {sparsity:g} % ticket{note}", "LIP Fig. 2", published, by_rule(run, k),
                        f"{kept:.1f} % ticket{setting_note}", results=results, ledger_value=at_scale.get(sparsity)))
    return rows


def numbers(rows: Sequence[dict]) -> dict:
    """What the page glues: per row ``<key>_best``, ``_es``, ``_final`` and, where a number is
    published, ``_published`` and ``_diff`` (oracle minus published); over the rows ``n_rows``,
    ``n_published`` (each counting the MOM row the table adds), ``n_paper_scale``, ``mean_diff`` and
    ``paper_scale_text`` (the paper-scale values against the published ones, in words)."""
    out: dict = {}
    for r in rows:
        out.update({f"{r['key']}_{rule[:-5]}": r[rule] for rule in RULES})
        if r["published"] is not None:
            out.update({f"{r['key']}_published": r["published"], f"{r['key']}_diff": r["best_psnr"] - r["published"]})
    comparable = [r for r in rows if r["published"] is not None]
    at_scale = [r["paper_scale"] - r["published"] for r in comparable if r["paper_scale"] is not None]
    out.update(n_published=len(comparable) + 1, n_rows=len(rows) + 1,
               n_paper_scale=sum(r["paper_scale"] is not None for r in rows),
               mean_diff=mean_std(r["best_psnr"] - r["published"] for r in comparable)[0],
               paper_scale_text=_at_scale_text(at_scale))
    return out


def _at_scale_text(diffs: Sequence[float]) -> str:
    if not diffs:
        return "no published number has a paper-scale value yet"
    if len(diffs) == 1:
        return f"the one paper-scale value is {diffs[0]:+.2f} dB from its published number"
    return (f"at paper scale the oracle is {mean_std(diffs)[0]:+.2f} dB from the published number on average over "
            f"the {len(diffs)} that have one ({min(diffs):+.2f} to {max(diffs):+.2f} dB)")


def table(rows: Sequence[dict], mom_paper_scale: float | None) -> str:
    """The page's table (Markdown): every row, then the dense MOM row (:data:`lipkit.paper.MOM_DENSE`),
    whose paper-scale value is chapter 6's recorded ``pgan_dense_mse`` (``mom_paper_scale``, or None)."""
    from lipkit.paper import MOM_DENSE

    def fmt(v):
        return "—" if v is None else f"{v:.2f}"

    def delta(v, published):
        return "—" if v is None or published is None else f"{v - published:+.2f}"

    lines = ["| target | source | published | this build: setting | oracle / ES-WMV / last | Δ oracle "
             "| paper scale (oracle) | Δ paper scale |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['source']} | {fmt(r['published'])} | {r['setting']} | "
                     f"{r['best_psnr']:.2f} / {r['es_psnr']:.2f} / {r['final_psnr']:.2f} | "
                     f"{delta(r['best_psnr'], r['published'])} | "
                     f"{fmt(r['paper_scale']) if r['paper_scale'] is not None else 'not yet run at paper scale'} | "
                     f"{delta(r['paper_scale'], r['published'])} |")
    paper_scale = "not yet run at paper scale" if mom_paper_scale is None else f"{mom_paper_scale:.4f}"
    lines.append(f"| dense MOM, per-pixel MSE | LIP authors' notebook ({MOM_DENSE['setting']}) | "
                 f"{MOM_DENSE['at_1500']} (min {MOM_DENSE['minimum']}) | needs the PGAN checkpoint (chapter 6, paper "
                 f"tier) | — | — | {paper_scale} | — |")
    return "\n".join(lines)
