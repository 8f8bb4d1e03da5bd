"""lipkit.parallel: the process's worker pool is started once, replaced after a failure, and a
job call inside another's iteration gets a pool of its own."""

import operator
import os

import pytest

from lipkit import parallel


@pytest.fixture(autouse=True)
def fresh_pool():
    parallel.shutdown_workers()
    yield
    parallel.shutdown_workers()


def _pids(n: int = 4) -> set[int]:
    return set(dict(parallel.Engine("cpu", workers=2).map(os.getpid, [()] * n)).values())


def test_workers_are_started_once_and_kept_for_the_next_call():
    assert os.getpid() not in _pids()
    started = set(parallel._POOL[0][1]._processes)
    assert len(started) == 2
    assert _pids() <= started and set(parallel._POOL[0][1]._processes) == started


def test_a_failed_job_ends_the_workers_and_the_next_call_starts_new_ones():
    before = _pids()
    with pytest.raises(ZeroDivisionError):
        dict(parallel.Engine("cpu", workers=2).map(operator.truediv, [(1, 0), (1, 1)]))
    assert not parallel._POOL
    assert not (_pids() & before)


def test_a_job_call_inside_another_gets_its_own_pool_and_keeps_the_shared_one():
    outer = _pids()
    inner = set()
    for _, pid in parallel.Engine("cpu", workers=2).map(os.getpid, [()] * 2):
        inner |= _pids()
    assert not (inner & outer)
    assert _pids() <= set(parallel._POOL[0][1]._processes)


def test_the_engine_is_the_one_worker_and_thread_policy(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert parallel.Engine("cpu").workers_for(40) == 16 and parallel.Engine("cpu").workers_for(3) == 3
    assert parallel.Engine("cpu", cpus_per_job=4).workers_for(40) == 4  # a sweep of 4-core jobs
    assert parallel.Engine("cpu", workers=2).workers_for(40) == 2 and parallel.Engine.threads_for(2) == 8
    assert parallel.Engine("meta").workers_for(40) == 1  # not a CPU: one job after another
    from lipkit.lottery.driver import how_seeds_run

    assert how_seeds_run(3, "cpu", None, False) == (False, 3) and how_seeds_run(3, "cpu", 1, None) == (False, 1)


def test_one_worker_runs_in_this_process_unless_isolated():
    assert dict(parallel.Engine("cpu", workers=1).map(os.getpid, [()] * 2)) == {0: os.getpid(), 1: os.getpid()}
    assert os.getpid() not in dict(parallel.Engine("cpu", workers=1, isolate=True).map(os.getpid, [()])).values()


def test_waiting_is_called_while_the_workers_run():
    import time

    calls = []
    results = dict(parallel.Engine("cpu", workers=2).map(time.sleep, [(0.3,), (0.3,)], waiting=lambda: calls.append(1),
                                                           every=0.05))
    assert sorted(results) == [0, 1] and calls
