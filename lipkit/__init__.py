"""lipkit: Lottery Image Priors (Wu, Chen, Jiang, Wang, TMLR 2023) as an executable book.

Modules, one concept each:

- :mod:`lipkit.models`: the DIP ``skip`` net and the deep decoder.
- :mod:`lipkit.operators`: degradations (denoising, inpainting, super-resolution).
- :mod:`lipkit.fit`: the one fitting loop every method uses.
- :mod:`lipkit.seeding`: every random stream, derived from a user seed and the stream's role.
- :mod:`lipkit.metrics`: PSNR, RGB and DIP's Y-channel SR protocol.
- :mod:`lipkit.data`: benchmark images by name, checksummed.
- :mod:`lipkit.plots`, :mod:`lipkit.widgets`: figures and interactive views for the book.
"""

__version__ = "0.2.0"

from lipkit.device import default_device  # noqa: E402
from lipkit.seeding import derive_seed, generator, seeded  # noqa: E402

__all__ = ["__version__", "default_device", "derive_seed", "generator", "seeded"]
