"""Sweeps: a grid of IMP runs fanned out over a local process pool or a Ray cluster, and gathered.

A sweep file (YAML) names the grid::

    name: paper_ch2
    settings: {crop: 0, width: 128, rounds: 16, rounds_sr: 24, rate: 0.2, seeds: 3, ...}
    jobs:                                  # each entry expands over its list-valued keys
      - {task: [denoise, sr4, sr8, inpaint_text, inpaint_random]}      # lipkit.experiments.PAPER_TASKS
      - {kind: denoise, image: [set14/pepper, set14/lenna], sigma: 25.5, baselines: []}
      - {task: denoise, criterion: random} # any Experiments setting, or structure, rate, rounds, criterion
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
from lipkit.parallel import shutdown_workers
from lipkit.store.folder import RENAMED_FIELDS, RunInUseError, read_json, write_json
from lipkit.store.paths import ImpFolder

EXPANDED = ("task", "kind", "image", "factor", "mask", "criterion", "structure", "rate", "rounds", "sigma", "crop",
            "width")  # keys whose lists span the grid; any other list (baselines) is a value
RUN_KEYS = ("kind", "image", "factor", "mask", "criterion", "structure", "rate", "rounds")  # Experiments.imp's
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
    text = path.read_text()
    try:
        spec = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SweepError(f"{path} is not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(spec, dict):
        raise SweepError(f"{path} holds a {type(spec).__name__}, not a sweep: a sweep file is a mapping with name, "
                         "settings, jobs, resources and retries (see sweeps/)")
    lines = _lines(text)
    found = []
    unknown = set(spec) - {"name", "settings", "jobs", "resources", "retries"}
    if unknown:
        found.append(f"unknown keys {sorted(unknown)}; a sweep file has name, settings, jobs, resources and retries")
    resources = spec.get("resources") or {}
    if not isinstance(resources, dict):
        resources, _ = {}, found.append(f"line {lines.get('resources', '?')}: resources must be a mapping "
                                        "(cpus, gpus)")
    cpus, gpus, retries = resources.get("cpus", 1), resources.get("gpus", 0), spec.get("retries", 3)
    for name, value, ok in (("resources.cpus", cpus, isinstance(cpus, int) and not isinstance(cpus, bool) and cpus >= 1),
                            ("resources.gpus", gpus, isinstance(gpus, (int, float)) and not isinstance(gpus, bool)
                             and gpus >= 0),
                            ("retries", retries, isinstance(retries, int) and not isinstance(retries, bool)
                             and retries >= 0)):
        if not ok:
            at = lines.get(name.split(".")[0], "?")
            found.append(f"line {at}: {name} must be a " + ("number >= 0" if name == "resources.gpus" else
                                                            "whole number >= " + ("1" if name.endswith("cpus") else "0"))
                         + f", got {value!r}")
    jobs = []
    try:
        jobs = expand(spec.get("settings") or {}, spec.get("jobs") or [], where=str(path), lines=lines)
    except SweepError as err:
        found.append(str(err).removeprefix(f"{path}: "))
    if found:
        raise SweepError(f"{path}: " + "; ".join(found))
    return Sweep(spec.get("name", path.stem), jobs, cpus, float(gpus), retries, source=str(path))


def _missing_images(job: dict) -> list[str]:
    """The job's image and mask that are neither registry names nor files (a mask may also be
    drawn: "bernoulli", "text")."""
    from lipkit.data import registry

    out = []
    for key in ("image", "mask"):
        name = job.get(key)
        if name is None or (key == "mask" and name in ("bernoulli", "text")):
            continue
        if not isinstance(name, str) or (name not in registry() and not Path(name).is_file()):
            out.append(f"{key} {name!r} is neither a registry image (lipkit.data.names()) nor a file")
    return out


def _lines(text: str) -> dict:
    """Line numbers (from 1) of a sweep file's top-level keys and of each ``jobs[i]`` entry."""
    import yaml

    out: dict = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out
    if not isinstance(root, yaml.MappingNode):
        return out
    for key, value in root.value:
        out[key.value] = key.start_mark.line + 1
        if key.value == "jobs" and isinstance(value, yaml.SequenceNode):
            for i, item in enumerate(value.value):
                out[f"jobs[{i}]"] = item.start_mark.line + 1
    return out


