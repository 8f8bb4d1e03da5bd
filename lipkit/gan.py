"""GAN training (WGAN-GP) and iterative magnitude pruning of a pretrained generator, resumable.

:func:`train_wgangp` trains or fine-tunes a generator G and a critic D with the WGAN-GP loss of
the PGGAN recipe, D: E[D(G(z))] − E[D(x)] + λ·E[(‖∇D(x̂)‖ − 1)²] + ε·E[D(x)²], G: −E[D(G(z))],
holding pruned weights at exactly zero after every step.

:func:`gan_imp` is LIP's IMP for generators (``PGAN_random_IMP.py``, without its bugs): starting
from the pretrained G and D, for rounds k = 0, 1, ..., R

1. fine-tune G and D from pretrained ⊙ masks_k on the fine-tuning images, masks held;
2. the fine-tuned, masked G is the generator evaluated at sparsity s_k (k = 0: dense, fine-tuned);
3. prune ``rate`` of the remaining conv weights of G and, separately, of D (one global ranking
   each, by magnitude of the fine-tuned weights; ``method="random"`` is the baseline), then
   rewind every parameter and buffer to the pretrained ones.

Not copied from the official script: its hard-coded random pruning (magnitude is the default
here) and the extra 20 % random pruning at evaluation. Everything is written to a run folder after
each round; running again with the same arguments resumes after the last finished round.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

import lipkit
from lipkit.device import resolve_device
from lipkit.pruning import check_rate, global_prune, mask_sparsity
from lipkit.seeding import SCHEME, derive_seed
from lipkit.seeding import generator as stream_generator
from lipkit.store.folder import (RunConfigError, RunLock, config_diff, load_masks, open_config, save_masks, save_state,
                                 write_json)
from lipkit.store.paths import GanImpFolder, PretrainFolder
from lipkit.tickets import Ticket

METHODS = ("magnitude", "random")


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


# --- prunable weights, masks, sparsity ----------------------------------------------------------
def prunable_weights(net: nn.Module) -> "OrderedDict[str, nn.Parameter]":
    """Parameter name -> weight of every Conv2d and ConvTranspose2d: what LIP prunes in G and D.

    Linear layers (PGGAN's format and decision layers), biases and BatchNorm stay dense.
    """
    return OrderedDict((f"{name}.weight", m.weight) for name, m in net.named_modules()
                       if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def dense_masks(net: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """All-ones masks over :func:`prunable_weights`, on the CPU."""
    return OrderedDict((n, torch.ones(w.shape)) for n, w in prunable_weights(net).items())


def apply_masks(net: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights of ``net`` in place (names from :func:`prunable_weights`)."""
    params = dict(net.named_parameters())
    with torch.no_grad():
        for name, m in masks.items():
            if name not in params:
                raise KeyError(f"mask for {name!r} matches no parameter of {type(net).__name__}")
            if tuple(m.shape) != tuple(params[name].shape):
                raise ValueError(f"mask for {name!r} is {tuple(m.shape)} but the weight is {tuple(params[name].shape)}")
            params[name].mul_(m.to(params[name].device, params[name].dtype))


def measured_sparsity(net: nn.Module) -> dict:
    """What fraction of ``net``'s prunable weights is exactly zero, and how many parameters remain.

    Returns ``sparsity`` (zero fraction of the conv weights), ``nonzero`` and ``total`` conv
    weights, and ``params_left``: nonzero conv weights plus every other parameter.
    """
    weights = prunable_weights(net)
    total = sum(w.numel() for w in weights.values())
    if total == 0:
        raise ValueError(f"{type(net).__name__} has no Conv2d or ConvTranspose2d weights to measure")
    nonzero = sum(int((w != 0).sum()) for w in weights.values())
    ids = {id(w) for w in weights.values()}
    other = sum(p.numel() for p in net.parameters() if id(p) not in ids)
    return dict(sparsity=1 - nonzero / total, nonzero=nonzero, total=total, params_left=nonzero + other)


# --- WGAN-GP --------------------------------------------------------------------------------------
def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """E[(‖∇D(x̂)‖₂ − 1)²] at x̂ uniformly between paired real and generated images (Gulrajani et al.)."""
    eps = torch.rand((real.shape[0], 1, 1, 1), generator=generator, device=generator.device).to(real)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def _hold(pairs) -> None:
    with torch.no_grad():
        for p, m in pairs:
            p.mul_(m)


def _mask_pairs(net: nn.Module, masks, device):
    if not masks:
        return []
    apply_masks(net, masks)
    params = dict(net.named_parameters())
    return [(params[n], m.to(device, params[n].dtype)) for n, m in masks.items()]


def train_wgangp(generator: nn.Module, critic: nn.Module, images: torch.Tensor, settings: WGANSettings, *,
                 g_masks: Mapping[str, torch.Tensor] | None = None, d_masks: Mapping[str, torch.Tensor] | None = None,
                 seed: int = 0, device=None, progress: bool = False, desc: str = "WGAN-GP") -> dict:
    """Train G and D in place with WGAN-GP for ``settings.iterations`` iterations; fresh Adam each call.

    Args:
        generator: G with a ``latent_shape`` attribute; critic: D, (N, C, H, W) -> (N,).
        images: real images (N, C, H, W) on G's output scale ([-1, 1]); visited in shuffled
            epochs, one permutation per epoch. ``seed``'s streams give the data order, the latents
            and the penalty's interpolation weights (:mod:`lipkit.seeding`).
        g_masks, d_masks: name -> {0,1} masks over :func:`prunable_weights`; those weights start
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
    g_pairs, d_pairs = _mask_pairs(generator, g_masks, dev), _mask_pairs(critic, d_masks, dev)
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
            _hold(d_pairs)
        critic.requires_grad_(False)  # the G step needs gradients through D, not for D
        g_loss = -critic(generator(torch.randn((gen_b, *latent), generator=latent_gen, device=dev))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        _hold(g_pairs)
        critic.requires_grad_(True)
        hist[:, it] = torch.stack([d_loss.detach(), g_loss.detach(), (d_real - d_fake).mean().detach()])
    generator.eval()
    critic.eval()
    h = hist.cpu().numpy()
    return dict(d_loss=h[0], g_loss=h[1], wasserstein=h[2], seconds=time.perf_counter() - t0)


def _state(net: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k, v.detach().cpu().clone()) for k, v in net.state_dict().items())


def pretrain(generator: nn.Module, critic: nn.Module, images: torch.Tensor, settings: WGANSettings, *,
             run_dir: str | os.PathLike, seed: int = 0, device=None, progress: bool = True) -> dict:
    """Train G and D from their current weights with WGAN-GP, or load the result of an identical earlier run.

    Writes ``G.safetensors``, ``D.safetensors`` and ``pretrain.json`` (settings, architectures,
    seed, final Wasserstein estimate, seconds) to ``run_dir``. A folder trained with other
    settings is refused (:class:`lipkit.store.folder.RunConfigError`). Returns the JSON record.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(dict(generator=dict(generator.config), critic=dict(critic.config),
                                        settings=asdict(settings), seed=int(seed), n_images=int(images.shape[0]),
                                        seeding=SCHEME)))
    files = PretrainFolder(run_dir)
    with RunLock(run_dir):
        record_file = files.record
        if record_file.exists():
            record = json.loads(record_file.read_text())
            diffs = config_diff(record["config"], config)
            if diffs:
                raise RunConfigError(f"{run_dir} holds a GAN trained with other settings: " + "; ".join(diffs)
                                     + ". Use another folder, or delete this one.")
            generator.load_state_dict(load_file(str(files.state("G"))))
            critic.load_state_dict(load_file(str(files.state("D"))))
            return record
        history = train_wgangp(generator, critic, images, settings, seed=seed, device=device, progress=progress,
                               desc="pretraining")
        save_state(files.state("G"), _state(generator))
        save_state(files.state("D"), _state(critic))
        record = dict(config=config, final_wasserstein=float(np.mean(history["wasserstein"][-50:])),
                      wasserstein=[float(v) for v in history["wasserstein"]], seconds=round(history["seconds"], 2))
        write_json(record_file, record)
        return record


