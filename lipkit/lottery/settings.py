"""What a lottery run is: its settings, checked once, stored as its config, named by its folder.

A run's settings are one frozen object per kind of run: :class:`ImpSettings` (single-image IMP),
:class:`SharedImpSettings` (weight sharing) and :class:`GanImpSettings` (generator IMP). Each is
checked once, in ``__post_init__``, every problem named at once (:class:`lipkit.errors.UsageError`),
and :meth:`~ImpSettings.config` writes it, with the task and network it runs on, as the run
folder's ``config.json``, from which come the id of its records and its folder's name
(:mod:`lipkit.lottery.identity`).

The command line's options for these settings are made from the fields and their help text
(:func:`add_options`, :func:`from_options`), so that a setting and its option cannot drift apart.

>>> tiny = dict(num_channels_down=[8] * 5, num_channels_up=[8] * 5)
>>> s = ImpSettings(rounds=2, rate=0.5, seeds=(0, 1), arch=tiny)
>>> s.seeds, s.config(task={"kind": "denoise"})["seeds"]
((0, 1), [0, 1])
>>> ImpSettings(rate=1.5, seeds=(0, 0))
Traceback (most recent call last):
lipkit.errors.UsageError: rate must be in (0, 1): the fraction of the remaining weights pruned per round, got 1.5; seeds must be distinct whole numbers >= 0, at least one, got (0, 0)
"""

from __future__ import annotations

import argparse
import json
import numbers
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from lipkit.errors import UsageError
from lipkit.lottery.driver import BRANCHES, STRUCTURES
from lipkit.pruning.masks import PRUNING_CRITERIA

SEARCH_TARGETS = ("observation", "clean")  # what the masks are fitted to
INPUT_MODES = ("shared", "per_image")      # weight sharing: one z for every image, or one z per image
BASELINES = tuple(BRANCHES)


def _option(default: Any, help: str, *, choices: tuple | None = None, flag: str | None = None,
            old_flag: str | None = None):
    """A setting that is also a command-line option (``--<name>``, or ``flag``; ``old_flag``, the
    option's name before a rename, is still accepted and not shown)."""
    return field(default=default, metadata=dict(help=help, choices=choices, flag=flag, old_flag=old_flag))


