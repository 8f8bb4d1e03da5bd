"""The one rule lipkit matches sizes by: the candidate closest to a target *in ratio*.

IMP levels to asked densities, IMP rounds to parameter counts, deep-decoder widths to parameter
counts and widths to FLOPs are all chosen so: the smallest ``|log(value / target)|``, the first
candidate on a tie. A ratio, not a difference, because the quantities span decades (99 % sparsity
is 1 % of the weights kept).

>>> closest_in_ratio([1, 2, 4, 8], lambda x: x, 3.0)  # log(4/3) < log(3/2)
4
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def closest_in_ratio(candidates: Iterable[T], value_of: Callable[[T], float], target: float) -> T:
    """The candidate whose ``value_of`` (> 0) is closest to ``target`` (> 0) in ratio; the first on a tie."""
    if not target > 0:
        raise ValueError(f"the target must be positive, got {target}")
    return min(candidates, key=lambda c: abs(math.log(value_of(c) / target)))
