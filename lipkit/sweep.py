"""Sweeps: a grid of IMP runs fanned out over a local process pool or a Ray cluster, and gathered.

A sweep file (YAML) names the grid::

    name: paper_ch2
    settings: {crop: 0, width: 128, rounds: 16, rounds_sr: 24, rate: 0.2, seeds: 3, ...}
    jobs:                                  # each entry expands over its list-valued keys
      - {task: [denoise, sr4, sr8, inpaint_text, inpaint_random]}      # lipkit.experiments.PAPER_TASKS
      - {kind: denoise, image: [set14/pepper, set14/lenna], sigma: 25.5, baselines: []}
      - {task: denoise, method: random}    # any Experiments setting, or structure, rate, rounds, method
    resources: {cpus: 1, gpus: 0.25}       # per job: Ray's num_cpus / num_gpus; threads on a CPU
    retries: 3                             # runs of a job whose worker or node died

``settings`` are :class:`lipkit.experiments.Experiments` fields, as in ``book/profiles.yml``. A
job is one run folder, named as the chapters name it (:meth:`Experiments.run_name`) and made by
the same call (:meth:`Experiments.imp`), so a sweep's ``ROOT`` is a runs folder the chapters read
unchanged. A job resumes a folder after its last finished level, a finished job costs nothing,
and a folder made with other settings is refused, as for ``python -m lipkit imp``. Per job,
``ROOT/_sweep/<job>.json`` records its state (running, done, failed with its error, busy) and its
attempts. A job that fails for a reason that will not go away is reported once; a worker that
dies is replaced and the job runs again, up to ``retries`` times.

``engine="local"`` (the default) runs jobs in worker processes on this machine; ``engine="ray"``
as Ray tasks (the ``lipkit[ray]`` extra), on a new local Ray instance or on the cluster at
``address``, whose nodes must all see ``ROOT``.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lipkit.experiments import PAPER_TASKS, Experiments
from lipkit.store.folder import RunInUseError, read_json, write_json
from lipkit.store.paths import ImpFolder

EXPANDED = ("task", "kind", "image", "factor", "mask", "method", "structure", "rate", "rounds", "sigma", "crop",
            "width")  # keys whose lists span the grid; any other list (baselines) is a value
RUN_KEYS = ("kind", "image", "factor", "mask", "method", "structure", "rate", "rounds")  # Experiments.imp's
ENGINES = ("local", "ray")


class SweepError(ValueError):
    """A sweep file that cannot work; the message names the entry and the fix."""


@dataclass
class SweepJob:
    """One run folder: the Experiments settings and the :meth:`Experiments.imp` arguments."""

    id: str
    settings: dict
    run: dict

    def experiments(self, root, **extra) -> Experiments:
        return Experiments(root, **self.settings, **extra)


@dataclass
class Sweep:
    name: str
    jobs: list[SweepJob]
    cpus: int = 1
    gpus: float = 0.0
    retries: int = 3
    source: str = ""


def load(path: str | os.PathLike) -> Sweep:
    """Read and expand a sweep file, refusing what cannot work before anything runs."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - {"name", "settings", "jobs", "resources", "retries"}
    if unknown:
        raise SweepError(f"{path}: unknown keys {sorted(unknown)}; a sweep file has name, settings, jobs, "
                         "resources and retries")
    resources = spec.get("resources") or {}
    cpus, gpus, retries = int(resources.get("cpus", 1)), float(resources.get("gpus", 0)), int(spec.get("retries", 3))
    if cpus < 1 or gpus < 0 or retries < 0:
        raise SweepError(f"{path}: resources.cpus must be >= 1, resources.gpus >= 0 and retries >= 0")
    jobs = expand(spec.get("settings") or {}, spec.get("jobs") or [], where=str(path))
    return Sweep(spec.get("name", path.stem), jobs, cpus, gpus, retries, source=str(path))


def expand(settings: dict, entries: Sequence[dict], *, where: str = "sweep") -> list[SweepJob]:
    """The jobs of ``entries`` over ``settings``: every combination of each entry's list-valued
    keys among :data:`EXPANDED`, one job per run folder (the same folder twice must be the same job)."""
    from dataclasses import fields

    known = {f.name for f in fields(Experiments)} - {"runs_root", "workers", "progress"}
    bad = set(settings) - known
    if bad:
        raise SweepError(f"{where}: settings {sorted(bad)} are not Experiments settings; choose from {sorted(known)}")
    if not entries:
        raise SweepError(f"{where}: no jobs; list at least one entry under 'jobs'")
    jobs: dict[str, SweepJob] = {}
    for i, entry in enumerate(entries):
        bad = set(entry) - known - set(EXPANDED)
        if bad:
            raise SweepError(f"{where}: jobs[{i}] has unknown keys {sorted(bad)}")
        if ("task" in entry) == ("kind" in entry and "image" in entry):
            raise SweepError(f"{where}: jobs[{i}] needs either 'task' (a name in {sorted(PAPER_TASKS)}) "
                             "or both 'kind' and 'image'")
        spread = [k for k in EXPANDED if isinstance(entry.get(k), list)]
        for values in itertools.product(*(entry[k] for k in spread)):
            one = dict(entry, **dict(zip(spread, values)))
            if "task" in one:
                if one["task"] not in PAPER_TASKS:
                    raise SweepError(f"{where}: jobs[{i}]: unknown task {one['task']!r}; choose from "
                                     f"{sorted(PAPER_TASKS)}, or give kind and image")
                one.update({k: v for k, v in PAPER_TASKS[one.pop("task")].items() if k != "title"})
            job_settings = dict(settings, **{k: v for k, v in one.items() if k in known})
            run = {k: one[k] for k in RUN_KEYS if k in one}
            name_args = {k: run[k] for k in ("factor", "mask", "structure", "rate", "method") if k in run}
            job = SweepJob(Experiments(".", **job_settings).run_name(run["kind"], run["image"], **name_args),
                           job_settings, run)
            if job.id in jobs and jobs[job.id] != job:
                raise SweepError(f"{where}: two jobs write the folder {job.id} with different settings; "
                                 "give one of them another setting that names its folder (crop, width, rate, ...)")
            jobs[job.id] = job
    return list(jobs.values())


