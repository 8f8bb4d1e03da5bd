"""Chapter 6's tables and verdicts (book/06_gan_compressive_sensing.ipynb): generator tickets recovering
held-out images by MOM, from the run's records and the cached recoveries (:mod:`lipkit.gan.recoveries`).

The page shows and glues what these functions return; its test calls them on the stored records.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

CHAINS = {"magnitude": ("ticket", "IMP ticket"), "random": ("random", "random pruning")}  # glue prefix, row label


def dense_numbers(erm: Mapping, mom: Mapping, images: torch.Tensor) -> dict:
    """The dense generator's least-squares and MOM MSE, their ratio, and the MSE of guessing an empty
    image (all −1) for ``images`` ((N, C, H, W) in [−1, 1])."""
    return dict(erm_mse=erm["mean_mse"], mom_mse=mom["mean_mse"], mom_erm_ratio=mom["mean_mse"] / erm["mean_mse"],
                background_mse=float((images + 1).pow(2).mean()))


def level_numbers(run, recovered: Sequence[Mapping], dense_mom: Mapping, *, tol_factor: float = 1.5,
                  tol_abs: float = 0.05) -> tuple[dict, str]:
    """Glued numbers and the Markdown table of every pruned level of the generator-IMP ``run``
    (:class:`lipkit.gan.imp.GanImpRun`): measured sparsity of G and D (%), G's parameters left and the
    MOM MSE of its recovery (``recovered``: records labelled ``"<criterion> <round>"``), beside the dense
    generator's (``dense_mom``); how many rounds the ticket beats random pruning; the largest miss of
    a measured count against ``rate``; the bound the first ticket must stay under
    (``tol_factor`` × dense MSE + ``tol_abs``) and whether it does (``first_ticket_verdict``)."""
    mse = {tuple(r["label"].split()): r["mean_mse"] for r in recovered}
    rate = run.config["rate"]
    dense = run.records("magnitude" if "magnitude" in run.criteria else run.criteria[0])[0]
    rows = ["| generator | G sparsity (measured) | G parameters left | D sparsity | MOM per-pixel MSE |",
            "|---|---|---|---|---|",
            f"| dense (pretrained) | 0.00 % | {dense['G']['params_left']:,} | 0.00 % | {dense_mom['mean_mse']:.4f} |"]
    numbers, max_error, rounds = {}, 0, 0
    for criterion in run.criteria:
        name, label = CHAINS[criterion]
        for rec in run.records(criterion)[1:]:
            k, value = rec["round"], mse[criterion, str(rec["round"])]
            rounds = max(rounds, k)
            numbers.update({f"{name}_mse_{k}": value, f"{name}_sparsity_{k}": 100 * rec["G"]["sparsity"],
                            f"{name}_d_sparsity_{k}": 100 * rec["D"]["sparsity"],
                            f"{name}_params_{k}": rec["G"]["params_left"]})
            for which in ("G", "D"):
                max_error = max(max_error, abs(rec[which]["nonzero"] - round(rec[which]["total"] * (1 - rate) ** k)))
            rows.append(f"| {label}, round {k} | {100 * rec['G']['sparsity']:.2f} % | {rec['G']['params_left']:,} | "
                        f"{100 * rec['D']['sparsity']:.2f} % | {value:.4f} |")
    bound = tol_factor * dense_mom["mean_mse"] + tol_abs
    numbers.update(max_sparsity_error=max_error, tol_factor=tol_factor, tol_abs=tol_abs, first_ticket_bound=bound)
    if "ticket_mse_1" in numbers:
        numbers["first_ticket_verdict"] = ("stays below it: as good as the dense generator by this measure"
                                           if numbers["ticket_mse_1"] <= bound else "does not stay below it")
    if set(run.criteria) == set(CHAINS):
        numbers.update(ticket_beats_random=sum(numbers[f"ticket_mse_{k}"] < numbers[f"random_mse_{k}"]
                                               for k in range(1, rounds + 1)),
                       ticket_mse_max=numbers[f"ticket_mse_{rounds}"], random_mse_max=numbers[f"random_mse_{rounds}"],
                       sparsity_max=numbers[f"ticket_sparsity_{rounds}"])
    return numbers, "\n".join(rows)
