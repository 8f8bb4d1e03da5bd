"""Studies built on tickets: each fits tickets, or their rivals, the same way and caches every record
under a key of what computed it (:class:`lipkit.store.cache.RecordCache`).

- :mod:`lipkit.studies.transfer`: a ticket fitted to another image or task, beside random masks of
  its layer densities and the dense net (chapters 3 and 4);
- :mod:`lipkit.studies.deep_decoder_runs`: the deep decoder at matched parameter counts (chapter 5);
- :mod:`lipkit.studies.fast_tickets`: channel tickets against their rivals, timed (chapter 7);
- :mod:`lipkit.studies.init_tickets` and :mod:`lipkit.studies.init_vs_imp`: masks chosen at
  initialization, and IMP against them under one protocol (chapter 8);
- :mod:`lipkit.studies.cross_task`: restoration tickets trained as classifiers, classification
  tickets as image priors, and the overlap of the two (chapter 9).
"""