# --- IMP for generators -------------------------------------------------------------------------------


def _weights(net: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((n, w.detach().float().cpu()) for n, w in prunable_weights(net).items())


class GanImpRun:
    """A GAN-IMP run folder: config, pretrained weights, and per method and round the masks, the
    fine-tuned G and D, and a JSON record (measured sparsities, training curves, seconds)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir)
        self.folder = GanImpFolder(run_dir)
        if not self.folder.config.exists():
            raise FileNotFoundError(f"{self.dir} is not a GAN-IMP run folder (no config.json)")
        self.config = json.loads(self.folder.config.read_text())

    def _check(self, method: str) -> None:
        if method not in self.config["methods"]:
            raise KeyError(f"method {method!r} was not run; the run has {self.config['methods']}")

    def record(self, method: str, k: int) -> dict:
        self._check(method)
        f = self.folder.record(method, k)
        if not f.exists():
            raise FileNotFoundError(f"round {k} of {method} is not finished in {self.dir}")
        return json.loads(f.read_text())

    def records(self, method: str) -> list[dict]:
        """The finished rounds of ``method``, round 0 (dense, fine-tuned) first."""
        out = []
        for k in range(self.config["rounds"] + 1):
            try:
                out.append(self.record(method, k))
            except FileNotFoundError:
                break
        return out

    def masks(self, method: str, k: int, net: str = "G") -> "OrderedDict[str, torch.Tensor]":
        self._check(method)
        return load_masks(self.folder.masks(method, net, k))

    def load_into(self, net: nn.Module, method: str, k: int, which: str = "G") -> nn.Module:
        """Load the fine-tuned weights of round ``k`` (masks applied) into ``net``; returns it in eval mode."""
        self._check(method)
        net.load_state_dict(load_file(str(self.folder.finetuned(method, which, k))))
        return net.eval()

    def pretrained_into(self, net: nn.Module, which: str = "G") -> nn.Module:
        net.load_state_dict(load_file(str(self.folder.pretrained(which))))
        return net.eval()

    def ticket(self, generator: nn.Module, method: str, k: int) -> Ticket:
        """Round ``k``'s generator ticket: its masks with the pretrained weights to rewind to."""
        masks = self.masks(method, k)
        rewind = load_file(str(self.folder.pretrained("G")))
        rec = self.record(method, k)
        return Ticket(masks, OrderedDict(rewind), dict(arch=dict(generator.config), round=k, method=method,
                                                      conv_sparsity=mask_sparsity(masks), rate=self.config["rate"],
                                                      measured=rec["G"], lipkit_version=lipkit.__version__))


def gan_imp(generator: nn.Module, critic: nn.Module, images: torch.Tensor, *, rounds: int, run_dir: str | os.PathLike,
            finetune: WGANSettings, rate: float = 0.2, methods: Iterable[str] = ("magnitude",), seed: int = 0,
            device=None, progress: bool = True) -> GanImpRun:
    """Run (or resume) IMP on a pretrained generator G and critic D; returns the :class:`GanImpRun`.

    Args:
        generator, critic: the pretrained networks (their current weights are the rewind point).
        images: the fine-tuning images (LIP: the first 40 % of the training set), (N, C, H, W).
        rounds: R; generators at sparsities 0 (dense, fine-tuned) and 1−(1−rate)^k, k = 1..R.
        finetune: the WGAN-GP settings of every round's fine-tuning.
        rate: fraction of the remaining conv weights pruned per round, in G and in D.
        methods: any of "magnitude" (IMP) and "random" (random global pruning, the baseline);
            each has its own chain of masks, and all share round 0.
        seed: seeds the fine-tuning (the same data order and noise at round k for every method)
            and the random rankings.
    """
    if not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be a non-negative integer, got {rounds!r}")
    check_rate(rate)
    methods = list(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {methods}")
    config = dict(generator=dict(generator.config), critic=dict(critic.config), rounds=rounds, rate=rate,
                  methods=methods, seed=int(seed), finetune=asdict(finetune), n_images=int(images.shape[0]),
                  seeding=SCHEME)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    files = GanImpFolder(run_dir)
    with RunLock(run_dir):
        if files.config.exists():  # refuse other settings before writing anything
            open_config(run_dir, config, what="a generator-IMP run")
        pre = {which: files.pretrained(which) for which in ("G", "D")}
        if not pre["G"].exists():
            save_state(pre["G"], _state(generator))
            save_state(pre["D"], _state(critic))
        open_config(run_dir, config, what="a generator-IMP run")  # written last: a config means a complete start
        pretrained = {k: load_file(str(v)) for k, v in pre.items()}
        nets = {"G": generator, "D": critic}
        chains = [("dense", 0)] + [(m, k) for m in methods for k in range(1, rounds + 1)]
        for method, k in tqdm(chains, desc="GAN IMP rounds", disable=not progress):
            files.level_dir(method, k).mkdir(exist_ok=True)
            record_file = files.record(method, k)
            if record_file.exists():
                continue
            masks = {}
            for which, net in nets.items():
                mf = files.masks(method, which, k)
                if k == 0 and not mf.exists():
                    save_masks(mf, dense_masks(net))
                masks[which] = load_masks(mf)
                net.load_state_dict(pretrained[which])  # rewind, buffers included
            history = train_wgangp(generator, critic, images, finetune, g_masks=masks["G"], d_masks=masks["D"],
                                   seed=derive_seed(seed, "gan_finetune", k), device=device, progress=progress,
                                   desc=f"{method} round {k} fine-tune")
            for which, net in nets.items():
                save_state(files.finetuned(method, which, k), _state(net))
            for which, net in nets.items():  # masks of the next round, for every method branching here
                for m in (methods if k == 0 else [method]):
                    if k < rounds:
                        nxt = global_prune(_weights(net), masks[which], rate, method=m,
                                           seed=seed, key=("gan", which, k))
                        files.level_dir(m, k + 1).mkdir(exist_ok=True)
                        save_masks(files.masks(m, which, k + 1), nxt)
            rec = dict(method="dense" if k == 0 else method, round=k, nominal_sparsity=1 - (1 - rate) ** k,
                       G=measured_sparsity(generator), D=measured_sparsity(critic),
                       final_wasserstein=float(np.mean(history["wasserstein"][-50:])),
                       seconds=round(history["seconds"], 2))
            write_json(record_file, rec)
    return GanImpRun(run_dir)
