"""lipkit: Lottery Image Priors (Wu, Chen, Jiang, Wang, TMLR 2023) as an executable book.

Modules, one concept each, by the layer they belong to (the README's layout table says more):

- foundations: :mod:`~lipkit.seeding` (every random stream), :mod:`~lipkit.device`,
  :mod:`~lipkit.errors` and :mod:`~lipkit.checks` (one-line errors, the settings' rules),
  :mod:`~lipkit.data` (checksummed images), :mod:`~lipkit.metrics`, :mod:`~lipkit.resample`,
  :mod:`~lipkit.summaries` (over seeds) and :mod:`~lipkit.matching` (closest in ratio);
- networks and degradations: :mod:`~lipkit.models` (skip net, deep decoder, ``theta0``),
  :mod:`~lipkit.operators`, :mod:`~lipkit.tasks`, :mod:`~lipkit.settings`;
- fitting: :mod:`~lipkit.fit` (the loop), :mod:`~lipkit.seed_axis` (what it steps),
  :mod:`~lipkit.batched` (several seeds at once), :mod:`~lipkit.tracking`, :mod:`~lipkit.fit_records` (results and the per-fit record),
  :mod:`~lipkit.early_stopping` (ES-WMV), :mod:`~lipkit.runtime`, :mod:`~lipkit.memory`,
  :mod:`~lipkit.flops`, :mod:`~lipkit.parallel` (the worker pool);
- pruning: :mod:`~lipkit.pruning`, :mod:`~lipkit.channels`, :mod:`~lipkit.init_pruning`,
  :mod:`~lipkit.tickets`;
- lottery runs: :mod:`~lipkit.lottery` (the one driver), :mod:`~lipkit.imp`,
  :mod:`~lipkit.weight_sharing`, :mod:`~lipkit.gan` with :mod:`~lipkit.wgan`,
  :mod:`~lipkit.gan_data` and :mod:`~lipkit.mom`;
- studies: :mod:`~lipkit.transfer`, :mod:`~lipkit.deep_decoder_runs`, :mod:`~lipkit.fast_tickets`,
  :mod:`~lipkit.init_tickets`, :mod:`~lipkit.init_vs_imp`;
- the book: :mod:`~lipkit.experiments`, :mod:`~lipkit.book` (and :mod:`~lipkit.book.tables`,
  :mod:`~lipkit.book.rivals`, :mod:`~lipkit.book.reproduction`),
  :mod:`~lipkit.paper`, :mod:`~lipkit.results`, :mod:`~lipkit.plots`, :mod:`~lipkit.widgets`;
- runs at scale: :mod:`~lipkit.store`, :mod:`~lipkit.sweep`, :mod:`~lipkit.sweep_engines`,
  :mod:`~lipkit.ledger`, :mod:`~lipkit.ledger_files`, :mod:`~lipkit.paper_plan`, :mod:`~lipkit.cli`.
"""

__version__ = "0.2.0"

from lipkit.device import default_device  # noqa: E402
from lipkit.seeding import derive_seed, generator, seeded  # noqa: E402

__all__ = ["__version__", "default_device", "derive_seed", "generator", "seeded"]
