"""Records summarised over seeds: mean and std, per-level curves and grouped table rows.

Every table and curve of the book averages its seeds here, so that all of them agree on what the
"± std" is: the population standard deviation (``ddof=0``) of the per-seed values.

>>> mean_std([30.0, 32.0])
(31.0, 1.0)
>>> recs = [dict(round=0, conv_sparsity=0.0, unpruned_params=10, best_psnr=30.0),
...         dict(round=0, conv_sparsity=0.0, unpruned_params=10, best_psnr=32.0),
...         dict(round=1, conv_sparsity=0.2, unpruned_params=8, best_psnr=31.0)]
>>> level_curve(recs, level_of=lambda r: r["round"])
{'round': [0, 1], 'sparsity': [0.0, 0.2], 'unpruned_params': [10.0, 8.0], 'mean': [31.0, 31.0], 'std': [1.0, 0.0], 'n': [2, 1]}
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and population std (``ddof=0``) of ``values``, as Python floats."""
    v = np.array(list(values), dtype=float)
    return float(v.mean()), float(v.std())


def group_stats(records: Sequence[dict], keys: Sequence[str]) -> dict:
    """``{key: mean, key_std: std}`` over ``records`` for each of ``keys``."""
    out = {}
    for key in keys:
        out[key], out[f"{key}_std"] = mean_std(r[key] for r in records)
    return out


def level_curve(records: Iterable[dict], level_of: Callable[[dict], int], key: str = "best_psnr") -> dict:
    """Per level (``level_of(record)``, increasing): the mean measured sparsity and unpruned
    parameters, and the mean, std and count of ``key``; the layout every lipkit curve shares
    (:meth:`lipkit.lottery.imp.ImpRun.curve`, :func:`lipkit.studies.transfer.curve`,
    :func:`lipkit.runs.paper_plan.ledger_curve`) and :func:`lipkit.plots` draws."""
    by_level: dict[int, list[dict]] = {}
    for r in records:
        by_level.setdefault(int(level_of(r)), []).append(r)
    levels = sorted(by_level)
    stats = [mean_std(r[key] for r in by_level[k]) for k in levels]
    return dict(round=levels,
                sparsity=[mean_std(r["conv_sparsity"] for r in by_level[k])[0] for k in levels],
                unpruned_params=[mean_std(r["unpruned_params"] for r in by_level[k])[0] for k in levels],
                mean=[m for m, _ in stats], std=[s for _, s in stats], n=[len(by_level[k]) for k in levels])
