"""lipkit: Lottery Image Priors (Wu, Chen, Jiang, Wang, TMLR 2023) as an executable book.

Modules, one concept each, by the layer they belong to (the README's layout table says more):

- foundations: :mod:`~lipkit.seeding` (every random stream), :mod:`~lipkit.device`,
  :mod:`~lipkit.errors` and :mod:`~lipkit.checks` (one-line errors, the settings' rules),
  :mod:`~lipkit.data` (checksummed images), :mod:`~lipkit.datasets` (labelled sets for classification),
  :mod:`~lipkit.metrics`, :mod:`~lipkit.resample`, :mod:`~lipkit.summaries` (over seeds) and
  :mod:`~lipkit.matching` (closest in ratio);
- networks and degradations: :mod:`~lipkit.models` (skip net, deep decoder, ``theta0``),
  :mod:`~lipkit.operators`, :mod:`~lipkit.tasks`;
- :mod:`~lipkit.fitting`: the one loop (:mod:`~lipkit.fitting.loop`), what it steps, records and
  stops by, its settings, and what a fit needs in memory and FLOPs; :mod:`~lipkit.runtime`: speed
  options and the process's memory; :mod:`~lipkit.parallel`: the one job engine;
- :mod:`~lipkit.pruning`: masks, channels, masks at initialization, tickets;
- :mod:`~lipkit.lottery`: the one driver (:mod:`~lipkit.lottery.driver`), single-image and
  weight-sharing IMP; :mod:`~lipkit.gan`: chapter 6 (generator IMP, WGAN-GP, MOM, data);
- :mod:`~lipkit.studies`: transfer, deep decoders, the race of chapter 7, masks at initialization
  against IMP;
- the book: :mod:`~lipkit.experiments`, :mod:`~lipkit.book` (tables and verdicts, paper-scale records),
  :mod:`~lipkit.paper`, :mod:`~lipkit.plots`, :mod:`~lipkit.widgets`;
- runs at scale: :mod:`~lipkit.store`, :mod:`~lipkit.runs` (sweeps, the ledger, the paper plan),
  :mod:`~lipkit.cli`.
"""

__version__ = "0.2.0"

from lipkit.device import default_device  # noqa: E402
from lipkit.seeding import derive_seed, generator, seeded  # noqa: E402

__all__ = ["__version__", "default_device", "derive_seed", "generator", "seeded"]
