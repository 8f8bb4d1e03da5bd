import functools
import http.server
import shutil
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from lipkit import data
from lipkit.operators import Inpainting


def test_registry_covers_the_book_images():
    for name in ["set5/baby", "set14/zebra", "dip/f16", "dip/kate", "dip/kate_mask", "dip/zebra"]:
        entry = data.registry()[name]
        assert len(entry.sha256) == 64 and entry.url.startswith("https://")
    assert len(data.names("set5/")) == 5 and len(data.names("set14/")) == 14


def test_load_image_from_mirror(mirror_dir, isolated_cache):
    x = data.load_image("set5/baby")
    assert x.shape == (3, 512, 512) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert (isolated_cache / "set5" / "baby.png").is_file()  # cached for next time


def test_unknown_name_suggests(isolated_cache):
    with pytest.raises(KeyError, match="set5/baby"):
        data.load_image("set5/bab")


def test_checksum_mismatch_is_refused(tmp_path, isolated_cache, monkeypatch):
    fake_mirror = tmp_path / "mirror"
    (fake_mirror / "set5").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(fake_mirror / "set5" / "baby.png")
    monkeypatch.setenv("LIPKIT_DATA_MIRROR", str(fake_mirror))
    with pytest.raises(data.ChecksumError, match="refusing .*sha256"):
        data.fetch("set5/baby")


