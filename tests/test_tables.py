"""Chapter tables (lipkit.book.tables, lipkit.book.rivals) on hand-made records."""

import pytest

from lipkit.book.tables import spread_verdict, ticket_against_deep_decoder, ticket_wins


class FakeRun:
    """What the table reads of an ImpRun: ``records(method)``."""

    def __init__(self, records):
        self._records = records

    def records(self, method=None):
        return [r for r in self._records if method is None or r["method"] == method]


def rec(method, round_, seed, best, es, final, sparsity=0.0):
    return dict(method=method, round=round_, seed=seed, best_psnr=best, es_psnr=es, final_psnr=final,
                conv_sparsity=sparsity)


def test_ticket_against_deep_decoder_row():
    run = FakeRun([rec("imp", 0, 0, 30.0, 29.0, 28.0), rec("imp", 0, 1, 31.0, 30.0, 29.0),
                   rec("imp", 2, 0, 29.0, 28.0, 27.0, 0.9), rec("imp", 2, 1, 27.0, 26.0, 25.0, 0.92),
                   rec("random_layerwise", 2, 0, 20.0, 19.0, 18.0), rec("random_layerwise", 2, 1, 22.0, 19.0, 18.0),
                   rec("random_global", 2, 0, 18.0, 17.0, 16.0), rec("random_global", 2, 1, 18.0, 17.0, 16.0)])
    decoders = [dict(k=8, seed=s, best_psnr=b, es_psnr=b - 1, final_psnr=b - 2) for s, b in ((0, 27.0), (1, 27.5))]
    decoders.append(dict(k=16, seed=0, best_psnr=99.0, es_psnr=99.0, final_psnr=99.0))  # another width: not read
    row = ticket_against_deep_decoder(run, decoders, level=2, width=8)
    assert (row["lip_best"], row["lip_best_std"]) == (28.0, 1.0)
    assert (row["dd_best"], row["dd_best_std"]) == (27.25, 0.25)
    assert (row["lip_es"], row["dd_final"]) == (27.0, 25.25)
    assert (row["random_layerwise"], row["random_global"], row["dense"]) == (21.0, 18.0, 30.5)
    assert row["sparsity"] == pytest.approx(0.91) and row["seeds"] == {"lip": 2, "dd": 2}
    assert row["gap"] == 0.75 and row["verdict"] == "within about a standard deviation of each other"
    assert row["lip_final"] == 26.0 and ticket_wins([row], "final") == 1
    assert ticket_wins([row, dict(lip_best=27.0, dd_best=27.5)]) == 1


def test_spread_verdict_names_who_is_ahead():
    assert spread_verdict(1.2, 0.5, ahead="ticket", behind="deep decoder").endswith("the ticket ahead")
    assert spread_verdict(-1.2, 0.5, ahead="ticket", behind="deep decoder").endswith("the deep decoder ahead")
    assert spread_verdict(0.0, 0.0, ahead="a", behind="b").startswith("more than")  # no spread: any gap counts


def race_row(contender, seconds, best, gflops, dense_seconds=6.0, dense_best=30.0, dense_gflops=8.0):
    return dict(contender=contender, seconds=seconds, best_psnr=best, best_psnr_std=0.1, final_psnr=best - 1,
                speedup=dense_seconds / seconds, flops_ratio=dense_gflops / gflops, gap_to_dense=best - dense_best)


def race_task(ticket_seconds, ticket_best):
    return [race_row("dense", 6.0, 30.0, 8.0), race_row("unstructured", 6.0, 29.8, 8.0),
            race_row("channel_ticket", ticket_seconds, ticket_best, 1.6), race_row("random_channels", 2.0, 28.0, 1.6),
            race_row("narrow", 1.8, 29.0, 1.7), race_row("deep_decoder", 1.5, 27.0, 1.5)]


