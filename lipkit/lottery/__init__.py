"""Lottery runs: the one driver and its trainers for image priors.

- :mod:`lipkit.lottery.driver`: the one IMP loop (train, prune, rewind, record) over a
  :class:`~lipkit.lottery.driver.Trainer`, resumable, extendable, with baselines as branches off a
  level's masks;
- :mod:`lipkit.lottery.settings`: what a run is, one frozen, checked settings object per kind of run,
  and the command line's options made from it;
- :mod:`lipkit.lottery.identity`: the id a run's records carry and its folder's name;
- :mod:`lipkit.lottery.imp`: single-image IMP (LIP's Algorithm 1) and :class:`~lipkit.lottery.imp.ImpRun`,
  the reader of every run folder;
- :mod:`lipkit.lottery.weight_sharing`: weight-sharing IMP, one ticket for several images
  (Algorithm 2);
- :mod:`lipkit.lottery.classify`: classification IMP, the skip net with a linear head as an image
  classifier (the official code's CIFAR-10 experiment), and masks moved between the two tasks.

Generator IMP, the fourth trainer, is chapter 6's (:mod:`lipkit.gan.imp`).
"""
