"""Interactive views for the book.

The widgets here link their controls in the browser (``jslink``), so they keep working in the
static HTML site, where no Python kernel runs.
"""

from __future__ import annotations

import io
from typing import Sequence

import ipywidgets as widgets
import torch
from PIL import Image

from lipkit.data import to_pil


def _png(x: torch.Tensor, display_size: int) -> bytes:
    img = to_pil(x)
    longest = max(img.size)
    if longest > display_size:  # large images: shrink, so a page with many frames stays light
        ratio = display_size / longest
        img = img.resize((max(1, round(img.width * ratio)), max(1, round(img.height * ratio))), Image.LANCZOS)
    elif display_size // longest > 1:  # small crops: enlarge with nearest so pixels stay visible
        scale = display_size // longest
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def iteration_browser(frames: Sequence[tuple[int, torch.Tensor]], psnrs: Sequence[float] | None = None,
                      *, display_size: int = 384, description: str = "iteration") -> widgets.VBox:
    """A slider (and play button) stepping through fit snapshots.

    ``frames`` are (iteration, image (C,H,W)) pairs, e.g. ``lipkit.fitting.loop.Snapshots(...).frames``;
    ``psnrs`` optionally gives one PSNR per frame for its caption.
    """
    if not frames:
        raise ValueError("no frames to browse")
    pages = []
    for k, (it, img) in enumerate(frames):
        caption = f"<b>iteration {it + 1}</b>"
        if psnrs is not None:
            caption += f" &nbsp; PSNR {psnrs[k]:.2f} dB"
        pages.append(widgets.VBox([widgets.HTML(caption),
                                   widgets.Image(value=_png(img, display_size), format="png")]))
    stack = widgets.Stack(pages, selected_index=len(pages) - 1)
    slider = widgets.IntSlider(value=len(pages) - 1, min=0, max=len(pages) - 1, step=1,
                               description=description, readout=False, continuous_update=True)
    play = widgets.Play(value=len(pages) - 1, min=0, max=len(pages) - 1, step=1, interval=400)
    widgets.jslink((play, "value"), (slider, "value"))
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    return widgets.VBox([widgets.HBox([play, slider]), stack])


def sparsity_browser(run, seed: int = 0, *, display_size: int = 256, description: str = "round") -> widgets.VBox:
    """Slider over the IMP rounds of one seed: restored image, PSNR, and the mask density per layer."""
    from lipkit.data import load_image
    from lipkit.plots import figure_png, plot_layer_density

    recs = sorted((r for r in run.records("imp") if r["seed"] == seed), key=lambda r: r["round"])
    if not recs:
        raise ValueError(f"no IMP records for seed {seed} in {run.dir}")
    pages = []
    for r in recs:
        img = load_image(run.output_image(seed, r["round"]))
        caption = (f"<b>round {r['round']}</b>: sparsity {100 * r['conv_sparsity']:.2f} % "
                   f"({r['unpruned_params']:,} parameters), best PSNR {r['best_psnr']:.2f} dB, "
                   f"final {r['final_psnr']:.2f} dB")
        density_png = figure_png(plot_layer_density({f"round {r['round']}": r["layer_density"]}))
        pages.append(widgets.VBox([
            widgets.HTML(caption),
            widgets.HBox([widgets.Image(value=_png(img, display_size), format="png"),
                          widgets.Image(value=density_png, format="png", width=420)]),
        ]))
    stack = widgets.Stack(pages, selected_index=0)
    slider = widgets.IntSlider(value=0, min=0, max=len(pages) - 1, description=description, readout=True)
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    return widgets.VBox([slider, stack])