def test_race_numbers_and_the_target():
    from lipkit.book.tables import race_numbers

    met = race_numbers({"a": race_task(2.0, 29.9), "b": race_task(1.5, 29.75), "c": race_task(1.0, 28.0)})
    assert met["a_speedup"] == 3.0 and met["a_flops_ratio"] == 5.0 and met["a_gap"] == pytest.approx(-0.1)
    assert met["within_03"] == 2 and met["beats_narrow"] == 2 and met["min_speedup"] == 3.0
    assert met["ticket_on_front"] == 3 and met["unstructured_speedup"] == 1.0 and met["dd_leads"] == 0
    smooth = race_task(2.0, 29.9)
    smooth[-1] = race_row("deep_decoder", 1.5, 30.5, 1.5)  # above the dense net too
    assert race_numbers({"a": smooth, "b": race_task(1.5, 29.75)})["dd_leads"] == 1
    assert met["target_verdict"] == "meets the target"
    slow = race_numbers({"a": race_task(2.5, 29.9), "b": race_task(1.5, 29.75), "c": race_task(1.0, 28.0)})
    assert slow["min_speedup"] == 2.4 and slow["target_verdict"] == "does not meet the target"
    far = race_numbers({"a": race_task(2.0, 29.6), "b": race_task(1.5, 29.75), "c": race_task(1.0, 28.0)})
    assert far["within_03"] == 1 and far["target_verdict"] == "does not meet the target"


def rival_row(contender, level, best, final, empty=0.0, density=None, seed=0, image="set14/pepper", **extra):
    return dict(contender=contender, level=level, best_psnr=best, es_psnr=best - 0.5, final_psnr=final,
                empty_layers=empty, density=density, seed=seed, image=image, parameters=100.0, mask_passes=1.0,
                mask_seconds=0.5, **extra)


def test_chapter8_levels_verdicts_and_tables_from_rows():
    from lipkit.book import rivals
    from lipkit.studies.init_vs_imp import summarize

    rows = [rival_row("dense", None, 30.0, 26.0, density=None)]
    for seed, shift in ((0, 0.0), (1, 1.0)):
        rows += [rival_row("imp", 1, 29.0 + shift, 28.0, density=0.4, seed=seed),
                 rival_row("imp", 2, 28.0 + shift, 27.5, density=0.16 + 0.01 * seed, seed=seed),
                 rival_row("oes", 2, 27.0, 27.8, density=0.16, seed=seed),
                 rival_row("snip", 2, 26.0, 24.0, empty=1.0, density=0.16, seed=seed),
                 rival_row("random", 2, 26.5, 25.0, density=0.16, seed=seed)]
    density_of = rivals.level_densities(rows)
    assert list(density_of) == [1, 2] and density_of[2] == pytest.approx(0.165)
    curves = rivals.plotted_curves(rows, "set14/pepper", 2)
    assert [r["contender"] for r in curves] == ["dense", "imp", "oes", "snip", "random"]  # seed 0, in contender order
    summary = summarize(rows)
    moved = summarize([dict(rival_row(c, 2, 27.0, final), origin=o) for c, final, o in
                       (("imp", 27.0, "own"), ("imp", 26.0, "transferred"), ("oes", 27.5, "own"),
                        ("oes", 27.4, "transferred"), ("dense", 26.0, None))], by=("contender", "origin"))
    book = {"denoise": summary}
    n = rivals.rival_numbers(summary, density_of, curves=curves, moved=moved, book=book, titles={"denoise": "noise"})
    assert (n["imp_best"], n["imp_final"], n["oes_final"]) == (28.5, 27.5, 27.8)
    assert n["oes_vs_imp_final"] == "above" and n["oes_minus_imp_final"] == pytest.approx(0.3)
    # OES's published table has OES 1.10 dB above IMP at the last iterate: the same order as here
    assert n["published_oes_minus_imp_final"] == pytest.approx(1.10) and n["published_dense_drop"] == pytest.approx(5.61)
    assert n["oes_order_vs_published"] == "the same order as the published table"
    below = [dict(r, final_psnr=26.0) if r["contender"] == "oes" else r for r in summary]
    reverse = rivals.rival_numbers(below, density_of, curves=curves, moved=moved, book=book, titles={"denoise": "noise"})
    assert reverse["oes_order_vs_published"] == "the reverse of the published order"
    assert n["dense_drop"] == 4.0 and n["best_final_label"] == "OES" and n["best_peak_label"] == "IMP ticket (LIP)"
    assert (n["n_beat_random"], n["beat_random"]) == (2, "IMP ticket (LIP), OES")  # SNIP is below random
    assert (n["n_curves"], n["n_falling"], n["falling"]) == (5, 3, "dense DIP, SNIP, random")  # IMP 0.5, OES -0.8 dB
    assert (n["n_collapsed"], n["collapsed"], n["collapsed_best_max"]) == (1, "SNIP at 16.5 %", 26.0)
    assert n["n_masks"] == 5  # IMP at two levels, OES, SNIP, random
    assert n["imp_moved_minus_own"] == -1.0 and n["oes_moved_minus_own"] == pytest.approx(-0.1)
    assert n["book_best"] == "noise: IMP ticket (LIP)" and n["book_density"] == pytest.approx(100 * 0.2825)
    table = rivals.rivals_table(summary, density_of).splitlines()
    assert len(table) == 2 + len(summary) and table[2].startswith("| 100 % | dense DIP |")
    assert "| 16.5 % | SNIP |" in "\n".join(table) and "28.50 ± 0.50" in "\n".join(table)
    moved_table = rivals.rivals_transfer_table(moved, "set14/lenna")
    assert "| OES | set14/lenna |" in moved_table and "| dense DIP | — |" in moved_table