# --- one job --------------------------------------------------------------------------------------
def state_file(root, job_id: str) -> Path:
    return Path(root) / "_sweep" / f"{job_id}.json"


def _set_state(root, job: SweepJob, **state) -> dict:
    path = state_file(root, job.id)
    old = read_json(path) if path.exists() else {}
    new = dict(old, **state, updated=time.time())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, new)
    return new


def _locked(folder: Path) -> bool:
    """Whether another process holds ``folder``'s run lock (a job of another sweep is writing it)."""
    from lipkit.store.folder import RunLock

    if not folder.is_dir():
        return False
    try:
        with RunLock(folder):
            return False
    except RunInUseError:
        return True


def run_job(job: SweepJob, root: str, threads: int) -> dict:
    """Run (or resume) ``job``'s folder under ``root`` with ``threads`` CPU threads; never raises
    for a job that fails: returns ``{"id", "state", "error", "seconds"}`` and records the state."""
    import torch

    if _locked(Path(root) / job.id):  # another sweep's job on this folder: leave it, and its state file, alone
        return dict(id=job.id, state="busy", seconds=0.0,
                    error="another process is writing this folder; run the sweep again when it is done")
    torch.set_num_threads(max(1, threads))
    attempts = (read_json(state_file(root, job.id)).get("attempts", 0) if state_file(root, job.id).exists() else 0)
    _set_state(root, job, state="running", pid=os.getpid(), host=socket.gethostname(), attempts=attempts + 1,
               error=None)
    start = time.perf_counter()
    try:
        run = dict(job.run)
        job.experiments(root, workers=threads, progress=False).imp(run.pop("kind"), run.pop("image"), **run)
        state, error = "done", None
    except RunInUseError as err:
        state, error = "busy", str(err)
    except Exception as err:  # reported once with its message; a dead worker is the engine's to retry
        state, error = "failed", f"{type(err).__name__}: {err}".replace("\n", " ")
    seconds = round(time.perf_counter() - start, 3)
    _set_state(root, job, state=state, error=error, seconds=seconds)
    return dict(id=job.id, state=state, error=error, seconds=seconds)


# --- where a sweep stands, and what it found ------------------------------------------------------
def levels_expected(job: SweepJob) -> int:
    """Records a finished folder holds: per seed, levels 0..R and R per branch baseline."""
    ex = job.experiments(".")
    rounds = job.run.get("rounds", ex.rounds_for(job.run["kind"]))
    structure = job.run.get("structure", "unstructured")
    baselines = job.run.get("baselines", ex.baselines if structure == "unstructured" else [])
    return ex.seeds * (rounds + 1 + len(baselines) * rounds)


def levels_done(root, job: SweepJob) -> int:
    folder = ImpFolder(Path(root) / job.id)
    return sum(len(list(folder.seed_dir(s).rglob("round_*.json"))) for s in range(job.experiments(".").seeds))


def status(sweep: Sweep, root) -> list[dict]:
    """One row per job: ``id``, ``state`` (done, partial, pending, running, failed, busy),
    ``levels`` finished and ``expected``, ``attempts`` and the last ``error``."""
    rows = []
    for job in sweep.jobs:
        path = state_file(root, job.id)
        st = read_json(path) if path.exists() else {}
        done, expected = levels_done(root, job), levels_expected(job)
        state = "done" if done >= expected else ("partial" if done else "pending")
        if st.get("state") in ("failed", "busy") or (st.get("state") == "running" and _locked(Path(root) / job.id)):
            state = st["state"] if done < expected else "done"
        rows.append(dict(id=job.id, state=state, levels=done, expected=expected, attempts=st.get("attempts", 0),
                         error=st.get("error") if state in ("failed", "busy") else None))
    return rows


def collect(root) -> list[dict]:
    """Every record of every run folder under ``root`` (IMP levels and baselines, all seeds), each
    with ``run`` (the folder's name) and the task's ``kind``, ``image`` and ``params``: one table
    for the chapters' plots."""
    from lipkit.imp import ImpRun

    out = []
    for folder in sorted(p for p in Path(root).iterdir() if (p / "config.json").is_file()):
        run = ImpRun(folder)
        task = run.config.get("task", {})
        for record in run.records():
            out.append(dict(record, run=folder.name, kind=task.get("kind"), image=task.get("image"),
                            params=task.get("params")))
    return out
