"""Sweeps on a real local Ray instance (the lipkit[ray] extra, which .ci/run and `make test`
install): the folders equal `python -m lipkit imp`'s, and a killed Ray worker's job resumes
where it was. Helpers and the CLI reference come from tests/test_sweep.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import yaml

from lipkit.runs import sweep
from lipkit.runs.sweep_engines import run_sweep
from test_sweep import TINY, records, reference, tiny_sweep  # noqa: F401 (reference is a fixture)

ray = pytest.importorskip("ray", reason="the lipkit[ray] extra is not installed")


@pytest.fixture(scope="module")
def ray_instance():
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 2**20)
    yield
    ray.shutdown()


def test_a_ray_sweep_equals_the_cli_runs(tmp_path, reference, ray_instance):
    root = tmp_path / "runs"
    results = run_sweep(sweep.load(tiny_sweep(tmp_path)), root, engine="ray", progress=False)
    assert sorted(r["state"] for r in results) == ["done"] * 4
    assert records(root) == reference


def test_a_killed_ray_worker_s_job_resumes_where_it_was(tmp_path, ray_instance):
    spec = dict(jobs=[dict(kind="denoise", image="set5/baby", rounds=4)],
                settings=dict(TINY, denoise_iters=40))
    root, alone = tmp_path / "runs", tmp_path / "alone"
    plan = sweep.load(tiny_sweep(tmp_path, **spec))
    job = plan.jobs[0]
    done = {}
    thread = threading.Thread(target=lambda: done.update(r=run_sweep(plan, root, engine="ray", progress=False)))
    thread.start()
    first = root / job.id / "seed_0" / "round_01.json"
    deadline = time.time() + 60
    while not first.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert first.exists()
    pid = yaml.safe_load(sweep.state_file(root, job.id).read_text())["pid"]
    os.kill(pid, signal.SIGKILL)  # mid-job: round 1 written, rounds 2-4 to go
    written = first.stat().st_mtime_ns
    thread.join(timeout=120)
    assert first.stat().st_mtime_ns == written  # resumed after round 1, not started over
    assert [r["state"] for r in done["r"]] == ["done"]
    state = yaml.safe_load(sweep.state_file(root, job.id).read_text())
    assert state["attempts"] == 2 and state["pid"] != pid  # retried in another worker
    run_sweep(plan, alone, workers=1, progress=False)  # the same job, never interrupted
    assert records(root) == records(alone)
