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
"""

from __future__ import annotations

from typing import Iterable, Sequence

from lipkit.summaries import mean_std

STOPPING_RULES = {"best": "best_psnr", "es": "es_psnr", "final": "final_psnr"}  # rule -> record field (dB)


def mean_std_text(row: dict, key: str) -> str:
    """``"mean ± std"`` (dB, to 0.01) of a table row's ``key`` and ``key + "_std"``."""
    return f"{row[key]:.2f} ± {row[key + '_std']:.2f}"


def spread_verdict(gap: float, spread: float, *, ahead: str, behind: str) -> str:
    """The words for a difference of means ``gap`` (``ahead`` minus ``behind``) against ``spread``,
    the larger of the two stds: a gap smaller than the spread is no difference at this seed count."""
    if abs(gap) < spread:
        return "within about a standard deviation of each other"
    return f"more than a standard deviation apart, the {ahead if gap > 0 else behind} ahead"


def ticket_against_deep_decoder(run, deep_decoders: Sequence[dict], level: int, width: int) -> dict:
    """Chapter 5's row for one problem: the IMP ticket of ``run`` (a :class:`lipkit.imp.ImpRun`)
    at round ``level`` against the deep decoder of ``width`` channels (``k``) among the records
    ``deep_decoders`` (:func:`lipkit.deep_decoder_runs.fit_deep_decoders`, one task).

    Returns, per stopping rule (``best``, ``es``, ``final``), ``lip_<rule>`` and ``dd_<rule>``
    with their ``_std`` (dB, over seeds); ``random_layerwise`` and ``random_global`` (best PSNR of
    the branch baselines at that round), ``dense`` (round 0), ``sparsity`` (mean measured, 0-1),
    ``seeds`` (how many of each), ``gap`` (ticket minus deep decoder, best PSNR) and ``verdict``
    (:func:`spread_verdict`).
    """
    def at(method: str, key: str, round_: int = level) -> list[float]:
        return [r[key] for r in run.records(method) if r["round"] == round_]

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
