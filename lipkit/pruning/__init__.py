"""Pruning: which weights a ticket keeps.

- :mod:`lipkit.pruning.masks`: masks of conv weights, global and layer-wise magnitude and random
  pruning, densities and overlaps;
- :mod:`lipkit.pruning.channels`: whole channels (structured tickets) and compacted networks;
- :mod:`lipkit.pruning.at_init`: masks chosen at initialization (OES, SNIP, GraSP, SynFlow, random);
- :mod:`lipkit.pruning.tickets`: a ticket (θ0 and masks) as a file, and the network it builds.
"""
