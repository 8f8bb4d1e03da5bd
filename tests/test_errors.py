"""The one error boundary (lipkit.errors): I/O failures, Ctrl-C and bad devices are one line on
stderr with exit code 2 (130 for Ctrl-C), nothing is left half-written, and the same command
then resumes to the records an uninterrupted run writes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lipkit.store.folder as store_folder
from lipkit.cli import main
from lipkit.errors import one_line
from lipkit.store.folder import RunLock
from lipkit.store.paths import ImpFolder
from lipkit.pruning.tickets import Ticket

TINY = ["--task", "denoise", "--image", "set5/baby", "--crop", "64", "--iters", "2", "--width", "8", "--rounds", "1",
        "--workers", "1", "--quiet"]
CLI = [sys.executable, "-m", "lipkit", "imp", "--task", "denoise", "--image", "set5/baby", "--crop", "64",
       "--iters", "60", "--width", "8", "--rounds", "3", "--rate", "0.5", "--workers", "1", "--quiet"]


def refused(capsys, argv, match, code=2):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lipkit: "), err
    assert match in err, err
    return err


def summary_records(run_dir):
    rows = json.loads((run_dir / "summary.json").read_text())["records"]
    return sorted((r["method"], r["seed"], r["round"], r["conv_nonzero"], r["best_psnr"], r["final_psnr"]) for r in rows)


@pytest.mark.parametrize("device,match", [
    ("banana", "device='banana' is not a device: use 'cpu', 'cuda' or 'cuda:N'"),
    pytest.param("cuda", "no usable CUDA device", marks=pytest.mark.skipif(torch.cuda.is_available(),
                                                                          reason="this machine has CUDA")),
])
def test_a_device_that_is_not_there_is_one_line_before_anything_is_written(capsys, tmp_path, device, match):
    out = tmp_path / "run"
    refused(capsys, ["imp", *TINY, "--out", str(out), "--device", device], match)
    assert not out.exists()


def test_an_out_that_is_a_file_is_one_line_for_imp_and_sweep(capsys, tmp_path):
    out = tmp_path / "taken"
    out.write_text("mine")
    refused(capsys, ["imp", *TINY, "--out", str(out)], f"{out} is a file where a folder is needed")
    sweep_file = tmp_path / "s.yml"
    sweep_file.write_text("name: s\nsettings: {crop: 64, width: 8, rounds: 0, seeds: 1}\n"
                          "jobs: [{kind: denoise, image: set5/baby}]\n")
    refused(capsys, ["sweep", str(sweep_file), "--out", str(out), "--quiet"], "is a file where a folder is needed")
    assert out.read_text() == "mine"


def test_a_read_only_folder_is_one_line_naming_the_file(capsys, tmp_path, monkeypatch, mirror_dir):
    out = tmp_path / "run"

    def read_only(self):  # as root a chmod does not stop writes; a read-only mount answers this
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr(RunLock, "__enter__", read_only)
    refused(capsys, ["imp", *TINY, "--out", str(out)], f"cannot write {out / '.lock'} (Read-only file system)")
    monkeypatch.undo()
    assert main(["imp", *TINY, "--out", str(out)]) == 0


def test_a_full_disk_is_one_line_naming_the_file_and_the_run_resumes_to_the_same_records(capsys, tmp_path,
                                                                                        monkeypatch, mirror_dir):
    straight, full = tmp_path / "straight", tmp_path / "full"
    assert main(["imp", *TINY, "--out", str(straight)]) == 0
    real_save = store_folder.save_file

    def disk_full_at_level_1(tensors, filename, *args, **kwargs):
        if "masks_01" in str(filename):  # what safetensors raises: its own error type, no file name
            raise Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                            'message: "No space left on device" })')
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(store_folder, "save_file", disk_full_at_level_1)
    err = refused(capsys, ["imp", *TINY, "--out", str(full)], "no space left on the disk (writing")
    assert "masks_01.safetensors" in err and "run the same command again" in err
    assert not list(full.rglob("*.tmp")), "a half-written file was left behind"
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["imp", *TINY, "--out", str(full)]) == 0
    assert summary_records(full) == summary_records(straight)


def test_ctrl_c_mid_level_is_one_line_and_the_same_command_resumes_to_the_uninterrupted_records(tmp_path,
                                                                                                 mirror_dir):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    subprocess.run(CLI + ["--out", str(straight)], check=True, env=env, capture_output=True, timeout=600)

    # a terminal's Ctrl-C: SIGINT to every process of the command's group. A foreground command
    # starts with SIGINT at its default; the test runner may not (a shell ignores SIGINT in jobs it
    # starts with `&`, and children inherit that: the run then finished every level, in the clean
    # clone's `make test`), so the child gets the default back before it starts
    proc = subprocess.Popen(CLI + ["--out", str(stopped)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    folder = ImpFolder(stopped)
    deadline = time.time() + 300
    while not folder.record(0, 1).exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.05)
    time.sleep(0.1)  # inside level 2's fit
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert not folder.record(0, 3).exists(), "interrupted too late to test a resume"
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lipkit: interrupted; finished in"), err
    assert "seed 0: levels 0-" in lines[0] and "run the same command to resume" in lines[0]
    assert not list(stopped.rglob("*.tmp")), "a half-written file was left behind"

    done = subprocess.run(CLI + ["--out", str(stopped)], check=True, env=env, capture_output=True, text=True,
                          timeout=600)
    assert "best_psnr_mean" in done.stdout
    assert summary_records(stopped) == summary_records(straight)


def test_a_ticket_whose_json_is_not_an_object_is_one_line(capsys, tmp_path, mirror_dir):
    stem = tmp_path / "t"
    (tmp_path / "t.safetensors").write_bytes(b"")
    (tmp_path / "t.json").write_text('["a", "b"]')
    refused(capsys, ["transfer", "--ticket", str(stem), "--task", "denoise", "--image", "set5/baby", "--crop", "64",
                     "--iters", "2", "--out", str(tmp_path / "out"), "--quiet"], "is not a ticket's metadata")


def _a_ticket(tmp_path):
    from lipkit.models import skip_net
    from lipkit.pruning.masks import dense_masks

    net = skip_net(num_channels_down=[8] * 5, num_channels_up=[8] * 5)
    return Ticket.from_net(net, dense_masks(net), round=2, seed=0).save(tmp_path / "t")


def test_an_edited_round_or_seed_of_a_ticket_is_noticed(tmp_path):
    from lipkit.pruning.tickets import TicketMismatchError

    stem = _a_ticket(tmp_path)
    jfile = tmp_path / "t.json"
    meta = json.loads(jfile.read_text())
    meta["round"] = 9
    jfile.write_text(json.dumps(meta))
    with pytest.raises(TicketMismatchError, match="t.json was edited after it was written"):
        Ticket.load(stem)


def test_a_retyped_rewind_tensor_is_refused_even_without_checksums(tmp_path):
    """A ticket saved before the checksums existed: its header retyped F32 -> I32 loaded weights of 1e9."""
    from lipkit.pruning.tickets import TicketMismatchError

    stem = _a_ticket(tmp_path)
    tfile, jfile = tmp_path / "t.safetensors", tmp_path / "t.json"
    meta = json.loads(jfile.read_text())
    for key in ("tensors_sha256", "meta_sha256"):
        meta.pop(key)
    jfile.write_text(json.dumps(meta))
    data = tfile.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k.startswith("rewind/") and k.endswith(".weight"))
    header[name]["dtype"] = "I32"
    text = json.dumps(header, separators=(",", ":")).encode().ljust(n)
    tfile.write_bytes(data[:8] + text + data[8 + n:])
    with pytest.raises(TicketMismatchError, match=f"rewind tensor {name[7:]} is torch.int32, not float32"):
        Ticket.load(stem)


def test_one_line_names_the_file_and_the_way_out():
    assert one_line(PermissionError(errno.EACCES, "Permission denied", "/r/.lock")) == (
        "cannot write /r/.lock (Permission denied): make the folder writable, or choose another --out")
    assert one_line(KeyError("no such image 'x'")) == "no such image 'x'"
    assert one_line(ValueError("two\n  lines")) == "two lines"


@pytest.mark.parametrize("text,matches", [
    ("name: s\njobs: [\n", ["is not valid YAML at line 3"]),
    ("- a\n- b\n", ["holds a list, not a sweep"]),
    ("just words\n", ["holds a str, not a sweep"]),
    ("name: s\njobs: [{kind: denoise, image: []}]\n", ["line 2: jobs[0] expands to no job: its list for 'image' is empty"]),
    ("name: s\nresources: {cpus: abc}\njobs: [{kind: denoise, image: set5/baby}]\n",
     ["line 2: resources.cpus must be a whole number >= 1, got 'abc'"]),
    ("name: s\nsettings: {crop: abc, width: -3}\njobs:\n  - {kind: denoise, image: set5/baby}\n"
     "  - {kind: denoise, image: set5/nope, rate: 2}\n",
     ["line 2: settings: crop must be 0 (whole images) or a whole multiple of 32", "width must be a whole number >= 1",
      "line 5: jobs[1]: rate must be in (0, 1)", "image 'set5/nope' is neither a registry image"]),
])
def test_a_sweep_file_is_checked_whole_before_any_job_starts(capsys, tmp_path, text, matches):
    path, out = tmp_path / "s.yml", tmp_path / "runs"
    path.write_text(text)
    err = refused(capsys, ["sweep", str(path), "--out", str(out), "--quiet"], matches[0])
    assert all(m in err for m in matches), err
    assert not out.exists()


def test_a_chapter_parameter_of_the_wrong_type_is_one_line_naming_it(tmp_path):
    from lipkit.book import PROFILES, check_parameters
    from lipkit.errors import UsageError

    profiles = (Path(__file__).resolve().parents[1] / "book" / "profiles.yml")
    assert PROFILES.name == profiles.name
    ok = dict(profile="quick", crop=64, kate_window=[192, 256], denoise_iters=700)
    check_parameters(ok, "01_dip_basics", profiles)
    with pytest.raises(UsageError, match=r"chapter 01_dip_basics: crop = 'abc': expected a whole number; "
                                         r"kate_window must be two whole numbers"):
        check_parameters(dict(ok, crop="abc", kate_window=[1]), "01_dip_basics", profiles)
    with pytest.raises(UsageError, match=r"densities must be a list of fractions .* got \[0.5, 2\]"):
        check_parameters(dict(densities=[0.5, 2]), "08_lip_against_its_rivals", profiles)


def test_chapter9_without_cifar_batches_is_refused_before_any_run(tmp_path):
    import yaml

    from lipkit.book.classification import classifier_settings
    from lipkit.datasets import CIFAR_FOLDER
    from lipkit.errors import UsageError

    profiles = yaml.safe_load((Path(__file__).resolve().parents[1] / "book" / "profiles.yml").read_text())
    paper = profiles["paper"]["09_restoration_and_classification"]
    arch = dict(num_channels_down=[128] * 5, num_channels_up=[128] * 5)
    with pytest.raises(UsageError, match=f"put {CIFAR_FOLDER}/ .* give that folder as data_root") as e:
        classifier_settings(paper, arch)  # the paper profile names no data_root: nothing may start
    assert "\n" not in str(e.value)
    (tmp_path / CIFAR_FOLDER).mkdir()
    (tmp_path / CIFAR_FOLDER / "test_batch").write_bytes(b"")  # the training batches still missing
    with pytest.raises(UsageError, match="data_root"):
        classifier_settings(dict(paper, data_root=str(tmp_path)), arch)
    smoke = profiles["smoke"]["09_restoration_and_classification"]
    assert classifier_settings(smoke, arch).dataset == "fake"  # the smoke run's stand-in, as its profile says


def test_papermill_with_a_bad_parameter_stops_the_chapter_in_its_first_cell_with_one_line(tmp_path):
    from conftest import ROOT, run_chapters

    from lipkit.errors import UsageError

    if run_chapters is None:
        pytest.skip("the book's tools are not installed")
    dest = tmp_path / "01_dip_basics.ipynb"
    with pytest.raises(UsageError, match=r"^01_dip_basics: chapter 01_dip_basics: crop = 'abc': expected a whole "
                                         r"number \(its partial output is in"):
        run_chapters.execute(ROOT / "book" / "01_dip_basics.ipynb", dest, "quick", {"crop": "abc"}, "python3")
    assert not dest.exists() and dest.with_suffix(".failed.ipynb").exists()


def test_an_image_neither_cached_mirrored_nor_downloadable_is_one_line(capsys, tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setenv("LIPKIT_DATA_MIRROR", str(tmp_path / "empty"))
    monkeypatch.setenv("LIPKIT_DATA_URL_BASE", "http://127.0.0.1:9")  # nothing listens on port 9
    out = tmp_path / "run"
    refused(capsys, ["imp", *TINY, "--out", str(out), "--image", "set5/head"], "could not get 'set5/head'")
    assert not out.exists()
    fake = tmp_path / "mirror"
    (fake / "set5").mkdir(parents=True)
    (fake / "set5" / "head.png").write_bytes(b"not the image")
    monkeypatch.setenv("LIPKIT_DATA_MIRROR", str(fake))
    refused(capsys, ["imp", *TINY, "--out", str(out), "--image", "set5/head"], "refusing")


def test_fewer_rounds_on_a_finished_folder_keep_every_level_in_the_summary(capsys, tmp_path, mirror_dir):
    out = tmp_path / "run"
    argv = ["imp", *TINY, "--out", str(out)]
    argv[argv.index("--rounds") + 1] = "2"
    assert main(argv) == 0
    capsys.readouterr()
    argv[argv.index("--rounds") + 1] = "1"
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rounds_in_folder"] == 2 and len(printed["sparsity"]) == 2  # the levels asked for, and it says so
    rounds = sorted(r["round"] for r in json.loads((out / "summary.json").read_text())["records"])
    assert rounds == [0, 1, 2]  # the summary describes every finished level, as config.json's rounds do


def test_a_damaged_cache_record_is_made_again_with_a_warning_naming_it(tmp_path):
    from lipkit.store.cache import RecordCache

    cache = RecordCache(tmp_path, computed_by="lipkit.studies.transfer")
    key = cache.key({"job": 1})
    cache.put(key, {"best_psnr": 30.0})
    cache.path(key).write_text("{\"best_psnr\": 3")
    with pytest.warns(UserWarning, match=f"{cache.path(key).name} is damaged; its job runs again"):
        assert cache.get(key) is None
    assert cache.put(key, {"best_psnr": 31.0}) and cache.get(key)["best_psnr"] == 31.0
