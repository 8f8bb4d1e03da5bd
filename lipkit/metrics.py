"""PSNR as DIP and LIP report it.

Inputs are same-size tensors shaped (C, H, W) or (N, C, H, W) with values in [0, 1]. A single
image gives a float; a batch gives a tensor of N values (one per image).
"""

from __future__ import annotations

import torch


def _check(x: torch.Tensor, ref: torch.Tensor) -> None:
    if x.shape != ref.shape:
        raise ValueError(f"psnr needs same-size tensors, got {tuple(x.shape)} and {tuple(ref.shape)}")
    if x.dim() not in (3, 4):
        raise ValueError(f"expected (C,H,W) or (N,C,H,W), got shape {tuple(x.shape)}")


def _psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / mse)


def psnr(x: torch.Tensor, ref: torch.Tensor):
    """10·log10(1 / MSE) over all channels and pixels, data range 1 (skimage's PSNR on [0,1]).

    Computed in float64 so that ~40 dB values keep their hundredths.
    """
    _check(x, ref)
    d = (x.double() - ref.double()) ** 2
    if x.dim() == 3:
        return float(_psnr_from_mse(d.mean()))
    return _psnr_from_mse(d.flatten(1).mean(1))


def psnr_tensor(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """PSNR as a 0-dim tensor on the input's device (no host sync; used inside the fit loop)."""
    return _psnr_from_mse(torch.mean((x.detach() - ref) ** 2))


def _luma(t: torch.Tensor) -> torch.Tensor:
    """(…, 3, H, W) -> (…, H, W): BT.601 Y rescaled to studio range, in the input's dtype."""
    r, g, b = t.unbind(-3)
    return (0.299 * r + 0.587 * g + 0.114 * b) * (219 / 255) + 16 / 255


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma in studio range, (…, 3, H, W) in [0,1] -> (…, 1, H, W): (219·Y + 16)/255.

    Y = 0.299 R + 0.587 G + 0.114 B, as OpenCV's RGB2YCrCb on floats, which DIP's evaluation
    script then rescales to [16, 235]/255. Computed in float64.
    """
    if x.shape[-3] != 3:
        raise ValueError(f"rgb_to_y needs 3 channels, got {x.shape[-3]}")
    return _luma(x.double()).unsqueeze(-3)


def psnr_y(x: torch.Tensor, ref: torch.Tensor, border: int = 4):
    """DIP's super-resolution PSNR: :func:`psnr` on :func:`rgb_to_y`, ``border`` px cropped per side.

    Finding the region DIP optimised (its /32 centre crop) is the caller's job: pass the tensors
    already cut to that region.
    """
    _check(x, ref)
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    h, w = x.shape[-2:]
    if 2 * border >= min(h, w):
        raise ValueError(f"border={border} leaves nothing of a {h}x{w} image")
    sl = (..., slice(border, h - border), slice(border, w - border))
    return psnr(rgb_to_y(x)[sl], rgb_to_y(ref)[sl])


def psnr_y_tensor(x: torch.Tensor, ref: torch.Tensor, border: int = 4) -> torch.Tensor:
    """:func:`psnr_y` as a 0-dim tensor on the input's device (no host sync), for the fit loop."""
    h, w = x.shape[-2:]
    sl = (..., slice(border, h - border), slice(border, w - border))
    return _psnr_from_mse(torch.mean((_luma(x.detach())[sl] - _luma(ref)[sl]) ** 2))
