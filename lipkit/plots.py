"""Matplotlib figures used by the book, each function returning the Figure it drew.

Every PSNR axis says which stopping rule picked the iteration (:data:`STOPPING_RULES`): the best
iteration (the papers' oracle, which needs the clean image), ES-WMV's pick (no clean image) or
the last iteration.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


STOPPING_RULES = {
    "best_psnr": "best iteration (oracle)",
    "es_psnr": "ES-WMV stop (no clean image)",
    "final_psnr": "last iteration",
}


def _axes(ax, figsize: tuple[float, float]):
    """``(figure, axes, own)``: the given axes and their figure, or a new figure of ``figsize`` (own)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax, True
    return ax.figure, ax, False


def _done(fig, own: bool):
    if own:  # a figure drawn into someone else's axes is laid out by its owner
        fig.tight_layout()
    return fig


def psnr_label(key: str = "best_psnr", metric: str = "rgb") -> str:
    """Axis label naming the stopping rule of ``key`` and the metric ("rgb" or "y")."""
    if key not in STOPPING_RULES:
        raise KeyError(f"unknown PSNR key {key!r}; choose from {sorted(STOPPING_RULES)}")
    return f"PSNR{', Y channel' if metric == 'y' else ''} at the {STOPPING_RULES[key]} (dB)"


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> (H, W, C) or (H, W) array for ``imshow``."""
    arr = x.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[2] == 1 else arr


def show_images(images: Sequence[torch.Tensor], titles: Sequence[str] | None = None,
                ncols: int | None = None, size: float = 2.6, suptitle: str | None = None):
    """Images side by side (C,H,W tensors; different sizes are fine), one title each."""
    n = len(images)
    ncols = ncols or n
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            img = to_numpy_image(images[k])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[k], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_psnr_curves(result, *, baseline_psnr: float | None = None, baseline_label: str = "observation",
                     title: str | None = None, ax=None):
    """PSNR against iteration for one :class:`lipkit.fitting.loop.FitResult`.

    Draws the raw output and, when the fit used one, its moving average; marks the three
    stopping rules (best iteration, ES-WMV's pick, last iteration), draws ``baseline_psnr`` (e.g.
    of the noisy input) as a dashed line and ES-WMV's windowed variance on a second axis.
    """
    if result.psnr_history is None:
        raise ValueError("the fit had no reference image, so there is no PSNR history to plot")
    fig, ax, own = _axes(ax, (6.4, 3.6))
    it = np.arange(1, len(result.psnr_history) + 1)
    ax.plot(it, result.psnr_history, lw=0.8, alpha=0.6, label="output")
    if result.psnr_avg_history is not None:
        ax.plot(it, result.psnr_avg_history, lw=1.4, label="moving average of output")
    if result.best_iteration is not None:
        ax.axvline(result.best_iteration + 1, color="k", lw=0.8, ls=":")
        ax.plot([result.best_iteration + 1], [result.best_psnr], "k*", ms=9,
                label=f"best (oracle): {result.best_psnr:.2f} dB at it. {result.best_iteration + 1}")
    if result.es_iteration is not None and result.es_psnr is not None:
        ax.plot([result.es_iteration + 1], [result.es_psnr], "v", color="C3", ms=8,
                label=f"ES-WMV stop: {result.es_psnr:.2f} dB at it. {result.es_iteration + 1}")
    if result.final_psnr is not None:
        ax.plot([len(it)], [result.final_psnr], "s", color="C2", ms=6,
                label=f"last: {result.final_psnr:.2f} dB at it. {len(it)}")
    if baseline_psnr is not None:
        ax.axhline(baseline_psnr, color="gray", ls="--", lw=1, label=f"{baseline_label}: {baseline_psnr:.2f} dB")
    curves = [result.psnr_history] + ([result.psnr_avg_history] if result.psnr_avg_history is not None else [])
    finite = np.concatenate([c[np.isfinite(c)] for c in curves])
    if finite.size:
        # start below the noisy baseline and the bulk of the curves; the first iterations are off-scale
        lo = min(np.percentile(finite, 5), baseline_psnr if baseline_psnr is not None else np.inf) - 1
        ax.set_ylim(lo, np.max(finite) + 1.0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("PSNR vs clean image (dB)")
    variance = result.variance_history
    if variance is not None and np.isfinite(variance).any():
        var_ax = ax.twinx()
        var_ax.plot(it[: len(variance)], variance, color="C7", lw=0.8, alpha=0.7)
        var_ax.set_yscale("log")
        var_ax.set_ylabel("ES-WMV windowed variance", color="C7", fontsize=8)
        var_ax.tick_params(axis="y", labelcolor="C7", labelsize=7)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return _done(fig, own)


METHOD_STYLE = {
    "imp": dict(label="IMP ticket (LIP)", color="C0", marker="o"),
    "random_global": dict(label="random pruning (global, same rate)", color="C3", marker="s"),
    "random_layerwise": dict(label="random, ticket's layer densities", color="C2", marker="^"),
    "oneshot": dict(label="one-shot magnitude", color="C4", marker="v"),
}


def _sparsity_band(ax, c: dict, idx, label: str, color, marker, *, band_alpha: float = 0.2, **line) -> None:
    """Mean line and ± std band of curve ``c`` at the entries ``idx``, against sparsity in %."""
    x = np.array([c["sparsity"][i] for i in idx]) * 100
    mean = np.array([c["mean"][i] for i in idx])
    std = np.array([c["std"][i] for i in idx])
    ax.plot(x, mean, marker=marker, color=color, label=label, **{"lw": 1.5, "ms": 4, **line})
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=band_alpha, lw=0)


def _sparsity_axes(ax, title: str | None, ylabel: str) -> None:
    ax.set_xlabel("measured sparsity of the conv weights (%)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")


def plot_sparsity_curves(run, methods=("imp", "random_global", "random_layerwise"), *, key: str = "best_psnr",
                         title: str | None = None, ylabel: str | None = None, ax=None):
    """PSNR against measured sparsity for an :class:`lipkit.lottery.imp.ImpRun`: mean ± std band over seeds.

    ``key`` is the stopping rule (:data:`STOPPING_RULES`); ``ylabel`` defaults to one naming it.
    The dense DIP (round 0) is drawn as a horizontal band; the top axis gives the unpruned
    parameter count of the IMP tickets.
    """
    ylabel = ylabel or psnr_label(key, run.config["task"].get("metric", "rgb"))
    fig, ax, own = _axes(ax, (6.4, 3.8))
    imp_curve = run.curve("imp", key)
    dense_mean, dense_std = imp_curve["mean"][0], imp_curve["std"][0]
    ax.axhspan(dense_mean - dense_std, dense_mean + dense_std, color="gray", alpha=0.25)
    ax.axhline(dense_mean, color="gray", lw=1, ls="--", label=f"dense DIP ({dense_mean:.2f} dB)")
    for m in methods:
        c = run.curve(m, key)
        rounds = [r for r in c["round"] if r > 0]
        if not rounds:
            continue
        idx = [c["round"].index(r) for r in rounds]
        style = METHOD_STYLE.get(m, dict(label=m))
        _sparsity_band(ax, c, idx, style["label"], style.get("color"), style.get("marker"))
    _sparsity_axes(ax, title, ylabel)
    # top axis: unpruned parameters of the IMP tickets at their sparsities
    top = ax.secondary_xaxis("top")
    ticks = [s * 100 for s in imp_curve["sparsity"]]
    top.set_xticks(ticks)
    top.set_xticklabels([_short_count(p) for p in imp_curve["unpruned_params"]], fontsize=7)
    top.set_xlabel("parameters (IMP ticket)", fontsize=8)
    return _done(fig, own)


def plot_stopping_rules(run, method: str = "imp", *, title: str | None = None, ax=None):
    """One method of an :class:`lipkit.lottery.imp.ImpRun` under the three stopping rules, against sparsity:
    what the oracle reports, what ES-WMV gets without the clean image, and the last iteration."""
    fig, ax, own = _axes(ax, (6.4, 3.8))
    # where two rules pick the same iteration their lines coincide: the oracle is drawn wide and
    # underneath, the others thin and dashed on top, so that every line stays visible
    styles = [dict(lw=3.5, alpha=0.6, zorder=1), dict(lw=1.5, ls="--", zorder=2), dict(lw=1.2, ls=":", zorder=3)]
    for i, (key, rule) in enumerate(STOPPING_RULES.items()):
        c = run.curve(method, key)
        _sparsity_band(ax, c, range(len(c["round"])), rule, f"C{i}", "o^s"[i], band_alpha=0.1, **styles[i])
    y_channel = run.config["task"].get("metric") == "y"
    _sparsity_axes(ax, title, f"PSNR{', Y channel' if y_channel else ''} by stopping rule (dB)")
    return _done(fig, own)


def plot_curves(curves: dict, *, dense: tuple[float, float] | None = None, title: str | None = None,
                ylabel: str = "PSNR at the best iteration (oracle) (dB)", dense_label: str = "dense DIP",
                unit: str = "dB", ax=None):
    """A measure (PSNR, accuracy) against measured sparsity for several curves: ``{label: curve}``,
    mean ± std band.

    A curve is the dict of :meth:`lipkit.lottery.imp.ImpRun.curve` or :func:`lipkit.studies.transfer.curve`
    (rounds with sparsity 0 are skipped); ``dense`` = (mean, std) is drawn as a grey band labelled
    ``dense_label`` and the mean in ``unit``.
    """
    fig, ax, own = _axes(ax, (6.4, 3.8))
    if dense is not None:
        ax.axhspan(dense[0] - dense[1], dense[0] + dense[1], color="gray", alpha=0.25)
        ax.axhline(dense[0], color="gray", lw=1, ls="--", label=f"{dense_label} ({dense[0]:.2f} {unit})")
    markers = "os^vDP*"
    for i, (label, c) in enumerate(curves.items()):
        keep = [j for j, s in enumerate(c["sparsity"]) if s > 0]
        if not keep:
            continue
        _sparsity_band(ax, c, keep, label, f"C{i}", markers[i % len(markers)])
    _sparsity_axes(ax, title, ylabel)
    return _done(fig, own)


def plot_psnr_vs_parameters(series: dict, *, dense: tuple[float, float, float] | None = None,
                            title: str | None = None, ylabel: str = "PSNR at the best iteration (oracle) (dB)",
                            ax=None):
    """PSNR against parameter count on a log axis: ``{label: (params, mean, std)}`` (arrays).

    ``dense`` = (params, mean, std) marks the dense DIP as a star with an error bar.
    """
    fig, ax, own = _axes(ax, (6.4, 3.8))
    markers = "os^vDP*"
    for i, (label, (params, mean, std)) in enumerate(series.items()):
        order = np.argsort(params)
        x, m, s = (np.asarray(v, dtype=float)[order] for v in (params, mean, std))
        ax.plot(x, m, marker=markers[i % len(markers)], color=f"C{i}", label=label, lw=1.5, ms=4)
        ax.fill_between(x, m - s, m + s, color=f"C{i}", alpha=0.2, lw=0)
    if dense is not None:
        ax.errorbar([dense[0]], [dense[1]], yerr=[dense[2]], fmt="k*", ms=10, label=f"dense DIP ({dense[1]:.2f} dB)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters left (nonzero conv weights + biases + norms)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return _done(fig, own)


def plot_time_vs_psnr(rows: Sequence[dict], *, title: str | None = None, ylabel: str = "PSNR (dB)", ax=None):
    """PSNR against measured seconds per fit, one marker per contender (rows of
    :func:`lipkit.studies.fast_tickets.summarize` for one task): filled at the best iteration, hollow at
    the last, error bars one std over seeds; the dashed line joins the Pareto front of the best
    PSNRs (no contender is both faster and better)."""
    from lipkit.studies.fast_tickets import pareto_front

    fig, ax, own = _axes(ax, (6.4, 3.8))
    markers = "*osD^vP"
    for i, r in enumerate(rows):
        color = f"C{i}"
        ax.errorbar([r["seconds"]], [r["best_psnr"]], xerr=[r["seconds_std"]], yerr=[r["best_psnr_std"]],
                    fmt=markers[i % len(markers)], color=color, ms=9 if i == 0 else 6, label=r["label"])
        ax.errorbar([r["seconds"]], [r["final_psnr"]], yerr=[r["final_psnr_std"]], fmt=markers[i % len(markers)],
                    color=color, mfc="none", ms=9 if i == 0 else 6)
        ax.plot([r["seconds"]] * 2, [r["final_psnr"], r["best_psnr"]], color=color, lw=0.8, alpha=0.5)
    front = pareto_front([(r["seconds"], r["best_psnr"]) for r in rows])
    ax.plot([rows[i]["seconds"] for i in front], [rows[i]["best_psnr"] for i in front], "k--", lw=1, alpha=0.6,
            label="Pareto front (best PSNR)")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per fit (measured, whole fit)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    return _done(fig, own)


def plot_psnr_against_iteration(rows: Sequence[dict], *, title: str | None = None,
                                ylabel: str = "PSNR vs clean image (dB)", ax=None):
    """PSNR against iteration of several fits: ``rows`` with ``label``, ``psnr_curve`` (pairs of
    0-based iteration and dB, :meth:`lipkit.fitting.loop.FitResult.psnr_curve`), ``best_iteration`` and
    ``es_iteration``. One line per fit; a star at its best iteration, a triangle at ES-WMV's
    pick, so that a curve that falls after its peak shows how far."""
    fig, ax, own = _axes(ax, (7.2, 4.0))
    lows = []
    for i, r in enumerate(rows):
        curve = dict((int(it), db) for it, db in r["psnr_curve"])
        its = sorted(curve)
        color = f"C{i % 10}"
        ax.plot([it + 1 for it in its], [curve[it] for it in its], color=color, lw=1.3, label=r["label"])
        for key, marker in (("best_iteration", "*"), ("es_iteration", "v")):
            if r.get(key) is not None and r[key] in curve:
                ax.plot([r[key] + 1], [curve[r[key]]], marker, color=color, ms=8 if marker == "*" else 6)
        lows.append(np.percentile([curve[it] for it in its], 10))
    ax.plot([], [], "k*", ms=8, label="best iteration (oracle)")
    ax.plot([], [], "kv", ms=6, label="ES-WMV stop")
    if lows:  # the first iterations are far below the rest: start near the bulk of the curves
        ax.set_ylim(bottom=min(lows) - 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: curves fill the axes
    return _done(fig, own)


def plot_heatmap(values, rows: Sequence[str], cols: Sequence[str], *, title: str | None = None,
                 label: str = "dB", fmt: str = "{:+.2f}", ax=None):
    """A rows × cols matrix as a diverging heat map centred on 0, with the value in each cell."""
    values = np.asarray(values, dtype=float)
    fig, ax, own = _axes(ax, (1.0 + 0.9 * len(cols), 0.9 + 0.55 * len(rows)))
    lim = float(np.nanmax(np.abs(values))) or 1.0
    im = ax.imshow(values, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label=label, fraction=0.04)
    if title:
        ax.set_title(title, fontsize=10)
    return _done(fig, own)


def _short_count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else f"{n:.0f}"


def plot_layer_density(densities: dict, *, title: str | None = None, ax=None):
    """Kept fraction per conv layer (in network order) for one or more tickets: {label: [density, ...]}."""
    fig, ax, own = _axes(ax, (6.4, 3.0))
    for label, dens in densities.items():
        ax.plot(np.arange(1, len(dens) + 1), np.array(dens) * 100, marker=".", lw=1, label=label)
    ax.set_xlabel("conv layer (network order: encoder, skips, decoder, output)")
    ax.set_ylabel("weights kept (%)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _done(fig, own)


def figure_png(fig, dpi: int = 80) -> bytes:
    """A Matplotlib figure as PNG bytes (for widgets); closes the figure."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
