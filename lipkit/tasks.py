"""Restoration tasks as the book and the command line set them up: image + operator + observation.

A :class:`Task` bundles the clean image (for measuring only), the degradation, the observation,
the per-task fit settings and the metric, and describes itself as JSON for run folders.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, replace

import torch

from lipkit import data
from lipkit.metrics import psnr_tensor, psnr_y_tensor
from lipkit.models.skip import DEFAULT_LEVELS, size_problem
from lipkit.operators import Denoising, Inpainting, Operator, SuperResolution
from lipkit.seeding import SCHEME
from lipkit.fitting.settings import FitSettings, task_settings

TASK_KINDS = ("denoise", "sr", "inpaint")



@dataclass
class Task:
    """One restoration problem. Images are (C, H, W) in [0, 1] on the CPU."""

    kind: str
    image: str
    clean: torch.Tensor
    operator: Operator
    observation: torch.Tensor
    settings: FitSettings
    metric_name: str = "rgb"               # "rgb" (PSNR over all channels) or "y" (DIP's SR protocol)
    params: dict = field(default_factory=dict)
    loaded_size: tuple[int, int] | None = None  # the image's (H, W) before lipkit cropped it (for messages)

    @property
    def metric(self):
        return psnr_y_tensor if self.metric_name == "y" else psnr_tensor

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.clean.shape[-2:])

    def observation_sha256(self) -> str:
        return hashlib.sha256(self.observation.contiguous().numpy().tobytes()).hexdigest()

    def target(self) -> dict:
        """What a record names as the task a fit restored (kind, image, parameters, size, metric)."""
        return dict(kind=self.kind, image=self.image, params=self.params, image_size=list(self.image_size),
                    metric=self.metric_name)

    def describe(self) -> dict:
        """JSON-friendly identity of the task (what a run folder must agree on)."""
        return dict(kind=self.kind, image=self.image, image_size=list(self.image_size), params=self.params,
                    metric=self.metric_name, settings=asdict(self.settings),
                    observation_sha256=self.observation_sha256(), seeding=SCHEME)


def load_cropped(image: str, crop: int | None = None, window: tuple[int, int] | None = None,
                 mode: str | None = "RGB", multiple: int = 32) -> torch.Tensor:
    """Load ``image``, apply DIP's crop to a multiple of 32 (or of ``multiple``), then an optional
    square crop of side ``crop``.

    ``window`` is the crop's top-left corner; by default the crop is centred.
    """
    return _cut(data.load_image(image, mode=mode), crop, window, multiple)


def _cut(x: torch.Tensor, crop: int | None, window: tuple[int, int] | None, multiple: int) -> torch.Tensor:
    x = data.crop_to_multiple(x, multiple)
    if crop:
        x = data.center_crop(x, crop) if window is None else data.crop(x, window[0], window[1], crop)
    return x


def make_task(kind: str, image: str, *, sigma: float = 25 / 255, factor: int = 4, mask: str = "bernoulli",
              zero_fraction: float = 0.5, crop: int | None = None, window: tuple[int, int] | None = None,
              seed: int = 0, settings: FitSettings | None = None, iters: int | None = None) -> Task:
    """Build a task the way DIP and LIP do.

    Args:
        kind: "denoise", "sr" or "inpaint".
        image: registry name (``"set5/baby"``) or path.
        sigma: noise std in [0, 1] units (denoising).
        factor: super-resolution factor.
        mask: inpainting mask: "bernoulli" (``zero_fraction`` dropped per pixel and channel, the
            LIP code), "text" (drawn text), or a registry name or path of a mask file
            (``"dip/kate_mask"``), cut with the same crop as the image.
        crop, window: optional square crop (see :func:`load_cropped`).
        seed: the observation seed: the noise and the Bernoulli mask come from its
            ``"observation"`` stream (:mod:`lipkit.seeding`), so a fit seed of the same value
            shares no random numbers with them.
        settings, iters: fit settings (default: the LIP code's per-task values,
            :func:`lipkit.fitting.settings.task_settings`) and an
            iteration override.
    """
    if kind not in TASK_KINDS:
        raise ValueError(f"task kind must be one of {TASK_KINDS}, got {kind!r}")
    multiple = 32
    if kind == "sr":
        SuperResolution.check_factor(factor)
        multiple = math.lcm(32, factor)  # the image must also divide by the factor (odd ones: 96 for ×3)
        if crop and crop % factor:
            raise ValueError(f"the crop ({crop} px) must be a multiple of the super-resolution factor {factor}, "
                             f"e.g. {crop - crop % factor or factor}")
    loaded = data.load_image(image)
    if min(loaded.shape[-2:]) < multiple:  # nothing would be left of the crop; the real size, not the cropped one
        raise ValueError(size_message(image, tuple(loaded.shape[-2:]), None, DEFAULT_LEVELS))
    clean = _cut(loaded, crop, window, multiple)
    params: dict = dict(crop=crop, window=list(window) if window else None, seed=seed)
    metric = "rgb"
    if kind == "denoise":
        op = Denoising(sigma)
        obs = op.observe(clean, seed=seed)
        params["sigma"] = sigma
    elif kind == "sr":
        op = SuperResolution(factor)
        obs = op.observe(clean)
        params["factor"] = factor
        metric = "y"
    else:
        if mask == "bernoulli":
            op = Inpainting.bernoulli(tuple(clean.shape), zero_fraction, seed=seed)
            params.update(mask="bernoulli", zero_fraction=zero_fraction)
        elif mask == "text":
            op = Inpainting.text(tuple(clean.shape[-2:]))
            params["mask"] = "text"
        else:
            image_size = tuple(data.load_image(image).shape[-2:])
            mask_size = tuple(data.load_image(mask, mode="L").shape[-2:])
            if mask_size != image_size:  # a crop would make them agree and hide that they do not belong together
                raise ValueError(f"the mask {mask} is {mask_size[1]}x{mask_size[0]} px but the image {image} is "
                                 f"{image_size[1]}x{image_size[0]}; give the mask made for this image")
            m = load_cropped(mask, crop, window, mode="L")
            op = Inpainting((m > 0.5).float())
            params["mask"] = mask
        obs = op.observe(clean)
    settings = settings or task_settings(kind)
    if iters is not None:
        settings = replace(settings, num_iter=int(iters))
    return Task(kind, image, clean, op, obs, settings, metric, params, loaded_size=tuple(loaded.shape[-2:]))


def size_message(image: str, loaded: tuple[int, int], used: tuple[int, int] | None, levels: int) -> str:
    """Why ``image`` (``loaded`` = its real H, W; ``used`` = after lipkit's crops) cannot be fitted."""
    m = 2 ** levels
    (h, w), shown = loaded, f"{image} is {loaded[1]}x{loaded[0]} px"
    if used and tuple(used) != tuple(loaded):
        shown += f" ({used[1]}x{used[0]} after cropping)"
    if min(used or loaded) < 2 * m:
        way_out = "use a larger image" if min(h, w) < 2 * m else "use a larger crop"
        return f"{shown}, but the skip net with {levels} levels needs at least {2 * m}x{2 * m} px; {way_out}"
    return f"{shown}; {size_problem(levels, *used)}" if used else shown


def check_task_fits(task: Task, net) -> None:
    """Refuse (``ValueError`` naming the image's real size) a task whose image ``net`` cannot take."""
    levels = getattr(net, "levels", None)
    if levels is not None and size_problem(levels, *task.image_size):
        raise ValueError(size_message(task.image, task.loaded_size or task.image_size, task.image_size, levels))
