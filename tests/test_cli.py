"""The command line's error path: an input that cannot work is one line on stderr, exit code 2,
and nothing written, so that the corrected command runs in the same folder."""

from __future__ import annotations

import json

import pytest

from lipkit.cli import main
from lipkit.store.paths import ImpFolder

TINY = ["--task", "denoise", "--image", "set5/baby", "--crop", "64", "--iters", "2", "--width", "8", "--rounds", "0",
        "--workers", "1", "--quiet"]


def refused(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("lipkit: error: "), err
    assert match in err, err
    return err


@pytest.mark.parametrize("option,value,match", [
    ("--width", "0", "--width must be >= 1"),
    ("--crop", "63", "--crop must be a multiple of 32"),
    ("--rounds", "-1", "--rounds must be >= 0"),
    ("--rate", "1.5", "--rate must be in (0, 1)"),
    ("--seeds", "0", "--seeds must be >= 1"),
    ("--rewind-iter", "-3", "--rewind-iter must be >= 0"),
    ("--workers", "0", "--workers must be >= 1"),
])
def test_a_bad_option_is_named_and_nothing_is_written(capsys, tmp_path, option, value, match):
    out = tmp_path / "run"
    argv = ["imp", *TINY, "--out", str(out)]
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    refused(capsys, argv, match)
    assert not out.exists()


def test_a_bad_image_or_factor_is_refused_before_the_folder_exists(capsys, tmp_path, mirror_dir):
    out = tmp_path / "run"
    refused(capsys, ["imp", *TINY, "--out", str(out), "--image", "set5/nonexistent"], "set5/nonexistent")
    sr = ["imp", *TINY, "--out", str(out), "--task", "sr", "--factor", "3"]
    refused(capsys, sr, "multiple of the super-resolution factor 3")
    assert not out.exists()
    # the corrected command runs in that folder
    sr[sr.index("--crop") + 1] = "96"
    assert main(sr) == 0
    assert ImpFolder(out).record(0, 0).exists()


def test_a_mask_of_another_size_is_refused_even_when_a_crop_would_fit_it(capsys, tmp_path, mirror_dir):
    from PIL import Image

    Image.new("L", (300, 200), 255).save(tmp_path / "mask.png")
    out = tmp_path / "run"
    refused(capsys, ["imp", *TINY, "--out", str(out), "--task", "inpaint", "--mask", str(tmp_path / "mask.png")],
            "mask.png is 300x200 px but the image set5/baby is")
    assert not out.exists()


def test_a_folder_without_its_config_is_refused_and_a_fresh_one_works(capsys, tmp_path, mirror_dir):
    out = tmp_path / "run"
    assert main(["imp", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    folder = ImpFolder(out)
    before = json.loads(folder.record(0, 0).read_text())
    folder.config.unlink()  # a run with other settings must not adopt these records
    err = refused(capsys, ["imp", *TINY, "--out", str(out), "--iters", "3"], "no config.json")
    assert str(out) in err
    assert json.loads(folder.record(0, 0).read_text()) == before and not folder.config.exists()
    folder.config.write_text("{not json")  # a damaged config names its file
    refused(capsys, ["imp", *TINY, "--out", str(out)], "config.json is damaged")
    assert main(["imp", *TINY, "--out", str(tmp_path / "fresh")]) == 0


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="--width"):
        main(["imp", *TINY, "--out", str(tmp_path / "run"), "--width", "0", "--debug"])


@pytest.mark.parametrize("damage", ["truncated masks", "emptied record"])
def test_a_damaged_run_folder_is_refused_naming_the_file(capsys, tmp_path, mirror_dir, damage):
    out = tmp_path / "run"
    argv = ["imp", *TINY, "--out", str(out)]
    argv[argv.index("--rounds") + 1] = "2"
    assert main(argv) == 0
    capsys.readouterr()
    folder = ImpFolder(out)
    if damage == "truncated masks":
        broken = folder.masks(0, 2)
        folder.record(0, 2).unlink()  # level 2 must be refitted, from these masks
        broken.write_bytes(broken.read_bytes()[:100])
    else:
        broken = folder.record(0, 1)
        broken.write_text("")
    err = refused(capsys, argv, str(broken))
    assert "damaged" in err
