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
    return set(dict(parallel.run_jobs(os.getpid, [()] * n, workers=2)).values())


def test_workers_are_started_once_and_kept_for_the_next_call():
    assert os.getpid() not in _pids()
    started = set(parallel._POOL[0][1]._processes)
    assert len(started) == 2
    assert _pids() <= started and set(parallel._POOL[0][1]._processes) == started


def test_a_failed_job_ends_the_workers_and_the_next_call_starts_new_ones():
    before = _pids()
    with pytest.raises(ZeroDivisionError):
        dict(parallel.run_jobs(operator.truediv, [(1, 0), (1, 1)], workers=2))
    assert not parallel._POOL
    assert not (_pids() & before)


def test_a_job_call_inside_another_gets_its_own_pool_and_keeps_the_shared_one():
    outer = _pids()
    inner = set()
    for _, pid in parallel.run_jobs(os.getpid, [()] * 2, workers=2):
        inner |= _pids()
    assert not (inner & outer)
    assert _pids() <= set(parallel._POOL[0][1]._processes)
