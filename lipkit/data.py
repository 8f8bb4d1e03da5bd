"""Benchmark images by name, with checksums.

``load_image("set5/baby")`` returns a float tensor (C, H, W) in [0, 1]. The registry
(``lipkit/registry.csv``) holds, for every image, its path, the public URL of the exact commit it
comes from, and its sha256. A file is looked up, in order, in

1. the cache: ``$LIPKIT_DATA_DIR``, else the checkout's ``data/`` folder, else the user cache;
2. a local mirror folder, ``$LIPKIT_DATA_MIRROR`` (CI points it at ``../shared/data``);
3. its URL (or ``$LIPKIT_DATA_URL_BASE/<path>`` to use another server), with pooch.

A file whose sha256 differs from the registry is refused. Images are never committed.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import os
import shutil
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

REGISTRY_FILE = Path(__file__).with_name("registry.csv")


class DataError(RuntimeError):
    """A benchmark image could not be provided."""


class ChecksumError(DataError):
    """A file's sha256 differs from the registry's."""


class ImageModeWarning(UserWarning):
    """An image was converted (grey or RGBA to RGB); the message says which."""


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    url: str
    sha256: str


@lru_cache(maxsize=1)
def registry() -> dict[str, Entry]:
    """Name -> :class:`Entry` for every image the project knows."""
    with open(REGISTRY_FILE, newline="", encoding="utf-8") as f:
        return {row["name"]: Entry(**row) for row in csv.DictReader(f)}


def names(prefix: str = "") -> list[str]:
    """Registry names starting with ``prefix``, e.g. ``names("set5/")``."""
    return sorted(n for n in registry() if n.startswith(prefix))


def data_dir() -> Path:
    """Where fetched files are cached."""
    env = os.environ.get("LIPKIT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[1] / "data"
    if checkout.is_dir() and os.access(checkout, os.W_OK):
        return checkout
    import pooch

    return Path(pooch.os_cache("lipkit"))


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _entry(name: str) -> Entry:
    reg = registry()
    if name not in reg:
        close = difflib.get_close_matches(name, reg, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"{name!r} is not in the lipkit image registry.{hint} lipkit.data.names() lists them all.")
    return reg[name]


def fetch(name: str) -> Path:
    """Local path of registry image ``name``, fetching and verifying it if needed."""
    entry = _entry(name)
    dest = data_dir() / entry.path
    if dest.is_file():
        if sha256_of(dest) == entry.sha256:
            return dest
        dest.unlink()  # a stale or damaged cache copy: get a fresh one

    mirror = os.environ.get("LIPKIT_DATA_MIRROR")
    if mirror:
        src = Path(mirror).expanduser() / entry.path
        if src.is_file():
            got = sha256_of(src)
            if got != entry.sha256:
                raise ChecksumError(
                    f"refusing {src}: its sha256 is {got}, but the registry expects {entry.sha256} for "
                    f"{name!r}. The mirror holds a different file; replace it with the original."
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            return dest

    base = os.environ.get("LIPKIT_DATA_URL_BASE")
    url = f"{base.rstrip('/')}/{entry.path}" if base else entry.url
    return _download(entry, url, dest)


def _download(entry: Entry, url: str, dest: Path) -> Path:
    import pooch

    pooch.get_logger().setLevel("WARNING")  # its "Downloading data from ..." line would precede our error's one line
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        path = pooch.retrieve(url, known_hash=f"sha256:{entry.sha256}", fname=dest.name,
                              path=dest.parent, progressbar=False)
    except ValueError as err:  # pooch's hash mismatch
        raise ChecksumError(f"refusing the download of {entry.name!r} from {url}: {err}") from err
    except Exception as err:  # no network, HTTP error, ...
        raise DataError(
            f"could not get {entry.name!r}: no cached copy in {dest.parent}, no mirror copy "
            f"(LIPKIT_DATA_MIRROR={os.environ.get('LIPKIT_DATA_MIRROR')!r}), and the download from {url} "
            f"failed ({type(err).__name__}: {err}). To provide it offline, put the file at {dest} "
            f"(sha256 {entry.sha256}), or set LIPKIT_DATA_MIRROR to a folder holding {entry.path}."
        ) from err
    return Path(path)


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A registry name is fetched; anything else must be an existing file."""
    if isinstance(name_or_path, str) and name_or_path in registry():
        return fetch(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if isinstance(name_or_path, str) and "/" in name_or_path and not path.suffix:
        _entry(name_or_path)  # raises with suggestions
    raise FileNotFoundError(f"{str(name_or_path)!r} is neither a registry name nor an existing file")


def open_image_file(path: str | os.PathLike) -> Image.Image:
    """Open an image file with PIL; an unreadable or non-image file is a clear error."""
    try:
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError as err:
        raise ValueError(f"{path} is not an image file PIL can read (PNG, JPEG, ...)") from err
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path} has more pixels than PIL will open ({err}); a DIP fit of an image this large "
                         "would not fit in memory either: downscale or crop it first") from err
    except OSError as err:
        raise ValueError(f"{path} could not be read as an image: {err}") from err
    if img.format == "PNG":
        short = _png_bytes_short(Path(path))
        if short:  # PIL fills the missing rows with black and says nothing
            raise ValueError(f"{path} is damaged: its image data ends {short[0]:,} bytes short of the {short[1]:,} "
                             "its header declares (rows are missing); get the file again")
    return img