def test_chapter4_tables_from_a_ticket_table():
    import torch

    from lipkit.book import tables

    table = {"shared": {"set5/baby": 30.0, "set5/bird": 32.0, "set14/zebra": 25.0},
             "dense": {"set5/baby": 29.0, "set5/bird": 30.0, "set14/zebra": 26.0}}
    assert tables.row_mean(table, "shared", ["set5/baby", "set5/bird"]) == 31.0
    text = tables.tickets_table(table, ["set5/baby", "set5/bird"], ["set14/zebra"]).splitlines()
    assert text[0] == "| ticket | baby | bird | zebra (held out) | mean, own | mean, held out |"
    assert text[2] == "| shared | 30.00 | 32.00 | 25.00 | 31.00 | 25.00 |" and len(text) == 4
    a = {"l1": torch.tensor([1.0, 1.0, 0.0, 0.0]), "l2": torch.tensor([1.0, 0.0])}
    b = {"l1": torch.tensor([1.0, 0.0, 0.0, 0.0]), "l2": torch.tensor([1.0, 1.0])}
    assert tables.layer_density_gap(a, b) == 50.0  # l2: 50 % against 100 %
    assert tables.overlap_table({"F16": {"iou": 0.4567}}).splitlines()[2] == "| F16 | 45.7 % (Jaccard) |"


class FakeImpRun(FakeRun):
    """And ``curve``, as ImpRun computes it (lipkit.summaries.level_curve over rounds)."""

    def curve(self, method="imp", key="best_psnr"):
        from lipkit.summaries import level_curve

        return level_curve(self.records(method), level_of=lambda r: r["round"], key=key)


def imp_record(method, round_, seed, best, nonzero):
    return dict(rec(method, round_, seed, best, best - 1, best - 2, 1 - nonzero / 1000), unpruned_params=nonzero + 10,
                conv_nonzero=nonzero, layer_density=[nonzero / 1000] * 3)


def test_chapter2_numbers_and_table():
    from lipkit.book.tables import imp_numbers, imp_table

    kept = {0: 1000, 1: 400, 2: 161}  # rate 0.6: 1000, 400, 160; one weight off at round 2
    runs = {"denoise": FakeImpRun([imp_record("imp", k, s, 30.0 - k + s, kept[k]) for k in kept for s in (0, 1)]
                                  + [imp_record("random_global", k, s, 29.0 - 2 * k, kept[k]) for k in (1, 2)
                                     for s in (0, 1)]),
            "sr4": FakeImpRun([imp_record("imp", k, s, 24.0 - k, kept[k]) for k in kept for s in (0, 1)]
                              + [imp_record("random_global", k, s, 23.5, kept[k]) for k in (1, 2) for s in (0, 1)])}
    n = imp_numbers(runs, ["random_global"], rate=0.6)
    assert (n["denoise_dense"], n["denoise_imp_max"], n["denoise_es_max"], n["denoise_final_max"]) == (30.5, 28.5, 27.5, 26.5)
    assert n["denoise_random_global_max"] == 25.0 and n["sr4_random_global_max"] == 23.5
    assert n["imp_wins"] == 1  # sr4: 22.0 against random's 23.5
    assert n["imp_behind_text"] == "sr4"
    titled = imp_numbers(runs, ["random_global"], rate=0.6, titles={"denoise": "Denoising", "sr4": "SR ×4"})
    assert titled["imp_behind_text"] == "SR ×4"
    assert n["imp_mean_max"] == 25.25 and n["random_global_mean_max"] == 24.25
    assert n["max_sparsity_error"] == 1 and n["n_convs"] == 3 and n["n_tasks"] == 2
    assert n["denoise_sparsity_max"] == pytest.approx(83.9) and n["denoise_params_max"] == 171
    table = imp_table(runs, {"denoise": "Denoising", "sr4": "SR ×4"}, ["random_global"]).splitlines()
    assert table[0] == "| task | dense | sparsity | params | IMP | random (global) | IMP, ES-WMV | IMP, last |"
    assert table[2] == "| Denoising | 30.50 | 83.90 % | 171 | **28.50** ± 0.50 | 25.00 ± 0.00 | 27.50 ± 0.50 | 26.50 ± 0.50 |"
    # the best of the pruned nets is in bold, whichever it is: random pruning for SR ×4
    assert table[3] == "| SR ×4 | 24.00 | 83.90 % | 171 | 22.00 ± 0.00 | **23.50** ± 0.00 | 21.00 ± 0.00 | 20.00 ± 0.00 |"


