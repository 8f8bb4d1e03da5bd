"""Fit settings, and the one table of per-task presets (DIP's and the LIP code's values).

>>> PRESETS["denoise"].exp_weight, TASK_PRESETS["sr"]
(0.99, 'sr4')
>>> resolve_settings("inpaint", num_iter=500).num_iter
500
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class FitSettings:
    """Hyper-parameters of one fit. ``PRESETS`` holds DIP's per-task values."""

    num_iter: int = 3000
    lr: float = 0.01
    reg_noise_std: float = 0.0       # std of the Gaussian noise added to z at every step
    exp_weight: float | None = None  # EMA weight of the output (DIP denoising: 0.99)
    backtrack: bool = False          # DIP's fallback when the observation PSNR drops
    backtrack_drop_db: float = 5.0
    show_every: int = 100            # DIP skips the backtracking check on multiples of this
    es_window: int = 100             # ES-WMV's variance window (0: no early-stopping detector)
    es_patience: int = 1000          # ES-WMV stops after this many steps without a new low

    def __post_init__(self):
        if self.num_iter < 1:
            raise ValueError(f"num_iter must be >= 1, got {self.num_iter}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.reg_noise_std < 0:
            raise ValueError(f"reg_noise_std must be >= 0, got {self.reg_noise_std}")
        if self.exp_weight is not None and not 0 <= self.exp_weight < 1:
            raise ValueError(f"exp_weight must be in [0, 1) or None, got {self.exp_weight}")
        if self.es_window != 0 and self.es_window < 2:
            raise ValueError(f"es_window must be 0 (off) or at least 2 iterations, got {self.es_window}")
        if self.es_patience < 1:
            raise ValueError(f"es_patience must be at least 1 iteration, got {self.es_patience}")


PRESETS: dict[str, FitSettings] = {
    # DIP notebooks and the LIP code (see shared reference): Adam 0.01 throughout.
    "denoise": FitSettings(num_iter=3000, reg_noise_std=1 / 30, exp_weight=0.99),
    "sr4": FitSettings(num_iter=2000, reg_noise_std=0.03),
    "sr8": FitSettings(num_iter=4000, reg_noise_std=0.05),
    "inpaint": FitSettings(num_iter=3000, reg_noise_std=0.03),
    # Heckel & Hand: no input noise, fixed input, best-PSNR tracking.
    "deep_decoder": FitSettings(num_iter=1900, reg_noise_std=0.0),
}

# The LIP code's settings for each task kind (shared reference, sections 4-5): its super-resolution
# runs DIP's ×4 values (2000 iterations, input noise 0.03) for both factors, not DIP's ×8 ones.
TASK_PRESETS: dict[str, str] = {"denoise": "denoise", "sr": "sr4", "inpaint": "inpaint"}


def resolve_settings(settings: FitSettings | str | None, **overrides) -> FitSettings:
    """A :class:`FitSettings` from settings, a preset name or None, with single fields replaced."""
    if isinstance(settings, str):
        if settings not in PRESETS:
            raise KeyError(f"unknown preset {settings!r}; choose from {sorted(PRESETS)}")
        settings = PRESETS[settings]
    return replace(settings or FitSettings(), **overrides)


def task_settings(kind: str) -> FitSettings:
    """The LIP code's settings for a task kind (``"denoise"``, ``"sr"``, ``"inpaint"``)."""
    if kind not in TASK_PRESETS:
        raise KeyError(f"no settings for task kind {kind!r}; choose from {sorted(TASK_PRESETS)}")
    return PRESETS[TASK_PRESETS[kind]]