def _png_bytes_short(path: Path) -> tuple[int, int] | None:
    """(missing, expected) bytes of a PNG's decompressed image data, or None when it is whole."""
    import math
    import struct
    import zlib

    data = path.read_bytes()
    pos, header, chunks = 8, None, []
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[pos + 8:pos + 21])
        elif kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + size])
        elif kind == b"IEND":
            break
        pos += 12 + size
    if header is None:
        return None
    width, height, depth, colour, _, _, interlaced = header
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)

    def pass_bytes(w: int, h: int) -> int:  # each row: a filter byte and its packed samples
        return h * (1 + (w * samples * depth + 7) // 8) if w and h else 0

    passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
              if interlaced else [(0, 0, 1, 1)])
    expected = sum(pass_bytes(math.ceil(max(0, width - x0) / dx), math.ceil(max(0, height - y0) / dy))
                   for x0, y0, dx, dy in passes)
    try:
        got = len(zlib.decompressobj().decompress(b"".join(chunks)))
    except zlib.error:
        return None  # a damaged stream: PIL reports it itself
    return (expected - got, expected) if got < expected else None


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor (C, H, W) in [0, 1]."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def to_pil(x: torch.Tensor) -> Image.Image:
    """Float tensor (C, H, W) in [0, 1] -> 8-bit PIL image (values are clipped and rounded)."""
    arr = (x.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
COLOUR_NOTES = {  # what PIL's conversion of an 8-bit mode to RGB does, in words
    "L": "grey values were copied to every channel",
    "1": "black and white were copied to every channel",
    "P": "palette indices were looked up in its palette",
    "CMYK": "CMYK was converted by PIL's naive formula, without a colour profile",
    "YCbCr": "YCbCr was converted to RGB",
    "LAB": "Lab was converted to RGB",
    "HSV": "HSV was converted to RGB",
}


def _deep_pixels(img: Image.Image, name) -> tuple[np.ndarray, str]:
    """(H, W) float array in [0, 1] of a 16-bit, 32-bit integer or float image, and how it was scaled."""
    arr = np.asarray(img).astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite pixel values; fix the file")
    if img.mode == "F":
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"{name} is a 32-bit float (F) image with values in [{arr.min():g}, {arr.max():g}]; "
                             "lipkit reads float images only in [0, 1]: rescale it, or save it as 8 or 16 bit")
        return arr.astype(np.float32), "its 32-bit float values were kept"
    if arr.min() < 0 or arr.max() > 65535:  # mode "I" holding more than 16 bits
        raise ValueError(f"{name} is a 32-bit integer (I) image with values in [{arr.min():g}, {arr.max():g}], "
                         "beyond 16 bits; save it as an 8- or 16-bit image")
    return (arr / 65535).astype(np.float32), "its 16-bit values were scaled from 0-65535 to [0, 1]"


