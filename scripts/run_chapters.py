"""Execute the book's chapters with papermill into a staging folder, then (optionally) build.

    python scripts/run_chapters.py --profile quick            # CPU, CI-sized (default)
    python scripts/run_chapters.py --profile paper            # paper settings, on a GPU
    python scripts/run_chapters.py --profile auto             # paper when CUDA is present
    python scripts/run_chapters.py --only 01_dip_basics       # re-run one chapter, keep the others
    python scripts/run_chapters.py --build                    # then jupyter-book build -> _build/html
    python scripts/run_chapters.py --profile paper --record   # and keep the glued numbers in results/
    python scripts/run_chapters.py --profile smoke            # the paper path at 1 step a fit (CI)

Each chapter runs once into _build/stage/book/<chapter>.ipynb (the smoke profile: _build/stage_smoke/,
so that it never replaces the copies the site is built from). A chapter that fails is removed
from the stage and the script exits non-zero, so a half-executed chapter is never published.
Executed copies record the profile and the source notebook's hash; the tests reuse them.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
STAGE = ROOT / "_build" / "stage"
SMOKE_STAGE = ROOT / "_build" / "stage_smoke"
COPY = ["_config.yml", "_toc.yml", "_vendor"]


def _load_timings():
    spec = importlib.util.spec_from_file_location("timings", Path(__file__).with_name("timings.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


timings = _load_timings()  # where the build's time goes: _build/timings.json


def chapters() -> list[Path]:
    """Notebooks in table-of-contents order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [entry["file"] for entry in toc.get("chapters", [])]
    out = []
    for f in files:
        nb = ROOT / f"{f}.ipynb"
        if nb.exists():
            out.append(nb)
    return out


def source_hash(nb: Path) -> str:
    return hashlib.sha256(nb.read_bytes()).hexdigest()


def load_profile(name: str) -> tuple[str, dict]:
    profiles = yaml.safe_load((BOOK / "profiles.yml").read_text())
    if name == "auto":
        import torch

        name = "paper" if torch.cuda.is_available() else "quick"
    if name not in profiles:
        raise SystemExit(f"unknown profile {name!r}; book/profiles.yml has {sorted(profiles)}")
    return name, profiles[name]


def stage_sources(stage: Path) -> None:
    """Copy the non-notebook sources (config, pages, bibliography, vendored JS) to the stage."""
    stage.mkdir(parents=True, exist_ok=True)
    for name in COPY:
        src = ROOT / name
        dst = stage / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dst)
    (stage / "book").mkdir(exist_ok=True)
    for src in BOOK.iterdir():
        if src.is_file() and src.suffix != ".ipynb":
            shutil.copy2(src, stage / "book" / src.name)


def is_current(executed: Path, source: Path, profile: str) -> bool:
    """True when ``executed`` ran from this exact source with this profile."""
    if not executed.exists():
        return False
    meta = nbformat.read(executed, as_version=4).metadata.get("lipkit", {})
    return meta.get("profile") == profile and meta.get("source_sha256") == source_hash(source)


# tqdm's bar as it prints it: "desc: 100%|####| 8/8 [00:50<00:00, 6.29s/it]" or "26/? [00:02<00:00, ...]"
PROGRESS_BAR = re.compile(r"\S+/\S+ \[[\d:]+<")


def is_progress_bar(output) -> bool:
    """A tqdm progress bar (a widget, or text on stderr): it belongs to interactive use, not to a page."""
    if output.get("output_type") == "stream":
        return output.get("name") == "stderr" and bool(PROGRESS_BAR.search(output.get("text", "")))
    text = output.get("data", {}).get("text/plain", "")
    return "application/vnd.jupyter.widget-view+json" in output.get("data", {}) and bool(PROGRESS_BAR.search(text))


def execute(nb: Path, dest: Path, profile: str, params: dict, kernel: str) -> float:
    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(dest), parameters=params, kernel_name=kernel, cwd=str(nb.parent),
                            progress_bar=False, log_output=False, execution_timeout=3 * 3600,
                            coalesce_streams=True)
    except BaseException as err:
        failed = dest.with_suffix(".failed.ipynb")
        if dest.exists():
            dest.replace(failed)  # keep it for debugging, outside the book
        if getattr(err, "ename", None) == "UsageError":  # a parameter the chapter refused: its one line
            from lipkit.errors import UsageError

            raise UsageError(f"{nb.stem}: {err.evalue} (its partial output is in {failed})") from None
        print(f"run_chapters: {nb.name} FAILED; its partial output is in {failed}", file=sys.stderr)
        raise
    seconds = time.perf_counter() - t0
    book = nbformat.read(dest, as_version=4)
    for cell in book.cells:  # collapse the injected parameters on the page
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not is_progress_bar(o)]
    book.metadata["lipkit"] = {"profile": profile, "source_sha256": source_hash(nb),
                               "seconds": round(seconds, 1)}
    nbformat.write(book, dest)
    return seconds


