"""The rules every setting is checked by before any work: one table for the command line, sweep
files, :class:`lipkit.experiments.Experiments` and the chapters' parameters.

Each rule says what a value must be; :func:`problems` lists every value that breaks its rule,
named as the caller names it (``--crop`` on the command line, ``crop`` in a sweep file).

>>> problems({"crop": "abc", "width": -3, "rate": 0.2})
["crop must be 0 (whole images) or a whole multiple of 32 of at least 64 px (the skip net has 5 levels), got 'abc'", 'width must be a whole number >= 1 (channels per level), got -3']
>>> problems({"rounds": -1}, flag=True)
['--rounds must be a whole number >= 0, got -1']
"""

from __future__ import annotations

from typing import Any, Callable, Mapping


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _at_least(n: int) -> Callable[[Any], bool]:
    return lambda v: _whole(v) and v >= n


def _crop(v) -> bool:
    return v is None or (_whole(v) and (v == 0 or (v >= 64 and v % 32 == 0)))


def _window(v) -> bool:
    return v is None or (isinstance(v, (list, tuple)) and len(v) == 2 and all(_whole(x) and x >= 0 for x in v))


def _baselines(v) -> bool:
    from lipkit.lottery.driver import BRANCHES

    return isinstance(v, (list, tuple)) and all(isinstance(b, str) and b in BRANCHES for b in v)


# name -> (the test, what the value must be)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "crop": (_crop, "0 (whole images) or a whole multiple of 32 of at least 64 px (the skip net has 5 levels)"),
    "width": (_at_least(1), "a whole number >= 1 (channels per level)"),
    "rounds": (_at_least(0), "a whole number >= 0"),
    "rounds_sr": (lambda v: v is None or _at_least(0)(v), "a whole number >= 0, or null (as rounds)"),
    "rate": (lambda v: _number(v) and 0 < v < 1, "in (0, 1): the fraction of the remaining weights pruned per round"),
    "seeds": (_at_least(1), "a whole number >= 1"),
    "iters": (lambda v: v is None or _at_least(1)(v), "a whole number >= 1"),
    "denoise_iters": (_at_least(1), "a whole number >= 1"),
    "sr_iters": (_at_least(1), "a whole number >= 1"),
    "inpaint_iters": (_at_least(1), "a whole number >= 1"),
    "sigma": (lambda v: _number(v) and 0 < v <= 255, "in (0, 255]: the noise std in 0-255 units"),
    "zero_fraction": (lambda v: _number(v) and 0 < v < 1, "in (0, 1)"),
    "factor": (lambda v: _whole(v) and 2 <= v <= 16, "a whole number from 2 to 16"),
    "workers": (lambda v: v is None or _at_least(1)(v), "a whole number >= 1"),
    "rewind_iter": (_at_least(0), "a whole number >= 0"),
    "rewind_iteration": (_at_least(0), "a whole number >= 0"),
    "kate_window": (_window, "two whole numbers >= 0 (the crop's top-left corner), or null"),
    "search_on": (lambda v: v in ("observation", "clean"), "'observation' or 'clean'"),
    "baselines": (_baselines, "a list of baselines from lipkit.lottery.driver.BRANCHES"),
    "densities": (lambda v: isinstance(v, (list, tuple)) and bool(v) and all(_number(d) and 0 < d < 1 for d in v),
                  "a list of fractions of the conv weights kept, each in (0, 1)"),
}


def problems(values: Mapping[str, Any], *, flag: bool = False) -> list[str]:
    """One message per value of ``values`` that breaks its rule (names without a rule are not
    checked); ``flag`` names them as command-line options (``--rewind-iter``)."""
    out = []
    for name, value in values.items():
        if name not in RULES:
            continue
        ok, expected = RULES[name]
        if not ok(value):
            shown = f"--{name.replace('_', '-')}" if flag else name
            out.append(f"{shown} must be {expected}, got {value!r}")
    return out