def test_missing_file_without_network_says_how_to_provide_it(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setenv("LIPKIT_DATA_MIRROR", str(tmp_path / "empty"))
    monkeypatch.setenv("LIPKIT_DATA_URL_BASE", "http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(data.DataError) as err:
        data.fetch("set5/head")
    msg = str(err.value)
    assert "put the file at" in msg and "LIPKIT_DATA_MIRROR" in msg and data.registry()["set5/head"].sha256 in msg


@pytest.fixture
def http_mirror(mirror_dir):
    """A local HTTP server on 127.0.0.1 serving the mirror folder."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror_dir))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_real_download_path(http_mirror, isolated_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("LIPKIT_DATA_MIRROR", str(tmp_path / "no-mirror"))
    monkeypatch.setenv("LIPKIT_DATA_URL_BASE", http_mirror)
    path = data.fetch("set5/bird")
    assert path == isolated_cache / "set5" / "bird.png"
    assert data.sha256_of(path) == data.registry()["set5/bird"].sha256


def test_download_with_wrong_checksum_is_refused(http_mirror, isolated_cache, monkeypatch, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(data.fetch("set5/bird").parent, served / "set5")  # a real server folder ...
    (served / "set5" / "woman.png").write_bytes(b"not the real woman.png")  # ... with one bad file
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("LIPKIT_DATA_MIRROR", str(tmp_path / "no-mirror"))
        monkeypatch.setenv("LIPKIT_DATA_URL_BASE", f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(data.ChecksumError, match="refusing the download"):
            data.fetch("set5/woman")
    finally:
        server.shutdown()
    assert not (isolated_cache / "set5" / "woman.png").exists()


def test_damaged_cache_copy_is_replaced(mirror_dir, isolated_cache):
    path = data.fetch("set5/butterfly")
    path.write_bytes(b"damaged")
    assert data.sha256_of(data.fetch("set5/butterfly")) == data.registry()["set5/butterfly"].sha256


def test_unreadable_and_non_image_files(tmp_path):
    txt = tmp_path / "notes.png"
    txt.write_text("this is not a picture")
    with pytest.raises(ValueError, match="not an image file"):
        data.load_image(txt)
    with pytest.raises(FileNotFoundError, match="neither a registry name nor an existing file"):
        data.load_image(tmp_path / "missing.png")


def test_grey_and_rgba_are_converted_with_a_warning(tmp_path):
    Image.new("L", (40, 40), 128).save(tmp_path / "grey.png")
    with pytest.warns(data.ImageModeWarning, match="L image; converted to RGB"):
        x = data.load_image(tmp_path / "grey.png")
    assert x.shape == (3, 40, 40)
    rgba = Image.new("RGBA", (40, 40), (10, 20, 30, 128))
    rgba.save(tmp_path / "rgba.png")
    with pytest.warns(data.ImageModeWarning, match="alpha channel was dropped .*transparent"):
        assert data.load_image(tmp_path / "rgba.png").shape == (3, 40, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert data.load_image(tmp_path / "grey.png", mode="L").shape == (1, 40, 40)


def test_every_pil_mode_loads_with_its_values_or_is_refused_by_name(tmp_path):
    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    cases = {  # file -> (PIL image, expected grey values, words the warning must contain)
        "i16.png": (Image.fromarray((ramp * 65535).round().astype(np.uint16)), ramp, "scaled from 0-65535"),
        "i32.tif": (Image.fromarray((ramp * 65535).round().astype(np.int32)), ramp, "scaled from 0-65535"),
        "float.tif": (Image.fromarray(ramp.astype(np.float32)), ramp, "float values were kept"),
        "grey.png": (Image.fromarray((ramp * 255).round().astype(np.uint8)), ramp, "copied to every channel"),
    }
    for name, (img, expected, words) in cases.items():
        img.save(tmp_path / name)
        with pytest.warns(data.ImageModeWarning, match=words):
            x = data.load_image(tmp_path / name)
        assert x.shape == (3, 64, 64), name
        step = {"grey.png": 1 / 255, "float.tif": 1e-7}.get(name, 1 / 65535)  # the file's own quantisation
        np.testing.assert_allclose(x[1].numpy(), expected, atol=step)
        if name != "grey.png":  # the others are scaled on the way to one channel too, and say so
            with pytest.warns(data.ImageModeWarning, match="scaled|kept"):
                assert data.load_image(tmp_path / name, mode="L").shape == (1, 64, 64)
    # (before, 99.7 % of the 16-bit image's pixels loaded as 1.0: the values were not scaled)
    colour = Image.fromarray((np.stack([ramp, 1 - ramp, ramp * 0 + 0.5], -1) * 255).round().astype(np.uint8))
    colour.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    colour.convert("CMYK").save(tmp_path / "cmyk.jpg")
    with pytest.warns(data.ImageModeWarning, match="palette"):
        assert data.load_image(tmp_path / "palette.png")[2].mean() == pytest.approx(0.5, abs=0.02)
    with pytest.warns(data.ImageModeWarning, match="CMYK was converted"):
        assert data.load_image(tmp_path / "cmyk.jpg").shape == (3, 64, 64)
    assert data.load_image(tmp_path / "palette.png", mode=None).shape == (3, 64, 64)  # colours, not indices
    colour.convert("LA").save(tmp_path / "la.png")
    with pytest.warns(data.ImageModeWarning, match="alpha channel was dropped"):
        assert data.load_image(tmp_path / "la.png").shape == (3, 64, 64)
    Image.fromarray((ramp * 2).astype(np.float32)).save(tmp_path / "big_float.tif")
    with pytest.raises(ValueError, match=r"big_float.tif is a 32-bit float \(F\) image with values in \[0, 2\]"):
        data.load_image(tmp_path / "big_float.tif")
    nan = ramp.astype(np.float32)
    nan[3, 3] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="nan.tif holds NaN"):
        data.load_image(tmp_path / "nan.tif")
    Image.fromarray((ramp * 1e6).astype(np.int32)).save(tmp_path / "i32_big.tif")
    with pytest.raises(ValueError, match="beyond 16 bits"):
        data.load_image(tmp_path / "i32_big.tif")


def test_crop_to_multiple_is_dips_crop():
    x = torch.arange(391 * 586, dtype=torch.float32).reshape(1, 391, 586)
    c = data.crop_to_multiple(x, 32)
    assert c.shape == (1, 384, 576)
    assert float(c[0, 0, 0]) == float(x[0, 3, 5])  # offsets floor(7/2)=3, floor(10/2)=5
    with pytest.raises(ValueError, match="smaller than the network's 32-pixel multiple"):
        data.crop_to_multiple(torch.zeros(3, 20, 64), 32)


def test_mask_shape_mismatch_with_real_files(mirror_dir):
    op = Inpainting.from_file("dip/kate_mask")
    with pytest.raises(ValueError, match="mask is 512x512"):
        op(data.center_crop(data.load_image("dip/kate"), 64))
