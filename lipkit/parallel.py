"""Independent jobs in worker processes: lipkit's one job engine, :class:`Engine`.

A DIP fit of a small image cannot keep several cores busy (measured at 64 px: two threads run
a fit only about 1.3× faster than one), so on a CPU independent fits run in separate processes
with one thread each. On a GPU they run one after another in this process. The worker
processes are started once per process and kept for the next job call (:func:`worker_pool`).
Every runner of lipkit (the lottery driver's seeds, sweeps, init tickets, transfers, deep
decoders, chapter 7's race, the batched seeds' processes) asks :class:`Engine` how many workers
and threads, and runs its jobs through :meth:`Engine.map`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from lipkit.device import resolve_device
from lipkit.runtime import release_freed_memory


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this process when the process that started it (pid ``parent``) dies.

    A worker outlives a ``kill -9`` of its parent otherwise, and would go on writing into a run
    folder whose lock has gone. On Linux the kernel sends SIGKILL on the parent's death
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere nothing is set. A parent already dead before the
    call is caught by comparing ``os.getppid()``. Ctrl-C, which a terminal sends to every process
    of the command, is left to the parent (:func:`worker_pool` then ends the workers), so that
    the user reads one line and not a traceback per worker.
    """
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:
        os._exit(1)


_POOL: list = []  # [(key, ProcessPoolExecutor)]: the process's one kept pool, started on first use
_HELD = threading.Lock()  # held while a block uses the kept pool


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=die_with_parent,
                               initargs=(os.getpid(),))


def _kill(pool: ProcessPoolExecutor) -> None:
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown_workers() -> None:
    """End this process's worker pool (the next job call starts a fresh one, e.g. after editing lipkit)."""
    while _POOL:
        _kill(_POOL.pop()[1])


class _Jobs:
    """What a :func:`worker_pool` block submits to: every job trims the worker's freed memory
    when it ends, and the block waits for its own jobs only."""

    def __init__(self, pool: ProcessPoolExecutor):
        self.pool, self.futures = pool, []

    def submit(self, fn: Callable, *args, **kwargs) -> Future:
        self.futures.append(self.pool.submit(_then_release, fn, *args, **kwargs))
        return self.futures[-1]


@contextmanager
def worker_pool(workers: int) -> Iterator[_Jobs]:
    """This process's pool of ``workers`` ``spawn`` worker processes, which die with it
    (:func:`die_with_parent`); the block submits jobs with ``.submit(fn, *args)``.

    The workers are started once and kept for the next call (each import of torch costs seconds,
    and a chapter makes dozens of job calls); another number of workers or another working
    directory replaces them. A call made while another block holds the pool (a generator not yet
    drained, another thread) gets a pool of its own. Leaving the block normally waits for its
    jobs; leaving it by an exception or Ctrl-C kills the workers at once (a job's files are
    written atomically, so nothing is left half-written), where the executor's own exit would wait
    for every running job to finish.
    """
    kept = _HELD.acquire(blocking=False)
    try:
        if kept:
            key = (workers, os.getcwd())
            if _POOL and (_POOL[0][0] != key or getattr(_POOL[0][1], "_broken", False)):
                shutdown_workers()
            if not _POOL:
                _POOL.append((key, _new_pool(workers)))
            pool = _POOL[0][1]
        else:
            pool = _new_pool(workers)
        jobs = _Jobs(pool)
        try:
            yield jobs
            wait(jobs.futures)
        except BaseException:
            if kept:
                shutdown_workers()
            else:
                _kill(pool)
            raise
        if not kept:
            pool.shutdown(wait=True)
    finally:
        if kept:
            _HELD.release()


def _call(fn: Callable, threads: int | None, args: tuple):
    if threads:
        torch.set_num_threads(threads)
    return fn(*args)


def _then_release(fn: Callable, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    finally:
        release_freed_memory()  # a worker kept for the next call holds no more than it needs


@dataclass(frozen=True)
class Engine:
    """Where independent jobs run, and with how many threads: the one worker and thread policy.

    On a CPU, one worker process per ``cpus_per_job`` cores (at most one per job), each with
    cores // workers threads; on a GPU, one worker. ``workers`` fixes the number (still at most one
    per job). A single worker runs the jobs in this process, with its own threads, unless
    ``isolate`` (a sweep: a job that dies must not take the sweep with it). Records made in a job
    carry the thread count the job really had (``FitResult.record``).

    >>> Engine("cpu", workers=8).workers_for(3), Engine("cpu", workers=1).workers_for(5)
    (3, 1)
    """

    device: object = None
    workers: int | None = None
    cpus_per_job: int = 1
    isolate: bool = False

    def workers_for(self, n_jobs: int) -> int:
        """Worker processes for ``n_jobs`` jobs (1: this process, unless ``isolate``)."""
        if self.workers is not None:
            workers = self.workers
        elif resolve_device(self.device).type == "cpu":
            workers = (os.cpu_count() or 1) // max(1, self.cpus_per_job)
        else:
            workers = 1
        return max(1, min(workers, n_jobs))

    @staticmethod
    def threads_for(workers: int) -> int:
        """Threads of each of ``workers`` worker processes: the cores, shared out."""
        return max(1, (os.cpu_count() or 1) // workers)

    def map(self, fn: Callable, jobs: Sequence[tuple], *, waiting: Callable[[], None] | None = None,
            every: float = 1.0) -> Iterator[tuple[int, object]]:
        """Yield ``(index, fn(*jobs[index]))`` as the jobs finish; ``waiting()`` is called every ``every``
        seconds while workers run (a progress bar over files the jobs write).

        ``fn`` must be importable (a module-level function) for the worker processes; they are
        started with ``spawn``, so the library works the same from notebooks and scripts.
        """
        if not jobs:
            return
        workers = self.workers_for(len(jobs))
        if workers == 1 and not self.isolate:
            for i, args in enumerate(jobs):
                yield i, fn(*args)
            return
        threads = self.threads_for(workers)
        with worker_pool(workers) as pool:
            futures = {pool.submit(_call, fn, threads, args): i for i, args in enumerate(jobs)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=every if waiting else None, return_when=FIRST_COMPLETED)
                if waiting is not None:
                    waiting()
                for future in done:
                    yield futures[future], future.result()


def run_cached(fn: Callable, jobs: Sequence[tuple], keys: Sequence[str | None], cache, *, workers: int | None = None,
               device=None, desc: str = "jobs", progress: bool = True,
               records: Sequence[dict | None] | None = None) -> list[dict]:
    """The record of every job, in order: ``fn(*jobs[i])`` returns ``(record, image)``; a record
    found in ``cache`` (a :class:`lipkit.store.cache.RecordCache`, or None) under ``keys[i]`` is
    taken instead of running the job, and one run is put there with its image. ``records[i]``
    given (not None) is kept as it is. The jobs to run go to :meth:`Engine.map`."""
    from tqdm.auto import tqdm

    out = list(records) if records is not None else [None] * len(jobs)
    todo = []
    for i, key in enumerate(keys):
        if out[i] is None and cache is not None:
            out[i] = cache.get(key)
        if out[i] is None:
            todo.append(i)
    if not todo:
        return out
    bar = tqdm(total=len(todo), desc=desc, disable=not progress)
    for j, (record, image) in Engine(device, workers).map(fn, [jobs[i] for i in todo]):
        i = todo[j]
        out[i] = cache.put(keys[i], record, image) if cache is not None else record
        bar.update()
    bar.close()
    return out
