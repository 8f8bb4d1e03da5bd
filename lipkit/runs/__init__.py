"""Runs at scale and what they leave: sweeps of run folders and where they run, the ledger of
paper-scale levels and the paper plan that fills it (the glued numbers recorded from paper-profile
builds are the book's, :mod:`lipkit.book.results`).

- :mod:`lipkit.runs.sweep`: a sweep file's grid expanded into jobs (one run folder each), their states;
- :mod:`lipkit.runs.sweep_engines`: where a sweep's jobs run (worker processes here, or Ray);
- :mod:`lipkit.runs.ledger` and :mod:`lipkit.runs.ledger_files`: paper-scale IMP levels with their
  provenance, and their files;
- :mod:`lipkit.runs.paper_plan`: Fig. 2's runs, level by level within a GPU window's budget;
"""
