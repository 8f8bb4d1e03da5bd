"""Progressive GAN (Karras et al. 2018) as in FAIR's pytorch_GAN_zoo, and its checkpoint loader.

The prior of LIP's and Jalal et al.'s CelebA-HQ experiments is pytorch_GAN_zoo's ``celebAHQ-256``
PGAN. FAIR's own code no longer constructs under current torch, so lipkit re-implements the two
networks with the same parameter names (``formatLayer.module.weight``, ``scaleLayers.3.1.module.bias``,
...) and the same equalized-learning-rate semantics:

- weights are stored at N(0, 1) scale; at run time the output of the inner Conv2d/Linear,
  **bias included**, is multiplied by c = √(2 / fan_in), with gain √2 for every layer (toRGB and
  the first dense layer included), unlike NVIDIA's code;
- pixel norm x / √(mean_c x² + 1e-8) on z and after every generator layer; LeakyReLU(0.2);
  nearest 2× upsampling; no output activation for the WGAN-GP model (tanh for MSE/DCGAN losses);
- the discriminator ends with a minibatch-stddev channel (groups of 4), a 3×3 conv, a dense
  layer and a linear decision.

LIP prunes the inner ``Conv2d.weight`` of every equalized conv, ranking the raw stored values.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CELEBAHQ_256_DEPTHS = (512, 512, 512, 512, 256, 128, 64)
CELEBAHQ_256_FILE = "celebaHQ_s6_i80000-6196db68.pth"
CELEBAHQ_256_URL = "https://dl.fbaipublicfiles.com/gan_zoo/PGAN/" + CELEBAHQ_256_FILE
CONFIG_CLASS = "models.utils.config.BaseConfig"  # what the checkpoint pickles its config as
WHICH = ("netG", "avgG", "netD")


class _Equalized(nn.Module):
    """An inner layer whose whole output (bias included, as FAIR does) is scaled by √(2/fan_in)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        nn.init.normal_(module.weight, 0.0, 1.0)
        nn.init.zeros_(module.bias)
        self.scale = math.sqrt(2.0 / module.weight[0].numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) * self.scale


def equalized_conv(c_in: int, c_out: int, kernel: int, padding: int = 0) -> _Equalized:
    return _Equalized(nn.Conv2d(c_in, c_out, kernel, padding=padding))


def equalized_linear(f_in: int, f_out: int) -> _Equalized:
    return _Equalized(nn.Linear(f_in, f_out))


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / √(mean over channels of x² + eps), per sample and pixel."""
    return x * (x.pow(2).mean(dim=1, keepdim=True) + eps).rsqrt()


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append one channel: the mean over features of the std over each group of samples.

    Groups are strided through the batch (sample i belongs to group i mod N/group), as in FAIR's
    code; a batch not divisible by ``group`` forms one group; a group of one gets zeros.
    """
    n, c, h, w = x.shape
    group = min(n, group)
    if n % group:
        group = n
    if group == 1:
        extra = x.new_zeros(n, 1, h, w)
    else:
        groups = n // group
        std = (x.view(group, groups, c, h, w).var(0, unbiased=True) + 1e-8).sqrt()
        per_group = std.view(groups, -1).mean(1)
        extra = per_group.view(1, groups, 1, 1, 1).expand(group, groups, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, extra], dim=1)