def expand(settings: dict, entries: Sequence[dict], *, where: str = "sweep", lines: dict | None = None
           ) -> list[SweepJob]:
    """The jobs of ``entries`` over ``settings``: every combination of each entry's list-valued
    keys among :data:`EXPANDED`, one job per run folder (the same folder twice must be the same job).
    Every problem is named at once (with its line in the file, from ``lines``) in one :class:`SweepError`."""
    from dataclasses import fields

    from lipkit.checks import problems
    from lipkit.errors import UsageError, one_line

    lines = lines or {}
    known = {f.name for f in fields(Experiments)} - {"runs_root", "workers", "progress"}
    found: list[str] = []
    if not isinstance(settings, dict):
        settings, _ = {}, found.append(f"line {lines.get('settings', '?')}: settings must be a mapping")
    bad = set(settings) - known
    if bad:
        found.append(f"line {lines.get('settings', '?')}: settings {sorted(bad)} are not Experiments settings; "
                     f"choose from {sorted(known)}")
    settings_problems = [f"line {lines.get('settings', '?')}: settings: {p}" for p in problems(settings)]
    found += settings_problems
    settings_problems += list(bad)  # no job can be made from settings Experiments does not have
    if not isinstance(entries, list) or not entries:
        found.append("no jobs; list at least one entry under 'jobs'")
        entries = []
    jobs: dict[str, SweepJob] = {}
    for i, entry in enumerate(entries):
        at = f"line {lines.get(f'jobs[{i}]', '?')}: jobs[{i}]"
        if not isinstance(entry, dict):
            found.append(f"{at} must be a mapping of settings, got {entry!r}")
            continue
        bad = set(entry) - known - set(EXPANDED)
        if bad:
            renamed = [f"; {old!r} (renamed) is now {RENAMED_FIELDS[old]!r}" for old in sorted(bad)
                       if RENAMED_FIELDS.get(old) in EXPANDED]
            found.append(f"{at} has unknown keys {sorted(bad)}" + "".join(renamed))
            continue
        if ("task" in entry) == ("kind" in entry and "image" in entry):
            found.append(f"{at} needs either 'task' (a name in {sorted(PAPER_TASKS)}) or both 'kind' and 'image'")
            continue
        spread = [k for k in EXPANDED if isinstance(entry.get(k), list)]
        empty = [k for k in spread if not entry[k]]
        if empty:
            found.append(f"{at} expands to no job: its list for {empty[0]!r} is empty")
            continue
        said = set()
        for values in itertools.product(*(entry[k] for k in spread)):
            one = dict(entry, **dict(zip(spread, values)))
            if "task" in one:
                if one["task"] not in PAPER_TASKS:
                    found.append(f"{at}: unknown task {one['task']!r}; choose from {sorted(PAPER_TASKS)}, or give "
                                 "kind and image")
                    continue
                one.update({k: v for k, v in PAPER_TASKS[one.pop("task")].items() if k != "title"})
            job_problems = [p for p in problems(one) + _missing_images(one) if p not in said]  # the CLI's rules
            said.update(job_problems)
            found += [f"{at}: {p}" for p in job_problems]
            if job_problems or settings_problems:
                continue
            job_settings = dict(settings, **{k: v for k, v in one.items() if k in known})
            run = {k: one[k] for k in RUN_KEYS if k in one}
            name_args = {k: run[k] for k in ("factor", "mask", "structure", "rate", "criterion") if k in run}
            try:  # the folder's name hashes the task, so an image that cannot be read is refused here
                name = Experiments(".", **job_settings).run_name(run["kind"], run["image"], **name_args)
            except (UsageError, ValueError, OSError) as err:
                found.append(f"{at}: {one_line(err)}")
                continue
            job = SweepJob(name, job_settings, run)
            if job.id in jobs and jobs[job.id] != job:
                found.append(f"{at}: two jobs write the folder {job.id} with different settings; give one of them "
                             "another setting that names its folder (crop, width, rate, ...)")
                continue
            jobs[job.id] = job
    if found:
        raise SweepError(f"{where}: " + "; ".join(dict.fromkeys(found)))
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
    finally:
        # the job's own seed workers (lipkit.parallel keeps them for the process's next call) end with
        # the job: a sweep worker, a Ray task's process above all, outlives it and runs other jobs
        shutdown_workers()
    seconds = round(time.perf_counter() - start, 3)
    _set_state(root, job, state=state, error=error, seconds=seconds)
    return dict(id=job.id, state=state, error=error, seconds=seconds)


# --- where a sweep stands, and what it found ------------------------------------------------------
def records_expected(job: SweepJob) -> int:
    """Records a finished folder holds: per seed, levels 0..R and R per branch baseline."""
    ex = job.experiments(".")
    rounds = job.run.get("rounds", ex.rounds_for(job.run["kind"]))
    structure = job.run.get("structure", "unstructured")
    baselines = job.run.get("baselines", ex.baselines if structure == "unstructured" else [])
    return ex.seeds * (rounds + 1 + len(baselines) * rounds)


def records_done(root, job: SweepJob) -> int:
    """Level records the job's folder holds, main chain and baselines (of :func:`records_expected`)."""
    return ImpFolder(Path(root) / job.id).records_written(range(job.experiments(".").seeds))


def status(sweep: Sweep, root) -> list[dict]:
    """One row per job: ``id``, ``state`` (done, partial, pending, running, failed, busy),
    ``records`` written (levels and baseline levels, all seeds) of ``expected``, ``attempts`` and the last ``error``."""
    rows = []
    for job in sweep.jobs:
        path = state_file(root, job.id)
        st = read_json(path) if path.exists() else {}
        done, expected = records_done(root, job), records_expected(job)
        state = "done" if done >= expected else ("partial" if done else "pending")
        if st.get("state") in ("failed", "busy") or (st.get("state") == "running" and _locked(Path(root) / job.id)):
            state = st["state"] if done < expected else "done"
        rows.append(dict(id=job.id, state=state, records=done, expected=expected, attempts=st.get("attempts", 0),
                         error=st.get("error") if state in ("failed", "busy") else None))
    return rows


def collect(root) -> list[dict]:
    """Every record of every run folder under ``root`` (IMP levels and baselines, all seeds), each
    with ``run`` (the folder's name) and the task's ``kind``, ``image`` and ``params``: one table
    for the chapters' plots."""
    from lipkit.lottery.imp import ImpRun

    out = []
    for folder in sorted(p for p in Path(root).iterdir() if (p / "config.json").is_file()):
        run = ImpRun(folder)
        task = run.config.get("task", {})
        for record in run.records():
            out.append(dict(record, run=folder.name, kind=task.get("kind"), image=task.get("image"),
                            params=task.get("params")))
    return out
