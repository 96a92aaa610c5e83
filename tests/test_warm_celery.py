"""End to end through real Celery workers and a real Redis, with the faults a warm must survive.

Workers are `celery -A workers worker -P threads` subprocesses; the CLI runs as a
subprocess too, exactly as a user would call it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from prewarm.state.client import connect
from prewarm.state.jobs import WarmJob
from prewarm.warm.job import JobInfo, JobState
from tests.fixtures.services import ROOT, RedisServer, StartWorker
from tests.fixtures.studio import Studio

pytestmark = pytest.mark.integration

MiB = 1 << 20


def cli(*args: str, config: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    pre = ["--config", str(config)] if config else []
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    return subprocess.run([sys.executable, "-m", "prewarm", *pre, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_plan(tmp_path: Path, plan_json: dict[str, object], name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(plan_json))
    return path


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def final_info(r: redis.Redis, job_id: str, timeout: float = 90.0) -> JobInfo:
    job = WarmJob(r, job_id)
    wait_for(lambda: (s := job.state()) is not None and s.final, timeout, f"job {job_id} to end")
    info = job.info()
    assert info is not None
    return info


@pytest.fixture
def config(studio: Studio, tmp_path: Path) -> Path:
    return studio.config(tmp_path / "prewarm.yaml", visibility_timeout_s=4, in_flight=4, dispatch_window=4)


def test_warm_through_workers_exits_0_with_every_byte_read(
        studio: Studio, tmp_path: Path, redis_url: str, celery_worker: StartWorker, config: Path) -> None:
    paths = [studio.file(f"tex/t{i}.tx", 600_000) for i in range(10)]
    plan = studio.whole(paths, gateways=("gw1",))
    worker = celery_worker(config, "prewarm.gw1", redis_url=redis_url)
    done = cli("warm", str(write_plan(tmp_path, plan.to_json())), "--redis", redis_url, "--json", config=config)
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["state"] == "done" and report["gateway"] == "gw1"
    assert report["counters"]["bytes_done"] == plan.bytes and report["counters"]["files_done"] == 10
    status = cli("status", report["id"], "--json", "--redis", redis_url, config=config)
    assert json.loads(status.stdout)["state"] == "done"
    listing = cli("status", "--redis", redis_url, config=config)
    assert report["id"] in listing.stdout
    assert worker.proc.poll() is None


def test_worker_killed_mid_warm_the_warm_still_completes(
        studio: Studio, tmp_path: Path, redis_url: str, celery_worker: StartWorker, config: Path) -> None:
    paths = [studio.file(f"k/t{i}.tx", MiB) for i in range(12)]
    plan = studio.whole(paths, gateways=("gw1",))
    first = celery_worker(config, "prewarm.gw1", redis_url=redis_url, concurrency=2)
    out = cli("warm", str(write_plan(tmp_path, plan.to_json())), "--redis", redis_url, "--rate", "3MB/s",
              "--no-wait", config=config)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    r = connect(redis_url)
    job = WarmJob(r, job_id)
    wait_for(lambda: (i := job.info(findings=False)) is not None and i.batches_done >= 1, 60, "a first batch")
    first.kill(signal.SIGKILL)
    assert job.state() is JobState.RUNNING
    celery_worker(config, "prewarm.gw1", redis_url=redis_url)
    info = final_info(r, job_id)
    assert info.state is JobState.DONE
    # counters stay true although the killed worker's batches ran again
    assert info.counters["bytes_done"] + info.counters["bytes_skipped"] == plan.bytes
    assert info.counters["files_done"] + info.counters["files_skipped"] == 12
    assert info.batches_done == info.batches


def test_redis_restarted_mid_warm_the_warm_completes_with_true_counters(
        studio: Studio, tmp_path: Path, persistent_redis: RedisServer, celery_worker: StartWorker,
        config: Path) -> None:
    url = persistent_redis.url
    paths = [studio.file(f"rr/t{i}.tx", MiB) for i in range(10)]
    plan = studio.whole(paths, gateways=("gw1",))
    celery_worker(config, "prewarm.gw1", redis_url=url)
    out = cli("warm", str(write_plan(tmp_path, plan.to_json())), "--redis", url, "--rate", "3MB/s", "--no-wait",
              config=config)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    r = connect(url)
    job = WarmJob(r, job_id)
    wait_for(lambda: (i := job.info(findings=False)) is not None and i.batches_done >= 1, 60, "a first batch")
    persistent_redis.restart(down_s=1.0)
    info = final_info(r, job_id, timeout=120)
    assert info.state is JobState.DONE
    assert info.counters["bytes_done"] + info.counters["bytes_skipped"] == plan.bytes
    assert info.batches_done == info.batches


def test_cancel_stops_a_running_warm(
        studio: Studio, tmp_path: Path, redis_url: str, celery_worker: StartWorker, config: Path) -> None:
    paths = [studio.file(f"c/t{i}.tx", MiB) for i in range(20)]
    plan = studio.whole(paths, gateways=("gw1",))
    celery_worker(config, "prewarm.gw1", redis_url=redis_url, concurrency=2)
    out = cli("warm", str(write_plan(tmp_path, plan.to_json())), "--redis", redis_url, "--rate", "2MB/s",
              "--no-wait", config=config)
    job_id = out.stdout.strip()
    r = connect(redis_url)
    job = WarmJob(r, job_id)
    wait_for(lambda: job.state() is JobState.RUNNING, 60, "the warm to start")
    cancelled = cli("cancel", job_id, "--redis", redis_url, config=config)
    assert cancelled.returncode == 0, cancelled.stderr
    assert job.state() is JobState.CANCELLED
    time.sleep(2)  # what was running stops at its next poll; nothing more is dispatched
    info = job.info(findings=False)
    assert info is not None and info.counters["bytes_done"] < plan.bytes
    assert not r.zcard("prewarm:gw:gw1:inflight")
    status = cli("status", job_id, "--redis", redis_url, config=config)
    assert "cancelled" in status.stdout


def test_files_gone_between_plan_and_warm_partial_exit_1_then_warmed_again(
        studio: Studio, tmp_path: Path, redis_url: str, celery_worker: StartWorker, config: Path) -> None:
    paths = [studio.file(f"p/t{i}.tx", 300_000) for i in range(6)]
    plan = studio.whole(paths, gateways=("gw1",))
    gone = studio.local(paths[2]).rename(tmp_path / "kept-aside")
    studio.local(paths[4]).unlink()
    studio.local(paths[4]).mkdir()  # replaced by a directory
    celery_worker(config, "prewarm.gw1", redis_url=redis_url)
    plan_file = write_plan(tmp_path, plan.to_json())
    out = cli("warm", str(plan_file), "--redis", redis_url, "--json", config=config)
    assert out.returncode == 1, out.stderr
    [report] = json.loads(out.stdout)
    assert report["state"] == "partial"
    assert {(f["path"], f["kind"]) for f in report["findings"]} == {(paths[2], "missing"), (paths[4], "changed")}
    assert report["counters"]["bytes_done"] == 4 * 300_000 and report["counters"]["files_done"] == 4
    assert "missing: 1 file(s)" in out.stderr and "--retry" not in out.stderr, "missing and changed are final"
    retry = cli("warm", "--retry", report["id"], "--redis", redis_url, config=config)
    assert retry.returncode == 2 and "no failed ranges to retry" in retry.stderr
    gone.rename(studio.local(paths[2]))  # the studio restores the file: the job is warmed again
    out = cli("warm", str(plan_file), "--redis", redis_url, "--json", config=config)
    [again] = json.loads(out.stdout)
    assert again["counters"]["bytes_done"] == 300_000, "the restored file is read, the changed one still refused"
    assert again["counters"]["bytes_skipped"] == 4 * 300_000, "what the first warm read is not read again"
    assert out.returncode == 1 and [f["path"] for f in again["findings"]] == [paths[4]]
