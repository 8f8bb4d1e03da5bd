"""Chapter tables (lipkit.book.tables) on hand-made records."""

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
    assert met["ticket_on_front"] == 3 and met["unstructured_speedup"] == 1.0
    assert met["target_verdict"] == "meets the target"
    slow = race_numbers({"a": race_task(2.5, 29.9), "b": race_task(1.5, 29.75), "c": race_task(1.0, 28.0)})
    assert slow["min_speedup"] == 2.4 and slow["target_verdict"] == "does not meet the target"
    far = race_numbers({"a": race_task(2.0, 29.6), "b": race_task(1.5, 29.75), "c": race_task(1.0, 28.0)})
    assert far["within_03"] == 1 and far["target_verdict"] == "does not meet the target"