def run(profile: str = "quick", only: list[str] | None = None, stage: Path = STAGE,
        kernel: str = "python3", force: bool = False) -> Path:
    """Execute every (or ``only`` these) chapter(s) into ``stage``; returns the stage folder."""
    profile, params = load_profile(profile)
    stage_sources(stage)
    known = {nb.stem: nb for nb in chapters()}
    for stem in only or []:
        if stem not in known:
            raise SystemExit(f"unknown chapter {stem!r}; chapters: {sorted(known)}")
    for stem, nb in known.items():
        if only and stem not in only:
            continue
        dest = stage / "book" / nb.name
        if not force and is_current(dest, nb, profile):
            print(f"run_chapters: {stem}: up to date ({profile})")
            continue
        print(f"run_chapters: {stem}: executing with profile {profile} ...", flush=True)
        seconds = execute(nb, dest, profile, params.get(stem, {}), kernel)
        timings.record(f"{'smoke' if profile == 'smoke' else 'chapter'}:{stem}", seconds)
        print(f"run_chapters: {stem}: done in {seconds:.0f} s", flush=True)
    return stage


def glued_values(executed: Path) -> dict:
    """name -> value of every myst_nb ``glue``d scalar in an executed notebook."""
    book = nbformat.read(executed, as_version=4)
    out = {}
    for cell in book.cells:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if meta:
                text = o["data"].get(meta["mime_prefix"] + "text/plain")
                try:
                    out[meta["name"]] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    out[meta["name"]] = text
    return out


def record(stems: list[str], profile: str, stage: Path = STAGE, results: Path = ROOT / "results") -> list[Path]:
    """Write the glued numbers of the executed ``stems`` to results/<profile>_profile/<stem>.json,
    with what made them: device, torch, commit, date and the seeding scheme (lipkit.book.results)."""
    from lipkit.device import default_device
    from lipkit.runs.ledger import provenance
    from lipkit.seeding import SCHEME

    made = provenance(default_device())  # device, torch, commit (dirty: the code changed), UTC date
    written = []
    for stem in stems:
        executed = stage / "book" / f"{stem}.ipynb"
        meta = nbformat.read(executed, as_version=4).metadata.get("lipkit", {})
        if meta.get("profile") != profile:
            raise SystemExit(f"refusing to record {stem}: its executed copy ran with {meta.get('profile')!r}")
        out = results / f"{profile}_profile" / f"{stem}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(
            chapter=stem, profile=profile, date=made["date"][:10], device=made["device"],
            torch=made["torch"], commit=made["commit"], seeding=SCHEME,
            source_sha256=meta.get("source_sha256"), chapter_seconds=meta.get("seconds"),
            glued=glued_values(executed)), indent=1, ensure_ascii=False) + "\n")
        written.append(out)
        print(f"run_chapters: recorded {out}")
    return written


def build(stage: Path = STAGE) -> None:
    missing = [nb.name for nb in chapters() if not (stage / "book" / nb.name).exists()]
    if missing:
        raise SystemExit(f"refusing to build: chapters not executed: {missing}")
    cmd = ["jupyter-book", "build", str(stage), "--path-output", str(ROOT), "-W", "--keep-going"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    timings.record("site:build", time.perf_counter() - t0)
    print(f"run_chapters: site built at {ROOT / '_build' / 'html' / 'index.html'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick", help="quick (default), paper, or auto")
    ap.add_argument("--only", nargs="*", help="chapter stems to execute (others are kept as they are)")
    ap.add_argument("--force", action="store_true", help="re-execute even when an executed copy is current")
    ap.add_argument("--kernel", default="python3")
    ap.add_argument("--build", action="store_true", help="run jupyter-book build afterwards")
    ap.add_argument("--record", action="store_true",
                    help="write the glued numbers to results/<profile>_profile/ (for paper-scale runs)")
    a = ap.parse_args()
    stage = run(a.profile, a.only, stage=SMOKE_STAGE if a.profile == "smoke" else STAGE, kernel=a.kernel,
                force=a.force)
    if a.record:
        profile, _ = load_profile(a.profile)
        record(a.only or [nb.stem for nb in chapters()], profile, stage)
    if a.build:
        if stage == SMOKE_STAGE:
            raise SystemExit("the smoke profile's pages are not a book (their numbers mean nothing); "
                             "build another profile")
        build(stage)


if __name__ == "__main__":
    from lipkit.errors import reported  # one line for a user's error or Ctrl-C; LIPKIT_DEBUG=1 for the traceback

    raise SystemExit(reported(lambda: main() or 0, interrupted=lambda: "the chapters executed before are kept "
                                                                       "(_build/stage); the same command runs the rest"))