def load_image(name_or_path: str | os.PathLike, mode: str | None = "RGB") -> torch.Tensor:
    """Image by registry name (``"set5/baby"``, ``"dip/f16"``, ``"dip/kate_mask"``) or path.

    Returns a float tensor (C, H, W) in [0, 1]. With ``mode="RGB"`` (default) any other mode is
    converted to RGB and ``mode="L"`` gives one channel, with an :class:`ImageModeWarning` that
    says what the conversion did; ``mode=None`` keeps the file's channels. 16-bit images (PIL's
    ``I;16`` and ``I``) are scaled from 0-65535, float images (``F``) must lie in [0, 1]; an
    image with NaN or infinite values is refused.
    """
    path = resolve(name_or_path)
    img = open_image_file(path)
    if img.mode in SIXTEEN_BIT or img.mode in ("I", "F"):
        grey, scaling = _deep_pixels(img, name_or_path)
        x = torch.from_numpy(grey.copy())[None]
        notes = [scaling]
        if mode == "RGB":
            x = x.expand(3, -1, -1).contiguous()
            notes.append("grey values were copied to every channel")
        warnings.warn(f"{name_or_path} is a {img.mode} image; converted to {mode or 'float'} ({'; '.join(notes)}).",
                      ImageModeWarning, stacklevel=2)
        return x
    if mode is not None and img.mode != mode:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            alpha = np.asarray(img.convert("RGBA"))[..., 3]
            note = "its alpha channel was dropped" + (
                "" if alpha.min() == 255 else f" ({(alpha < 255).mean():.1%} of pixels were transparent)"
            )
        elif mode == "RGB":
            note = COLOUR_NOTES.get(img.mode, f"{img.mode} was converted to RGB by PIL")
        else:
            note = "its channels were merged into luma (ITU-R 601-2: 0.299 R + 0.587 G + 0.114 B)"
        warnings.warn(
            f"{name_or_path} is a {img.mode} image; converted to {mode} ({note}).",
            ImageModeWarning, stacklevel=2,
        )
        img = img.convert(mode)
    elif mode is None and img.mode not in ("L", "LA", "RGB", "RGBA"):  # palette, CMYK, ...: their colours
        img = img.convert("L" if img.mode == "1" else "RGBA" if img.mode == "PA" or "transparency" in img.info
                          else "RGB")
    return to_tensor(img)


def _check_size(x: torch.Tensor, d: int, what: str) -> None:
    h, w = x.shape[-2:]
    if h < d or w < d:
        raise ValueError(
            f"the image is {h}x{w}, smaller than the network's {d}-pixel multiple ({what}); "
            f"use an image of at least {d}x{d}"
        )


def crop_to_multiple(x: torch.Tensor, d: int = 32) -> torch.Tensor:
    """DIP's ``crop_image``: centre crop (C, H, W) to H - H%d, W - W%d, offset floor((H-H')/2).

    The skip net with L levels needs H and W to be multiples of 2^L (32 for five levels).
    """
    _check_size(x, d, f"H and W must be multiples of {d}")
    h, w = x.shape[-2:]
    nh, nw = h - h % d, w - w % d
    top, left = (h - nh) // 2, (w - nw) // 2
    return x[..., top:top + nh, left:left + nw]


def center_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Centre crop (..., H, W) to ``size`` (an int for a square)."""
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if th > h or tw > w:
        raise ValueError(f"cannot crop a {h}x{w} image to {th}x{tw}")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top:top + th, left:left + tw]


def crop(x: torch.Tensor, top: int, left: int, height: int, width: int | None = None) -> torch.Tensor:
    """Crop (..., H, W) to the window starting at (top, left); ``width`` defaults to ``height``."""
    width = height if width is None else width
    h, w = x.shape[-2:]
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise ValueError(f"the window {height}x{width} at ({top}, {left}) does not fit in a {h}x{w} image")
    return x[..., top:top + height, left:left + width]