class PGGANGenerator(nn.Module):
    """z (N, latent_dim) -> image (N, out_channels, 4·2^(S-1), same) for S = len(depths) scales.

    ``depths`` are the channels of each scale: (512, 512, 512, 512, 256, 128, 64) is the
    celebAHQ-256 model (23,051,989 parameters). Only the last toRGB layer is used (alpha = 0, a
    finished model); the others are kept because checkpoints hold them.

    Example:
        >>> g = PGGANGenerator(depths=(16, 16, 8), latent_dim=8)
        >>> g(torch.randn(2, 8)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(self, depths: Sequence[int] = CELEBAHQ_256_DEPTHS, latent_dim: int = 512, out_channels: int = 3,
                 leaky: float = 0.2, normalize: bool = True, tanh: bool = False):
        super().__init__()
        depths = [int(d) for d in depths]
        if not depths:
            raise ValueError("depths needs at least one scale")
        self.formatLayer = equalized_linear(latent_dim, 16 * depths[0])
        self.groupScale0 = nn.ModuleList([equalized_conv(depths[0], depths[0], 3, padding=1)])
        self.scaleLayers = nn.ModuleList()
        self.toRGBLayers = nn.ModuleList([equalized_conv(depths[0], out_channels, 1)])
        for prev, new in zip(depths[:-1], depths[1:]):
            self.scaleLayers.append(nn.ModuleList([equalized_conv(prev, new, 3, padding=1),
                                                   equalized_conv(new, new, 3, padding=1)]))
            self.toRGBLayers.append(equalized_conv(new, out_channels, 1))
        self.leaky, self.normalize, self.tanh = leaky, normalize, tanh
        self.latent_shape = (latent_dim,)
        self.config = dict(arch="pggan_generator", depths=depths, latent_dim=latent_dim, out_channels=out_channels,
                           leaky=leaky, normalize=normalize, tanh=tanh)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(x, self.leaky)
        return pixel_norm(x) if self.normalize else x

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            z = pixel_norm(z)
        x = self._act(self.formatLayer(z.flatten(1)))
        # FAIR normalises the reshaped 4×4 map again: per pixel now, not per vector
        x = x.view(x.shape[0], -1, 4, 4)
        x = pixel_norm(x) if self.normalize else x
        for conv in self.groupScale0:
            x = self._act(conv(x))
        for group in self.scaleLayers:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            for conv in group:
                x = self._act(conv(x))
        x = self.toRGBLayers[-1](x)
        return torch.tanh(x) if self.tanh else x


class PGGANDiscriminator(nn.Module):
    """image (N, in_channels, side, side) -> score (N,), the mirror of :class:`PGGANGenerator`.

    Example:
        >>> d = PGGANDiscriminator(depths=(16, 16, 8))
        >>> d(torch.randn(4, 3, 16, 16)).shape
        torch.Size([4])
    """

    def __init__(self, depths: Sequence[int] = CELEBAHQ_256_DEPTHS, in_channels: int = 3, leaky: float = 0.2,
                 minibatch_std: bool = True, decision_size: int = 1):
        super().__init__()
        depths = [int(d) for d in depths]
        self.decisionLayer = equalized_linear(depths[0], decision_size)
        self.fromRGBLayers = nn.ModuleList([equalized_conv(in_channels, depths[0], 1)])
        self.scaleLayers = nn.ModuleList()
        for prev, new in zip(depths[:-1], depths[1:]):
            self.scaleLayers.append(nn.ModuleList([equalized_conv(new, new, 3, padding=1),
                                                   equalized_conv(new, prev, 3, padding=1)]))
            self.fromRGBLayers.append(equalized_conv(in_channels, new, 1))
        self.groupScaleZero = nn.ModuleList([equalized_conv(depths[0] + int(minibatch_std), depths[0], 3, padding=1),
                                             equalized_linear(16 * depths[0], depths[0])])
        self.leaky, self.minibatch_std = leaky, minibatch_std
        self.config = dict(arch="pggan_discriminator", depths=depths, in_channels=in_channels, leaky=leaky,
                           minibatch_std=minibatch_std, decision_size=decision_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.fromRGBLayers[-1](x), self.leaky)
        for group in reversed(self.scaleLayers):  # highest resolution first
            for conv in group:
                x = F.leaky_relu(conv(x), self.leaky)
            x = F.avg_pool2d(x, 2)
        if self.minibatch_std:
            x = minibatch_stddev(x)
        x = F.leaky_relu(self.groupScaleZero[0](x), self.leaky)
        x = F.leaky_relu(self.groupScaleZero[1](x.flatten(1)), self.leaky)
        out = self.decisionLayer(x)
        return out[:, 0] if out.shape[1] == 1 else out


# --- the pytorch_GAN_zoo checkpoint -----------------------------------------------------------------
class PGANZooConfig:
    """Stands in for pytorch_GAN_zoo's ``BaseConfig`` when unpickling a checkpoint: attributes only."""

    def __getattr__(self, name):
        raise AttributeError(f"the checkpoint's config has no {name!r}")


def _config_dict(config) -> dict:
    if isinstance(config, dict):
        return dict(config)
    return dict(vars(config))


