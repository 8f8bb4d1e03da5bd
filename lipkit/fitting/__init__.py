"""Fitting one prior network, or several seeds of it, to one observation.

- :mod:`lipkit.fitting.loop`: :func:`~lipkit.fitting.loop.fit`, the one fitting loop (DIP's: Adam,
  input noise, the output's moving average, backtracking, held masks);
- :mod:`lipkit.fitting.seed_axis`: what the loop steps, one network or S stacked under ``vmap``;
- :mod:`lipkit.fitting.batched`: several seeds at once (stacked on a GPU, worker processes on a CPU);
- :mod:`lipkit.fitting.tracking`: what the loop records at each step; :mod:`lipkit.fitting.early_stopping`:
  ES-WMV; :mod:`lipkit.fitting.records`: what a fit returns and its per-fit record;
- :mod:`lipkit.fitting.settings`: the settings and the paper's presets (the options that trade
  exactness for speed, and the process's memory, are :mod:`lipkit.runtime`);
- :mod:`lipkit.fitting.memory` and :mod:`lipkit.fitting.flops`: what a fit needs, before it runs.
"""
