"""DCGAN generators and critics (Radford et al. 2016, the PyTorch tutorial topology), and the
pretrained face DCGAN shipped in the ``gan-face-generate`` wheel.

One family covers the book's two sizes: 32×32 (the MNIST prior trained in chapter 6) and 64×64
(the face generator). The generator's layer indices match the tutorial's ``main`` Sequential, so
its state dicts load as they are.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SIZES = (32, 64)
FACE_PACKAGE = "gan-face-generate==1.1.1"


def _levels(size: int) -> int:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES} (output side in px), got {size}")
    return int(math.log2(size)) - 2  # 4×4 after the first layer, then one doubling per layer


class DCGANGenerator(nn.Module):
    """z (N, nz) or (N, nz, 1, 1) -> image (N, nc, size, size) in (-1, 1).

    ConvTranspose 4×4 layers with BatchNorm and ReLU, tanh at the end; channels ngf·2^k halve per
    layer down to ngf, then nc. size 32: nz → 4ngf → 2ngf → ngf → nc; size 64 adds an 8ngf layer.

    Example:
        >>> g = DCGANGenerator(nz=32, ngf=16, nc=1, size=32)
        >>> g(torch.zeros(2, 32)).shape, sum(p.numel() for p in g.parameters())
        (torch.Size([2, 1, 32, 32]), 74208)
    """

    def __init__(self, nz: int = 32, ngf: int = 16, nc: int = 1, size: int = 32):
        super().__init__()
        levels = _levels(size)
        chans = [ngf * 2 ** k for k in reversed(range(levels))]  # e.g. [64, 32, 16] for ngf 16, size 32
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, chans[0], 4, 1, 0, bias=False), nn.BatchNorm2d(chans[0]),
                                   nn.ReLU(True)]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.latent_shape = (nz, 1, 1)
        self.config = dict(arch="dcgan_generator", nz=nz, ngf=ngf, nc=nc, size=size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.main(z)


class DCGANCritic(nn.Module):
    """image (N, nc, size, size) -> score (N,): the WGAN-GP critic of the same family.

    Conv 4×4 stride-2 layers with LeakyReLU(0.2) and biases, no BatchNorm (the gradient penalty
    needs per-sample gradients), a 4×4 conv to one score at the end.

    Example:
        >>> d = DCGANCritic(ndf=16, nc=1, size=32)
        >>> d(torch.zeros(3, 1, 32, 32)).shape, sum(p.numel() for p in d.parameters())
        (torch.Size([3]), 42353)
    """

    def __init__(self, ndf: int = 16, nc: int = 1, size: int = 32):
        super().__init__()
        levels = _levels(size)
        chans = [ndf * 2 ** k for k in range(levels)]  # e.g. [16, 32, 64]
        layers: list[nn.Module] = [nn.Conv2d(nc, chans[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(chans[-1], 1, 4, 1, 0)]
        self.main = nn.Sequential(*layers)
        self.config = dict(arch="dcgan_critic", ndf=ndf, nc=nc, size=size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


def from_gan_face_generate() -> DCGANGenerator:
    """The pretrained 64×64 RGB face DCGAN of the ``gan-face-generate`` wheel (nz=100, ngf=64), on the CPU.

    3,576,704 parameters, generator only (no critic, no data ship with it). Its training data is
    Microsoft's synthetic DigiFace-1M, licensed for non-commercial research only. Install with
    ``pip install --no-deps gan-face-generate==1.1.1`` (its declared dependencies would replace
    this project's torch).
    """
    import importlib.resources

    try:
        files = importlib.resources.files("gan_face_generate")
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the face DCGAN comes from the gan-face-generate wheel, which is not installed; install it with "
            f"`pip install --no-deps {FACE_PACKAGE}` (--no-deps: only its weights file is used)"
        ) from None
    weights = files / "weights.tar"
    if not weights.is_file():
        raise FileNotFoundError(f"gan_face_generate is installed but has no weights.tar; reinstall {FACE_PACKAGE}")
    with importlib.resources.as_file(weights) as path:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "netG_state_dict" not in checkpoint:
        raise ValueError(f"{path} has no netG_state_dict (keys: {sorted(checkpoint)}); is this version {FACE_PACKAGE}?")
    net = DCGANGenerator(nz=100, ngf=64, nc=3, size=64)
    net.load_state_dict(checkpoint["netG_state_dict"])
    return net.eval()