def _canonical_keys(state: dict) -> "OrderedDict[str, torch.Tensor]":
    """FAIR's names: drop a DataParallel ``module.`` prefix; give legacy keys their ``.module.``."""
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        head, _, leaf = key.rpartition(".")
        if leaf in ("weight", "bias") and not head.endswith(".module") and head:
            key = f"{head}.module.{leaf}"
        out[key] = value
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_checkpoint_path() -> Path:
    """Where torch.hub (and so Jalal's and LIP's code) caches the celebAHQ-256 file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / CELEBAHQ_256_FILE


def _read(path: Path, trust_checkpoint: bool) -> dict:
    if not trust_checkpoint:
        # weights_only loading, with the one non-tensor class of the file allowlisted under its name
        with torch.serialization.safe_globals([(PGANZooConfig, CONFIG_CLASS)]):
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # re-raised with what to do about it
                raise ValueError(
                    f"{path} could not be read as a pytorch_GAN_zoo checkpoint with weights_only=True ({err}). "
                    "If you trust the file, pass trust_checkpoint=True to unpickle it fully."
                ) from err
    # full unpickling: provide the module path the pickle names, for the duration of the load only
    names = ["models", "models.utils", "models.utils.config"]
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for n in names:
            sys.modules[n] = types.ModuleType(n)
        sys.modules["models.utils.config"].BaseConfig = PGANZooConfig
        return torch.load(path, map_location="cpu", weights_only=False)
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod


def load_pgan_zoo_checkpoint(path: str | os.PathLike | None = None, *, which: str = "netG",
                             verify_hash: bool = True, sha256_prefix: str | None = None,
                             trust_checkpoint: bool = False) -> nn.Module:
    """A network of a pytorch_GAN_zoo PGAN checkpoint (``{config, netG, netD[, avgG]}``), on the CPU.

    Args:
        path: the ``.pth`` file; default: the torch-hub cache, :func:`default_checkpoint_path`.
        which: "netG" (the generator LIP uses), "avgG" (its moving average, Jalal et al.'s choice)
            or "netD" (the discriminator, needed to fine-tune).
        verify_hash: check that the file's SHA-256 starts with ``sha256_prefix``, by default the
            hex digits after the last ``-`` of the file name (torch-hub's convention: 6196db68).
        trust_checkpoint: unpickle fully instead of ``weights_only`` (only for a file you trust).

    Returns:
        :class:`PGGANGenerator` or :class:`PGGANDiscriminator` built from the checkpoint's config,
        in eval mode.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    path = Path(path) if path is not None else default_checkpoint_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"no PGAN checkpoint at {path}. The celebAHQ-256 model is the file {CELEBAHQ_256_FILE} (about 277 MB), "
            f"published by pytorch_GAN_zoo at {CELEBAHQ_256_URL}; copy it to {default_checkpoint_path()} "
            "(the torch-hub cache, where Jalal et al.'s and LIP's code put it) or pass its path."
        )
    if verify_hash:
        expected = sha256_prefix
        if expected is None:
            match = re.search(r"-([0-9a-f]{6,64})\.[^.]+$", path.name)
            if not match:
                raise ValueError(f"cannot verify {path.name}: its name carries no hash (name-<sha256 prefix>.pth); "
                                 "pass sha256_prefix=... or verify_hash=False")
            expected = match.group(1)
        actual = _sha256(path)
        if not actual.startswith(expected.lower()):
            raise ValueError(f"{path} has SHA-256 {actual[:16]}..., expected a prefix {expected}: "
                             "the file is corrupt or not the checkpoint its name says")
    checkpoint = _read(path, trust_checkpoint)
    if not isinstance(checkpoint, dict) or "config" not in checkpoint:
        raise ValueError(f"{path} is not a pytorch_GAN_zoo checkpoint: expected a dict with config, netG, netD")
    if which not in checkpoint:
        raise KeyError(f"{path} has no {which!r}; it holds {sorted(k for k in checkpoint if k != 'config')}")
    return _build(_config_dict(checkpoint["config"]), which, _canonical_keys(checkpoint[which]), path)


def _build(cfg: dict, which: str, state: dict, path: Path) -> nn.Module:
    missing = [k for k in ("depthScale0", "depthOtherScales", "latentVectorDim", "dimOutput") if k not in cfg]
    if missing:
        raise ValueError(f"the config in {path} lacks {missing}")
    if cfg.get("categoryVectorDim", 0):
        raise ValueError("conditional PGANs (categoryVectorDim > 0) are not supported")
    if not cfg.get("equalizedlR", True):
        raise ValueError("only equalized-learning-rate PGANs (equalizedlR=True) are supported")
    if cfg.get("alpha", 0):
        raise ValueError(f"the checkpoint is mid-transition (alpha={cfg['alpha']}); use a finished scale (alpha=0)")
    depths = [int(cfg["depthScale0"])] + [int(d) for d in cfg["depthOtherScales"]]
    leaky = float(cfg.get("leakyReluLeak", 0.2))
    if which == "netD":
        net = PGGANDiscriminator(depths, in_channels=int(cfg["dimOutput"]), leaky=leaky,
                                 minibatch_std=bool(cfg.get("miniBatchStdDev", False)))
    else:
        net = PGGANGenerator(depths, latent_dim=int(cfg["latentVectorDim"]), out_channels=int(cfg["dimOutput"]),
                             leaky=leaky, normalize=bool(cfg.get("perChannelNormalization", True)),
                             tanh=cfg.get("lossCriterion") in ("MSE", "DCGAN"))
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{which} in {path} does not fit the network built from its config: "
                         f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return net.eval()