def _whole(v, least: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


@dataclass(frozen=True)
class LotterySettings:
    """What every lottery run has: rounds and the per-round rate."""

    rounds: int = _option(16, "pruning rounds R: levels 0 (dense) .. R are trained and recorded")
    rate: float = _option(0.2, "fraction of the remaining weights pruned per round, in (0, 1)")

    def __post_init__(self):
        found = type(self).problems({f.name: getattr(self, f.name) for f in fields(self)})
        if found:
            raise UsageError("; ".join(found))

    @classmethod
    def problems(cls, v: dict, flag: bool = False) -> list[str]:
        """What is wrong with the values ``v`` of every setting, one message each (``flag``: named
        as command-line options)."""
        name = (lambda f: option_name(cls, f)) if flag else (lambda f: f)
        out = []
        if not _whole(v["rounds"], 0):
            out.append(f"{name('rounds')} must be a whole number >= 0, got {v['rounds']!r}")
        if not (isinstance(v["rate"], (int, float)) and not isinstance(v["rate"], bool) and 0 < v["rate"] < 1):
            out.append(f"{name('rate')} must be in (0, 1): the fraction of the remaining weights pruned per round, "
                       f"got {v['rate']!r}")
        for f in fields(cls):
            choices, value = f.metadata.get("choices"), v[f.name]
            several = isinstance(value, (tuple, list))
            if choices and any(x not in choices for x in (value if several else (value,))):
                out.append(f"{name(f.name)} must be {'any' if several else 'one'} of {', '.join(choices)}; "
                           f"got {value!r}")
        return out


def _seed_problems(seeds, flag: bool) -> list[str]:
    if seeds and all(_whole(s, 0) for s in seeds) and len(set(seeds)) == len(seeds):
        return []
    return [f"{'--seed-list' if flag else 'seeds'} must be distinct whole numbers >= 0, at least one, got {seeds!r}"]


def _seeds(seeds) -> tuple:
    """Seeds as a tuple of ints (``range(3)``, numpy integers); anything else is kept for the check to name."""
    if not isinstance(seeds, (list, tuple, range)):
        return (seeds,) if isinstance(seeds, numbers.Integral) else seeds
    return tuple(int(s) if isinstance(s, numbers.Integral) and not isinstance(s, bool) else s for s in seeds)


@dataclass(frozen=True)
class ImpSettings(LotterySettings):
    """Single-image IMP (:func:`lipkit.lottery.imp.imp`): one chain per seed.

    ``arch`` takes ``skip_net`` arguments (None: the LIP backbone) and holds all of them once made;
    ``seeds`` and ``baselines`` become tuples. On the command line the seeds are ``--seeds N`` or
    ``--seed-list``, and the network ``--width``.
    """

    seeds: tuple = field(default=(0,), metadata=dict(help=None))
    search_on: str = _option("observation", "fit the masks to the observation (realistic) or to the clean image "
                                            "(the official code)", choices=SEARCH_TARGETS)
    rewind_iteration: int = _option(0, "rewind to the dense weights after this many iterations (0: θ0)",
                                    flag="--rewind-iter")
    keep_input_convs_dense: bool = _option(False, "the official code's quirk: the two convolutions reading z stay "
                                                  "dense")
    criterion: str = _option("magnitude", "how a round ranks the weights: by magnitude (IMP) or at random",
                             choices=PRUNING_CRITERIA, old_flag="--method")
    structure: str = _option("unstructured", "prune single weights, or whole channels (the rate is then a fraction "
                                             "of the channels)", choices=STRUCTURES)
    baselines: tuple = _option((), "baselines trained as branches off every level's mask", choices=BASELINES)
    arch: dict | None = field(default=None, metadata=dict(help=None))

    def __post_init__(self):
        from lipkit.models import skip_net

        object.__setattr__(self, "seeds", _seeds(self.seeds))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        super().__post_init__()
        # every skip_net argument, as the network states them, so that equal nets have equal configs
        object.__setattr__(self, "arch", {k: v for k, v in skip_net(**(self.arch or {})).config.items()
                                          if k != "arch"})

    @classmethod
    def problems(cls, v: dict, flag: bool = False) -> list[str]:
        name = (lambda f: option_name(cls, f)) if flag else (lambda f: f)
        out = super().problems(v, flag)
        out += _seed_problems(v["seeds"], flag)
        if not _whole(v["rewind_iteration"], 0):
            out.append(f"{name('rewind_iteration')} must be a whole number >= 0, got {v['rewind_iteration']!r}")
        if v["structure"] == "channel" and (v["baselines"] or v["keep_input_convs_dense"]):
            out.append("channel pruning has no branch baselines and no dense input convs yet; its baselines are runs "
                       "of their own (criterion 'random', a narrower width, the unstructured ticket)")
        return out

    def config(self, *, task: dict) -> dict:
        """The run folder's ``config.json``: ``task`` (:meth:`lipkit.tasks.Task.describe`) and these settings."""
        config = dict(task=task, arch=self.arch, rounds=self.rounds, rate=self.rate, search_on=self.search_on,
                      rewind_iteration=self.rewind_iteration, keep_input_convs_dense=self.keep_input_convs_dense,
                      criterion=self.criterion, baselines=list(self.baselines), seeds=list(self.seeds))
        if self.structure != "unstructured":  # absent otherwise, so that the runs made before keep their id
            config["structure"] = self.structure
        return config


@dataclass(frozen=True)
class SharedImpSettings(ImpSettings):
    """Weight-sharing IMP (:func:`lipkit.lottery.weight_sharing.imp_shared`): one ticket for several
    images. It rewinds to θ0, ranks by magnitude and has no branch baselines."""

    input_mode: str = _option("per_image", "one fixed input z per image, or one z for every image (the official "
                                           "code)", choices=INPUT_MODES)

    @classmethod
    def problems(cls, v: dict, flag: bool = False) -> list[str]:
        out = super().problems(v, flag)
        fixed = dict(rewind_iteration=0, criterion="magnitude", structure="unstructured", baselines=())
        out += [f"weight-sharing IMP has {k} = {only!r} only, got {v[k]!r}" for k, only in fixed.items()
                if (tuple(v[k]) if k == "baselines" else v[k]) != only]
        return out

    def config(self, *, task: dict, settings: dict) -> dict:
        """As :meth:`ImpSettings.config`, with the input mode and the fit settings of every round."""
        config = super().config(task=task)
        config.update(input_mode=self.input_mode, settings=settings)
        return config


@dataclass(frozen=True)
class GanImpSettings(LotterySettings):
    """Generator IMP (:func:`lipkit.gan.imp.gan_imp`): chains of G and D masks per criterion, one seed
    (the fine-tuning's data order and noise, and the random rankings)."""

    criteria: tuple = _option(("magnitude",), "a chain per ranking: magnitude (IMP), random (the baseline)",
                              choices=PRUNING_CRITERIA)
    seed: int = field(default=0, metadata=dict(help=None))

    def __post_init__(self):
        object.__setattr__(self, "criteria", tuple(self.criteria))
        super().__post_init__()

    @classmethod
    def problems(cls, v: dict, flag: bool = False) -> list[str]:
        out = super().problems(v, flag)
        if not v["criteria"] or len(set(v["criteria"])) != len(v["criteria"]):
            out.append(f"criteria must be a non-empty subset of {PRUNING_CRITERIA}, got {list(v['criteria'])}")
        if not _whole(v["seed"], 0):
            out.append(f"seed must be a whole number >= 0, got {v['seed']!r}")
        return out

    def config(self, **context) -> dict:
        """``config.json``: ``context`` (the networks, the fine-tuning, the images) and these settings;
        the main chain is magnitude when it is asked for, and random pruning is then its baseline."""
        main = "magnitude" if "magnitude" in self.criteria else "random"
        return dict(kind="gan", **{k: context.pop(k) for k in ("generator", "critic")}, rounds=self.rounds,
                    rate=self.rate, criteria=list(self.criteria), criterion=main,
                    baselines=["random_global"] if len(self.criteria) > 1 else [], seed=self.seed, **context)


REWINDS = ("none", "theta0", "early")  # where a classification level starts


@dataclass(frozen=True)
class ClassifyImpSettings(LotterySettings):
    """Classification IMP (:func:`lipkit.lottery.classify.imp_classify`): the LIP backbone with a linear
    head, trained by SGD on a labelled image set; the defaults are the official code's
    (``DIP_LTH/LTH_IMP_Classification.py``: CIFAR-10 at 50 × 50, 25 rounds, 182 epochs a level, SGD 0.01
    with momentum 0.9 and weight decay 2e-4, the rate dropped 10× at epochs 91 and 136, no rewinding).
    """

    rounds: int = _option(25, "pruning rounds R: levels 0 (dense) .. R are trained and recorded")
    seeds: tuple = field(default=(0,), metadata=dict(help=None))
    dataset: str = _option("cifar10", "the labelled images (lipkit.datasets)", choices=("mnist5k", "cifar10", "fake"))
    size: int = _option(50, "images are resized to size x size px (the official code: 50)")
    rewind: str = _option("none", "where a level starts: the previous level's trained weights (none: the official "
                                  "code), θ0 (theta0), or the dense weights after rewind-iteration SGD steps (early)",
                          choices=REWINDS)
    rewind_iteration: int = _option(0, "SGD steps of the dense net before the early rewind point")
    epochs: int = _option(182, "SGD epochs per level")
    batch_size: int = _option(256, "images per SGD step (the last partial batch of an epoch is dropped)")
    lr: float = _option(0.01, "SGD learning rate")
    momentum: float = _option(0.9, "SGD momentum")
    weight_decay: float = _option(2e-4, "SGD weight decay")
    milestones: tuple = _option((91, 136), "epochs after which the learning rate drops 10x")
    head: str = _option("sigmoid", "the linear head's output: through a sigmoid (the official code) or the logits",
                        choices=("sigmoid", "linear"))
    criterion: str = _option("magnitude", "how a round ranks the weights: by magnitude (IMP) or at random",
                             choices=PRUNING_CRITERIA, old_flag="--method")
    baselines: tuple = _option((), "baselines trained as branches off every level's mask", choices=BASELINES)
    arch: dict | None = field(default=None, metadata=dict(help=None))

    def __post_init__(self):
        object.__setattr__(self, "seeds", _seeds(self.seeds))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        object.__setattr__(self, "milestones", tuple(self.milestones))
        super().__post_init__()
        object.__setattr__(self, "arch", {k: v for k, v in dict(self.arch or {}).items()
                                          if k not in ("num_input_channels", "num_output_channels", "need_sigmoid")})

    @classmethod
    def problems(cls, v: dict, flag: bool = False) -> list[str]:
        name = (lambda f: option_name(cls, f)) if flag else (lambda f: f)
        out = super().problems(v, flag)
        out += _seed_problems(v["seeds"], flag)
        for f in ("size", "epochs", "batch_size"):
            if not _whole(v[f], 1):
                out.append(f"{name(f)} must be a whole number >= 1, got {v[f]!r}")
        levels = len((v["arch"] or {}).get("num_channels_down", (0,) * 5))
        if _whole(v["size"], 1) and -(-v["size"] // 2 ** levels) < 2:  # train-mode BatchNorm needs 2 px
            out.append(f"{name('size')} must leave at least 2 px at the deepest of the skip net's {levels} stride-2 "
                       f"levels, so at least {2 ** levels + 1}; got {v['size']!r}")
        if not _whole(v["rewind_iteration"], 0):
            out.append(f"{name('rewind_iteration')} must be a whole number >= 0, got {v['rewind_iteration']!r}")
        if (v["rewind"] == "early") != (_whole(v["rewind_iteration"], 1)):
            out.append(f"{name('rewind_iteration')} is the early rewind point: >= 1 with rewind 'early', 0 otherwise; "
                       f"got {v['rewind_iteration']!r} with rewind {v['rewind']!r}")
        for f in ("lr", "momentum", "weight_decay"):
            number = isinstance(v[f], (int, float)) and not isinstance(v[f], bool)
            if not (number and (v[f] > 0 if f == "lr" else v[f] >= 0)):
                out.append(f"{name(f)} must be a number {'> 0' if f == 'lr' else '>= 0'}, got {v[f]!r}")
        if not all(_whole(m, 1) for m in v["milestones"]):
            out.append(f"{name('milestones')} must be epochs >= 1, got {v['milestones']!r}")
        return out

    def config(self, *, data: dict) -> dict:
        """The run folder's ``config.json``: ``data`` (the dataset, its channels and classes) and these settings."""
        return dict(task=dict(kind="classify", **data), arch=self.arch, rounds=self.rounds, rate=self.rate,
                    seeds=list(self.seeds), size=self.size, rewind=self.rewind,
                    rewind_iteration=self.rewind_iteration, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                    momentum=self.momentum, weight_decay=self.weight_decay, milestones=list(self.milestones),
                    head=self.head, criterion=self.criterion, baselines=list(self.baselines))


# --- the command line ------------------------------------------------------------------------------------
def option_name(cls: type, name: str) -> str:
    """The command-line option of setting ``name``."""
    f = next(f for f in fields(cls) if f.name == name)
    return f.metadata.get("flag") or f"--{name.replace('_', '-')}"


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per setting of ``cls`` that has help text, with its default and choices."""
    for f in fields(cls):
        if not f.metadata.get("help"):
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        kw: dict = dict(dest=f.name, help=f"{f.metadata['help']} (default: {default!r})")
        if isinstance(default, bool):
            kw.update(action="store_true")
        elif isinstance(default, tuple):
            kw.update(nargs="*", default=list(default), choices=f.metadata.get("choices"),
                      type=type(default[0]) if default else str)
        else:
            kw.update(type=type(default), default=default, choices=f.metadata.get("choices"))
        parser.add_argument(option_name(cls, f.name), **kw)
        if f.metadata.get("old_flag"):
            parser.add_argument(f.metadata["old_flag"], **dict(kw, help=argparse.SUPPRESS, default=argparse.SUPPRESS))


def from_options(cls: type, options: argparse.Namespace, **given):
    """The settings ``cls`` from parsed options (:func:`add_options`) and ``given`` values (seeds,
    arch); what is wrong is named as options, every problem at once (:class:`lipkit.errors.UsageError`)."""
    found = option_problems(cls, options, **given)
    if found:
        raise UsageError("; ".join(found))
    return cls(**_option_values(cls, options, given))


def _option_values(cls: type, options: argparse.Namespace, given: dict) -> dict:
    return {**{f.name: getattr(options, f.name) for f in fields(cls) if f.metadata.get("help")}, **given}


def option_problems(cls: type, options: argparse.Namespace, **given) -> list[str]:
    """What is wrong with the settings ``cls`` made from ``options`` and ``given``, named as options."""
    defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
    return cls.problems({**defaults, **_option_values(cls, options, given)}, flag=True)


def settings_dict(settings) -> dict:
    """The settings as plain values (tuples as lists), for printing and sweeps."""
    return json.loads(json.dumps(asdict(settings)))
