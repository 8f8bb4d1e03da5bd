"""The one mean ± std over seeds, the one "closest in ratio" rule and the one count of finished levels."""

import json

import numpy as np
import pytest

from lipkit.matching import closest_in_ratio
from lipkit.store.paths import ImpFolder
from lipkit.summaries import group_stats, level_curve, mean_std


def test_mean_std_is_the_population_std():
    values = [27.1, 27.9, 28.4]
    assert mean_std(values) == (pytest.approx(np.mean(values)), pytest.approx(np.std(values, ddof=0)))
    assert mean_std([5.0]) == (5.0, 0.0)
    assert group_stats([dict(a=1.0, b=2.0), dict(a=3.0, b=2.0)], ("a", "b")) == dict(a=2.0, a_std=1.0, b=2.0, b_std=0.0)


def test_a_curve_groups_by_the_level_it_is_given():
    recs = [dict(source=dict(round=k % 3), conv_sparsity=0.2 * (k % 3), unpruned_params=100 - k % 3,
                 best_psnr=float(k)) for k in range(9)]
    c = level_curve(recs, level_of=lambda r: r["source"]["round"])
    assert c["round"] == [0, 1, 2] and c["n"] == [3, 3, 3]
    assert c["mean"] == [3.0, 4.0, 5.0] and c["std"][0] == pytest.approx(np.std([0, 3, 6]))
    assert c["sparsity"] == pytest.approx([0.0, 0.2, 0.4]) and c["unpruned_params"] == [100, 99, 98]


def test_closest_in_ratio_measures_ratios_not_differences():
    # 3 is 1 away from 2 and from 4, but 4/3 is closer to 1 than 3/2
    assert closest_in_ratio([2, 4], float, 3.0) == 4
    assert closest_in_ratio([0.05, 0.2], float, 0.1) == 0.05  # 2x either way: the first wins the tie
    assert closest_in_ratio([0.2, 0.05], float, 0.1) == 0.2
    with pytest.raises(ValueError, match="positive"):
        closest_in_ratio([1.0], float, 0.0)


def test_finished_levels_are_counted_once(tmp_path):
    folder = ImpFolder(tmp_path)
    for seed, levels in ((0, 3), (1, 2)):
        for k in range(levels):
            folder.record(seed, k).parent.mkdir(parents=True, exist_ok=True)
            folder.record(seed, k).write_text(json.dumps({}))
        folder.record(seed, 1, "random").parent.mkdir(parents=True, exist_ok=True)
        folder.record(seed, 1, "random").write_text(json.dumps({}))
    assert [folder.finished_levels(s) for s in (0, 1)] == [3, 2]
    assert folder.finished_levels_of_every_seed() == 2  # the slowest seed
    assert folder.records_written([0, 1]) == 3 + 2 + 2  # the baselines' records count for progress
    assert ImpFolder(tmp_path / "none").finished_levels_of_every_seed() == 0
