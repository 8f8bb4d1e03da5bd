"""Training a GAN with WGAN-GP (the PGGAN recipe), with masks held at zero, and resumable pretraining.

:func:`train_wgangp` trains or fine-tunes a generator G and a critic D with the WGAN-GP loss of
the PGGAN recipe, D: E[D(G(z))] − E[D(x)] + λ·E[(‖∇D(x̂)‖ − 1)²] + ε·E[D(x)²], G: −E[D(G(z))],
holding pruned weights at exactly zero after every step. :func:`pretrain` trains a pair once
into a folder and loads it back on later calls. Generator IMP (:mod:`lipkit.gan.imp`) fine-tunes
with :func:`train_wgangp` at every level.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lipkit.device import resolve_device
from lipkit.pruning.masks import apply_masks, hold
from lipkit.seeding import SCHEME
from lipkit.seeding import generator as stream_generator
from lipkit.store.cache import tensors_digest
from lipkit.store.folder import RunConfigError, RunLock, config_diff, load_tensors, save_state, write_json
from lipkit.store.paths import PretrainFolder


@dataclass(frozen=True)
class WGANSettings:
    """Hyper-parameters of one WGAN-GP run. One iteration is n_critic D steps and one G step.

    Defaults are PGGAN's pretraining recipe (Adam 1e-3, β = (0, 0.99), λ = 10, drift 1e-3);
    LIP fine-tunes with lr 2e-4, 30 epochs over 40 % of the data and a generator batch of 1.
    """

    iterations: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    gp_weight: float = 10.0
    drift: float = 1e-3
    n_critic: int = 1
    gen_batch_size: int | None = None  # None: batch_size

    def __post_init__(self):
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (the critic compares real and generated batches), got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {self.n_critic}")

    @classmethod
    def for_epochs(cls, epochs: float, n_images: int, **kwargs) -> "WGANSettings":
        """Settings whose iteration count covers ``epochs`` passes over ``n_images`` real images."""
        batch = kwargs.get("batch_size", cls.batch_size)
        n_critic = kwargs.get("n_critic", cls.n_critic)
        return cls(iterations=max(1, round(epochs * n_images / (batch * n_critic))), **kwargs)


# --- WGAN-GP --------------------------------------------------------------------------------------
def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """E[(‖∇D(x̂)‖₂ − 1)²] at x̂ uniformly between paired real and generated images (Gulrajani et al.)."""
    eps = torch.rand((real.shape[0], 1, 1, 1), generator=generator, device=generator.device).to(real)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def train_wgangp(generator: nn.Module, critic: nn.Module, images: torch.Tensor, settings: WGANSettings, *,
                 g_masks: Mapping[str, torch.Tensor] | None = None, d_masks: Mapping[str, torch.Tensor] | None = None,
                 seed: int = 0, device=None, progress: bool = False, desc: str = "WGAN-GP") -> dict:
    """Train G and D in place with WGAN-GP for ``settings.iterations`` iterations; fresh Adam each call.

    Args:
        generator: G with a ``latent_shape`` attribute; critic: D, (N, C, H, W) -> (N,).
        images: real images (N, C, H, W) on G's output scale ([-1, 1]); visited in shuffled
            epochs, one permutation per epoch. ``seed``'s streams give the data order, the latents
            and the penalty's interpolation weights (:mod:`lipkit.seeding`).
        g_masks, d_masks: name -> {0,1} masks over :func:`lipkit.pruning.masks.prunable_weights`; those weights start
            at and stay exactly zero.

    Returns:
        dict of per-iteration numpy histories: ``d_loss``, ``g_loss`` and ``wasserstein``
        (E[D(x)] − E[D(G(z))], the critic's distance estimate), and ``seconds``.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be shaped (N, C, H, W), got {tuple(images.shape)}")
    if images.shape[0] < settings.batch_size:
        raise ValueError(f"{images.shape[0]} images are fewer than one batch of {settings.batch_size}")
    latent = getattr(generator, "latent_shape", None)
    if latent is None:
        raise TypeError(f"{type(generator).__name__} has no latent_shape attribute")
    dev = resolve_device(device)
    generator.to(dev).train()
    critic.to(dev).train()
    g_pairs, d_pairs = apply_masks(generator, g_masks or {}), apply_masks(critic, d_masks or {})
    opt_g = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=settings.betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=settings.lr, betas=settings.betas)
    order_gen = stream_generator(seed, "gan_data_order")
    latent_gen = stream_generator(seed, "gan_latents", device=dev)
    penalty_gen = stream_generator(seed, "gan_penalty", device=dev)
    data = images.to(dev)
    n, b = data.shape[0], settings.batch_size
    gen_b = settings.gen_batch_size or b
    order, cursor = torch.randperm(n, generator=order_gen), 0
    hist = torch.zeros(3, settings.iterations, device=dev)
    t0 = time.perf_counter()
    for it in tqdm(range(settings.iterations), desc=desc, disable=not progress, leave=False):
        for _ in range(settings.n_critic):
            if cursor + b > n:  # a new epoch: reshuffle, drop the incomplete last batch
                order, cursor = torch.randperm(n, generator=order_gen), 0
            real = data[order[cursor:cursor + b].to(dev)]
            cursor += b
            with torch.no_grad():
                fake = generator(torch.randn((b, *latent), generator=latent_gen, device=dev))
            d_real, d_fake = critic(real), critic(fake)
            penalty = gradient_penalty(critic, real, fake, penalty_gen)
            d_loss = (d_fake.mean() - d_real.mean() + settings.gp_weight * penalty
                      + settings.drift * d_real.pow(2).mean())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            hold(d_pairs)
        critic.requires_grad_(False)  # the G step needs gradients through D, not for D
        g_loss = -critic(generator(torch.randn((gen_b, *latent), generator=latent_gen, device=dev))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        hold(g_pairs)
        critic.requires_grad_(True)
        hist[:, it] = torch.stack([d_loss.detach(), g_loss.detach(), (d_real - d_fake).mean().detach()])
    generator.eval()
    critic.eval()
    h = hist.cpu().numpy()
    return dict(d_loss=h[0], g_loss=h[1], wasserstein=h[2], seconds=time.perf_counter() - t0)


def state_of(net: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """A CPU copy of ``net``'s parameters and buffers."""
    return OrderedDict((k, v.detach().cpu().clone()) for k, v in net.state_dict().items())


def pair_digest(generator: nn.Module, critic: nn.Module) -> str:
    """16 hex digits of the sha256 of G's and D's weights and buffers: where a run starts from."""
    return tensors_digest([*((f"G.{k}", v) for k, v in generator.state_dict().items()),
                           *((f"D.{k}", v) for k, v in critic.state_dict().items())])[:16]


def pretrain_config(generator: nn.Module, critic: nn.Module, images: torch.Tensor, settings: "WGANSettings", *,
                    seed: int = 0) -> dict:
    """What a pretraining is (``pretrain.json``'s ``config``, which names its folder:
    :func:`lipkit.lottery.identity.folder_name`): the architectures, the settings, the seed, and the
    sha256 of the starting weights of G and D and of the images."""
    return json.loads(json.dumps(dict(generator=dict(generator.config), critic=dict(critic.config),
                                      settings=asdict(settings), seed=int(seed), n_images=int(images.shape[0]),
                                      seeding=SCHEME, start=pair_digest(generator, critic),
                                      images=tensors_digest([("images", images)])[:16])))


def pretrain(generator: nn.Module, critic: nn.Module, images: torch.Tensor, settings: WGANSettings, *,
             run_dir: str | os.PathLike, seed: int = 0, device=None, progress: bool = True) -> dict:
    """Train G and D from their current weights with WGAN-GP, or load the result of an identical earlier run.

    Writes ``G.safetensors``, ``D.safetensors`` and ``pretrain.json`` (settings, architectures,
    seed, final Wasserstein estimate, seconds) to ``run_dir``. A folder trained with other
    settings is refused (:class:`lipkit.store.folder.RunConfigError`). Returns the JSON record.
    """
    run_dir = Path(run_dir)
    config = pretrain_config(generator, critic, images, settings, seed=seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    files = PretrainFolder(run_dir)
    with RunLock(run_dir):
        record_file = files.record
        if record_file.exists():
            record = json.loads(record_file.read_text())
            diffs = config_diff(record["config"], config)
            if diffs:
                raise RunConfigError(f"{run_dir} holds a GAN trained with other settings: " + "; ".join(diffs)
                                     + ". Use another folder, or delete this one.")
            generator.load_state_dict(load_tensors(files.state("G")))
            critic.load_state_dict(load_tensors(files.state("D")))
            return record
        history = train_wgangp(generator, critic, images, settings, seed=seed, device=device, progress=progress,
                               desc="pretraining")
        save_state(files.state("G"), state_of(generator))
        save_state(files.state("D"), state_of(critic))
        record = dict(config=config, final_wasserstein=float(np.mean(history["wasserstein"][-50:])),
                      wasserstein=[float(v) for v in history["wasserstein"]], seconds=round(history["seconds"], 2))
        write_json(record_file, record)
        return record
