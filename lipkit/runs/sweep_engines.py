"""Where a sweep's jobs run: worker processes on this machine, or Ray tasks on a cluster.

Both engines skip the jobs whose folders are finished, give each job its CPU threads, and run a
job again when its worker dies (``retries`` times): the job resumes its folder after the last
finished level, so its records equal an uninterrupted run's. A job that fails for a reason that
will not go away comes back once, with its message, and the others go on.

- ``local``: ``spawn`` worker processes, as many as the cores hold jobs of ``cpus`` threads each
  (one at a time on a GPU unless ``workers`` says otherwise). A worker that dies breaks the pool;
  the unfinished jobs then run again in a new one.
- ``ray``: one Ray task per job with ``num_cpus`` and ``num_gpus`` (fractions pack several jobs on
  a GPU, each seeing only its GPU), ``max_retries`` for worker and node death and no retry of
  Python errors. ``address`` None starts a private local instance; ``"auto"`` or ``host:port``
  joins a running cluster (``ray start``, ``ray symmetric-run`` under Slurm, KubeRay). Ray's usage
  statistics are switched off before Ray is imported.
"""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool
from typing import Iterator

from lipkit.parallel import Engine
from lipkit.runs.sweep import ENGINES, Sweep, SweepJob, records_done, records_expected, run_job

RAY_VERSION = "2.60.0"  # the lipkit[ray] extra's pin: a driver and its cluster must run the same Ray


def pending(sweep: Sweep, root) -> list[SweepJob]:
    """The jobs whose folders do not hold every record yet."""
    return [job for job in sweep.jobs if records_done(root, job) < records_expected(job)]


def run_sweep(sweep: Sweep, root, *, engine: str = "local", address: str | None = None, workers: int | None = None,
              progress: bool = True) -> list[dict]:
    """Run every unfinished job of ``sweep`` into ``root`` on ``engine``; one result per job run
    (``id``, ``state``: done, failed, busy or crashed, ``error``, ``seconds``), finished jobs none."""
    from tqdm.auto import tqdm

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    todo = pending(sweep, root)
    os.makedirs(root, exist_ok=True)
    results = []
    bar = tqdm(total=len(todo), desc=f"sweep {sweep.name}", unit="job", disable=not progress or not todo)
    runner = _run_local(todo, root, sweep, workers) if engine == "local" else _run_ray(todo, root, sweep, address)
    for result in runner:
        results.append(result)
        bar.update()
        if result["state"] != "done":
            bar.write(f"sweep: {result['id']}: {result['state']}: {result['error']}")
    bar.close()
    return results


def _crashed(job: SweepJob, runs: int) -> dict:
    return dict(id=job.id, state="crashed", seconds=0.0,
                error=f"its worker died {runs} times; the folder keeps the finished levels, run the sweep again")


def _run_local(todo: list[SweepJob], root, sweep: Sweep, workers: int | None) -> Iterator[dict]:
    """The jobs on this machine, each in a worker process of the job engine (:class:`lipkit.parallel.Engine`:
    one per ``sweep.cpus`` cores, one in all for GPU jobs on a GPU); a job whose worker dies runs again,
    up to ``sweep.retries`` times."""
    import torch

    device = "cuda" if sweep.gpus and torch.cuda.is_available() else "cpu"
    engine = Engine(device, workers, cpus_per_job=sweep.cpus, isolate=True)
    runs = {job.id: 0 for job in todo}
    reported: set[str] = set()
    while todo:
        for job in todo:
            runs[job.id] += 1
        try:
            for i, result in engine.map(run_job, [(job, str(root), sweep.cpus) for job in todo]):
                reported.add(todo[i].id)
                yield result
            todo = []
        except BrokenProcessPool:  # a worker died (killed, out of memory), in a job or at submit: run the rest again
            todo = [job for job in todo if job.id not in reported]
            for job in [j for j in todo if runs[j.id] > sweep.retries]:
                todo.remove(job)
                yield _crashed(job, runs[job.id])


def _run_ray(todo: list[SweepJob], root, sweep: Sweep, address: str | None) -> Iterator[dict]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before the import: Ray reports usage by default
    try:
        import ray
    except ImportError:
        raise ImportError(f"--engine ray needs Ray: pip install 'lipkit[ray]' (ray=={RAY_VERSION})") from None
    owns = not ray.is_initialized()
    if owns:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a private instance: never attach to another local cluster by accident
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     object_store_memory=100 * 2**20)  # jobs pass small dicts; Ray's default takes 30 % of RAM
    try:
        task = ray.remote(run_job).options(num_cpus=sweep.cpus, num_gpus=sweep.gpus, max_retries=sweep.retries,
                                           retry_exceptions=False)
        refs = {task.remote(job, str(root), sweep.cpus): job for job in todo}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            job = refs.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError:  # worker or node death after every retry (run_job never raises)
                result = _crashed(job, sweep.retries + 1)
            yield result
    finally:
        if owns:
            ray.shutdown()
