"""The published numbers the book targets (not results of this package), and how to score them.

- :data:`FIG2`: the PSNRs printed in the LIP paper's Fig. 2 (Wu et al., TMLR 2023), as transcribed
  in the project's shared reference (paper_and_official_code.md, section 8.2). PSNR in dB;
  sparsities in percent of conv weights. All are best-over-iterations PSNRs (the oracle), and
  the official code searched the denoising masks on the clean image.
- :func:`dip_denoising_psnr` and :func:`dip_sr_psnr`: the DIP authors' published output images
  (their project page), scored with lipkit's metrics and DIP's own protocol: colour denoising at
  σ = 25 (F16: 33.69 dB) and ×4 super-resolution on the luma channel (Set14 zebra: 25.71 dB).
- :data:`MOM_DENSE`: the dense-prior error of the LIP authors' MOM notebook (PGAN, CelebA-HQ).
- :data:`OES_SET14`: Optimal Eye Surgeon's (Ghosh et al., ICML 2024) Set14 means at σ = 0.1,
  parsed from the authors' research logs (the project's shared reference, pruning_at_init.md,
  sections 3.2 and 3.4): best over iterations and last iteration (40,000), in dB.
"""

from __future__ import annotations

import warnings

FIG2 = {
    "inpaint_text": {"image": "kate (text mask)", "dense": 33.32,
                     "tickets": [(79.0, 34.52), (83.0, 34.42), (91.4, 33.83), (99.53, 29.67)]},
    "sr4": {"image": "zebra ×4", "dense": 25.59,
            "tickets": [(83.0, 25.75), (86.5, 25.73), (91.4, 25.63), (99.53, 23.72)]},
    "sr8": {"image": "pepper ×8", "dense": 28.73,
            "tickets": [(67.0, 28.86), (83.0, 28.95), (89.0, 28.81), (99.53, 27.36)]},
    "denoise": {"image": "baby σ=25", "dense": 31.07,
                "tickets": [(59.0, 31.17), (67.0, 31.24), (74.0, 31.13), (99.53, 29.02)]},
}

# LIP authors' notebook mom_sga_pgan.ipynb: dense PGAN (avgG) prior, in-range target G(z0),
# m = 1000 with 20 corrupted rows; per-pixel MSE on the [-1, 1] scale (reference section 7.4).
MOM_DENSE = {"at_1500": 0.012, "minimum": 0.0095, "iterations": 1500,
             "setting": "PGAN celebA-HQ 256 (avgG), in-range target G(z0), m = 980 + 20, b = 20"}


# Mean over the 14 Set14 images, σ = 0.1, fits of 40,000 iterations without early stopping, one noise
# realization per run and no seeds. "hourglass": the OES code's 6-level net without skips (3.0 M
# parameters, all parameters masked); "skip": the 2.2 M DIP skip net, LIP's (OES only, n = 13).
OES_SET14 = {
    "dense": dict(label="dense DIP (Adam 1e-3)", net="hourglass", density=100.0, best=27.29, final=21.68),
    "oes": dict(label="OES", net="hourglass", density=5.0, best=27.48, final=25.86),
    "imp": dict(label="IMP, 20 % × 13 rounds", net="hourglass", density=5.49, best=27.06, final=24.76),
    "deep_decoder": dict(label="deep decoder k = 5 (100,224 parameters)", net="decoder", density=None,
                         best=26.73, final=25.83),
    "oes_skip": dict(label="OES on the skip net", net="skip", density=5.0, best=27.47, final=24.15),
}


def dip_denoising_psnr(image: str = "f16") -> float:
    """RGB PSNR (dB) of the DIP authors' published σ = 25 denoising of ``image`` (project page)."""
    from lipkit import data
    from lipkit.metrics import psnr

    return float(psnr(data.load_image(f"dip_results/denoise25/{image}"),
                      data.load_image(f"dip_results/denoise25/{image}_gt")))


def dip_sr_psnr(dataset: str = "set14", image: str = "zebra") -> float:
    """Y-channel PSNR (dB) of the DIP authors' published ×4 super-resolution of ``image``.

    DIP's ``super-resolution_eval_script.py``: the ground truth is cropped top-left to a multiple
    of 4; the region is where DIP's output is non-zero (its centre crop to a multiple of 32),
    less 4 pixels on each side.
    """
    import torch

    from lipkit import data
    from lipkit.metrics import psnr_y

    gt = data.load_image(f"{dataset}/{image}")
    gt = gt[:, : gt.shape[1] // 4 * 4, : gt.shape[2] // 4 * 4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.ImageModeWarning)  # the published PNGs are RGBA
        out = data.load_image(f"dip_results/sr_x4/{dataset}/{image}")
    nonzero = out.abs().sum(0) > 0
    rows = torch.nonzero(nonzero.any(1)).flatten()
    cols = torch.nonzero(nonzero.any(0)).flatten()
    region = (slice(None), slice(int(rows[0]) + 4, int(rows[-1]) - 4), slice(int(cols[0]) + 4, int(cols[-1]) - 4))
    return float(psnr_y(out[region], gt[region], border=0))
