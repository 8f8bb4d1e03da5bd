"""Chapter 6 in one folder: a pretrained generator as the prior of robust compressive sensing, and
its lottery tickets.

- :mod:`lipkit.gan.wgan`: WGAN-GP training with masks held at zero, and resumable pretraining;
- :mod:`lipkit.gan.imp`: generator IMP, the lottery driver's trainer for a (G, D) pair, and
  :class:`~lipkit.gan.imp.GanImpRun`, its run folder;
- :mod:`lipkit.gan.mom`: the median-of-means tournament and least squares in the latent space;
- :mod:`lipkit.gan.recoveries`: each recovery as a record, cached by what made it;
- :mod:`lipkit.gan.data`: folders of images (the digits, MNIST-5k, are :mod:`lipkit.datasets`).

The generators themselves are models (:mod:`lipkit.models.dcgan`, :mod:`lipkit.models.pggan`) and the
measurements an operator (:class:`lipkit.operators.CompressiveSensing`).
"""