def test_chapter2_a_tie_with_a_baseline_counts_for_imp_and_is_bold_in_both():
    from lipkit.book.tables import imp_numbers, imp_table

    kept = {0: 1000, 1: 400}
    runs = {"t": FakeImpRun([imp_record("imp", k, s, 30.0 - k, kept[k]) for k in kept for s in (0, 1)]
                            + [imp_record("random_global", 1, s, 29.0, 400) for s in (0, 1)])}
    n = imp_numbers(runs, ["random_global"], rate=0.6, titles={"t": "T"})
    assert (n["imp_wins"], n["imp_behind_text"], n["n_methods"]) == (1, "none", 2)
    row = imp_table(runs, {"t": "T"}, ["random_global"]).splitlines()[2]
    assert row.count("**29.00**") == 2  # the count and the bold follow one rule


def transferred(round_, best, es, final, variant="ticket"):
    return dict(variant=variant, source={"round": round_}, best_psnr=best, es_psnr=es, final_psnr=final,
                conv_sparsity=0.5 * round_, unpruned_params=100 - 10 * round_)


def test_chapter3_transfers_under_every_stopping_rule():
    from lipkit.book.tables import transfer_rules

    # the native run has a round more than the transferred tickets: compare at their sparsest round (2)
    native = FakeImpRun([dict(imp_record("imp", k, 0, 30.0 - k, 1000 // (k + 1)), es_psnr=29.0 - k, final_psnr=28.0 - k)
                         for k in (0, 1, 2, 3)])
    records = {"ticket": [transferred(k, 29.5 - k, 27.0 - k, 26.5 - k) for k in (1, 2)],
               "random_like": [transferred(2, 20.0, 19.0, 18.0, "random_like")]}
    table, numbers = transfer_rules({"pair": (native, records)})
    lines = table.splitlines()
    assert lines[0] == ("| ticket from → used for | native: oracle / ES-WMV / last | transferred: oracle / ES-WMV / last "
                        "| gap: oracle / ES-WMV / last |")
    assert lines[2] == "| pair | 28.00 / 27.00 / 26.00 | 27.50 / 25.00 / 24.50 | -0.50 / -2.00 / -1.50 |"
    assert (numbers["rules_gap_best"], numbers["rules_gap_es"], numbers["rules_gap_final"]) == (-0.5, -2.0, -1.5)


def test_chapter4_tables_under_every_stopping_rule():
    from lipkit.book.tables import tickets_rules_table

    by_rule = {"best": {"shared": {"a": 30.0, "b": 32.0, "c": 25.0}},
               "es": {"shared": {"a": 29.0, "b": 31.0, "c": 24.0}},
               "final": {"shared": {"a": 28.0, "b": 30.0, "c": 20.0}}}
    lines = tickets_rules_table(by_rule, ["a", "b"], ["c"]).splitlines()
    assert lines[0] == "| ticket | own images: oracle / ES-WMV / last | held out: oracle / ES-WMV / last |"
    assert lines[2] == "| shared | 31.00 / 30.00 / 29.00 | 25.00 / 24.00 / 20.00 |"
    with pytest.raises(ValueError, match="no stopping rule"):
        tickets_rules_table({}, ["a"], ["c"])
