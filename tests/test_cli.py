"""The command line's error path: an input that cannot work is one line on stderr, exit code 2,
and nothing written, so that the corrected command runs in the same folder."""

from __future__ import annotations

import json
import re

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
    ("--width", "0", "--width must be a whole number >= 1"),
    ("--crop", "63", "--crop must be 0 (whole images) or a whole multiple of 32"),
    ("--rounds", "-1", "--rounds must be a whole number >= 0"),
    ("--rate", "1.5", "--rate must be in (0, 1)"),
    ("--seeds", "0", "--seeds must be a whole number >= 1"),
    ("--rewind-iter", "-3", "--rewind-iter must be a whole number >= 0"),
    ("--workers", "0", "--workers must be a whole number >= 1"),
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


@pytest.mark.parametrize("size,match", [
    ((20, 20), "is 20x20 px, but the skip net with 5 levels needs at least 64x64 px; use a larger image"),
    ((40, 40), "is 40x40 px (32x32 after cropping), but the skip net with 5 levels needs at least 64x64"),
    ((100, 50), "is 100x50 px (96x32 after cropping), but the skip net with 5 levels needs at least")])
def test_a_small_image_is_refused_with_its_real_size(capsys, tmp_path, size, match):
    from PIL import Image

    Image.new("RGB", size, (90, 120, 30)).save(tmp_path / "small.png")
    out = tmp_path / "run"
    argv = ["imp", *TINY, "--out", str(out), "--image", str(tmp_path / "small.png")]
    argv.remove("--crop"), argv.remove("64")
    refused(capsys, argv, match)
    assert not out.exists()


def test_an_image_too_large_for_the_memory_is_refused_with_the_estimate_and_the_way_out(capsys, tmp_path,
                                                                                          mirror_dir, monkeypatch):
    monkeypatch.setattr("lipkit.fitting.memory.available_bytes", lambda device: 0.6 * 2 ** 30)  # 0.6 GiB free
    out = tmp_path / "run"
    argv = ["imp", *TINY, "--out", str(out), "--crop", "512", "--width", "128"]
    err = refused(capsys, argv, "needs about")
    assert "has 0.6 GiB available" in err and "--width (now 128)" in err, err
    side = int(re.search(r"--crop (\d+)", err).group(1))  # the crop it suggests does fit
    from lipkit.fitting.memory import fit_bytes
    from lipkit.models import skip_net

    assert 64 <= side < 512 and fit_bytes(skip_net(), side, side) <= 0.6 * 2 ** 30 < fit_bytes(skip_net(), side + 32,
                                                                                              side + 32)
    assert not out.exists()
    # one 128 px fit of width 64 fits (about 0.4 GiB), two side by side do not
    two = ["imp", *TINY, "--out", str(out), "--crop", "128", "--width", "64", "--seeds", "2", "--workers", "2"]
    refused(capsys, two, "(2 fits at once)")
    assert not out.exists()


def _ticket(capsys, tmp_path) -> str:
    assert main(["imp", *TINY, "--out", str(tmp_path / "run"), "--rounds", "1"]) == 0
    assert main(["ticket", "--run", str(tmp_path / "run"), "--round", "1", "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    return str(tmp_path / "t")


def test_a_damaged_ticket_is_refused_naming_its_file_and_a_good_one_transfers(capsys, tmp_path, mirror_dir):
    ticket = _ticket(capsys, tmp_path)
    out = tmp_path / "transfer"
    argv = ["transfer", "--ticket", ticket, "--task", "denoise", "--image", "set5/bird", "--crop", "64", "--iters", "2",
            "--workers", "1", "--quiet", "--out", str(out)]
    tensors = tmp_path / "t.safetensors"
    good = tensors.read_bytes()
    flipped = bytearray(good)
    flipped[-5] ^= 1
    tensors.write_bytes(bytes(flipped))
    refused(capsys, argv, f"{tensors} is damaged")
    refused(capsys, ["ticket", "--run", str(tmp_path / "run"), "--round", "1", "--out", ticket], "exists")
    assert not out.exists()
    tensors.write_bytes(good)
    assert main(argv) == 0
    records = json.loads(capsys.readouterr().out)["records"]
    assert [r["variant"] for r in records] == ["ticket"] and records[0]["seed"] == 0
    assert records[0]["conv_sparsity"] == pytest.approx(0.2, abs=0.01)


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


PRUNE_INIT = ["prune-init", "--task", "denoise", "--image", "set5/baby", "--crop", "64", "--width", "8",
              "--sigma", "25.5", "--synflow-rounds", "2", "--oes-steps", "2"]


@pytest.mark.parametrize("option,value,match", [
    ("--density", "1.2", "--density is the fraction of conv weights kept"),
    ("--oes-steps", "0", "--oes-steps must be >= 1"),
    ("--seed", "-1", "--seed must be >= 0"),
])
def test_prune_init_names_a_bad_option_and_writes_nothing(capsys, tmp_path, option, value, match):
    argv = [*PRUNE_INIT, "--strategy", "oes", "--density", "0.1", "--seed", "0", "--out", str(tmp_path / "t")]
    argv[argv.index(option) + 1] = value
    refused(capsys, argv, match)
    assert not list(tmp_path.iterdir())


def test_prune_init_writes_a_ticket_with_its_cost_and_never_overwrites_one(capsys, tmp_path, mirror_dir):
    from lipkit.pruning.tickets import Ticket

    out = tmp_path / "ticket"
    assert main([*PRUNE_INIT, "--strategy", "synflow", "--density", "0.05", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["density"] == pytest.approx(0.05, abs=1e-4) and printed["cost"]["passes"] == 2
    ticket = Ticket.load(out)
    assert ticket.meta["strategy"] == "synflow" and ticket.meta["seed"] == 0
    assert main(["transfer", "--ticket", str(out), "--task", "denoise", "--image", "set5/woman", "--crop", "64",
                 "--iters", "2", "--workers", "1", "--quiet", "--out", str(tmp_path / "fits")]) == 0
    capsys.readouterr()
    # --method, the option's old name, still works
    refused(capsys, [*PRUNE_INIT, "--method", "snip", "--density", "0.05", "--out", str(out)], "exists")
