"""The fault matrix: gateway errors (EIO, ESTALE, timeouts), a file replaced mid-warm, a worker SIGKILLed
with the default settings, Redis restarted without an append-only file. Every counter is checked exactly.

The gateway is the FUSE twin (its `/faults` endpoint makes the next N reads under a path
fail with an errno, after a delay if asked); Redis and the Celery workers are real. The
matrix, what was tried and what held, is in docs/security.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.settings import Settings
from prewarm.state.client import connect
from prewarm.state.jobs import WarmJob
from prewarm.testkit.services import RedisServer
from prewarm.warm import embedded
from prewarm.warm.job import JobInfo, JobState
from tests.fixtures.services import ROOT, StartWorker
from tests.fixtures.studio import PREFIX, Studio
from tests.fixtures.twin import StartTwin

pytestmark = pytest.mark.integration

MiB = 1 << 20


def twin_settings(mount: Path, **kw: object) -> Settings:
    return Settings(path_map=PathMap((Prefix(PREFIX, (), str(mount)),)), roots=(PREFIX,), **kw)  # type: ignore[arg-type]


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    return subprocess.run([sys.executable, "-m", "prewarm", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def files(studio: Studio, n: int, size: int, folder: str = "f") -> list[str]:
    return [studio.file(f"{folder}/t{i}.tx", size) for i in range(n)]


@pytest.mark.parametrize("errno_name", ["EIO", "ESTALE", "ETIMEDOUT"])
def test_transient_gateway_errors_are_retried_and_the_warm_is_done(
        studio: Studio, gateway_twin: StartTwin, errno_name: str) -> None:
    paths = files(studio, 4, MiB)
    plan = studio.whole(paths)
    twin = gateway_twin(studio.root, rtt_ms=2, mbps=None)
    twin.inject("/f/t1.tx", errno_name, count=2, delay_s=0.2 if errno_name == "ETIMEDOUT" else 0.0)
    info = embedded.run_embedded(plan, twin_settings(twin.mount, in_flight=4))
    assert info.state is JobState.DONE, info.findings
    assert info.counters["bytes_done"] == 4 * MiB and info.counters["bytes_failed"] == 0
    assert info.counters["files_done"] == 4 and info.counters["files_failed"] == 0
    assert info.counters["reads"] == 4 and not info.findings
    assert [f["hits"] for f in twin.faults()] == [2]
    assert twin.stats()["wan_bytes"] == 4 * MiB


@pytest.mark.parametrize("errno_name", ["EIO", "ESTALE"])
def test_a_gateway_that_keeps_failing_gives_a_partial_warm_and_retry_reads_only_that(
        studio: Studio, gateway_twin: StartTwin, tmp_path: Path, redis_url: str, celery_worker: StartWorker,
        errno_name: str) -> None:
    paths = files(studio, 4, 2 * MiB)
    plan = studio.whole(paths, gateways=("gwf",))
    twin = gateway_twin(studio.root, rtt_ms=2, mbps=None)
    twin.inject("/f/t2.tx", errno_name, count=1000)
    config = tmp_path / "prewarm.yaml"
    config.write_text(yaml.safe_dump({"path_map": [{"studio": PREFIX, "local": str(twin.mount)}], "roots": [PREFIX],
                                      "in_flight": 4, "visibility_timeout_s": 30}))
    celery_worker(config, "prewarm.gwf", redis_url=redis_url)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json()))
    first = cli("--config", str(config), "warm", str(plan_file), "--redis", redis_url, "--json")
    assert first.returncode == 1, first.stderr
    [report] = json.loads(first.stdout)
    assert report["state"] == "partial"
    assert report["counters"]["bytes_done"] == 6 * MiB and report["counters"]["bytes_failed"] == 2 * MiB
    assert report["counters"]["files_done"] == 3 and report["counters"]["files_failed"] == 1
    assert [(f["path"], f["kind"]) for f in report["findings"]] == [(f"{PREFIX}/f/t2.tx", "io-error")]
    assert report["failed_ranges"] == 2, "both 1 MiB reads of the failing file are offered to --retry"
    assert f"prewarm warm --retry {report['id']}" in first.stderr
    twin.clear_faults()
    twin.reset()
    again = cli("--config", str(config), "warm", "--retry", report["id"], "--redis", redis_url, "--json")
    assert again.returncode == 0, again.stderr
    [retry] = json.loads(again.stdout)
    assert retry["state"] == "done" and retry["retry_of"] == report["id"]
    assert retry["counters"]["bytes_done"] == 2 * MiB and retry["counters"]["files_done"] == 1
    assert twin.stats()["bytes_served"] == 2 * MiB, "the retry read only the failed file"


def test_a_file_replaced_mid_warm_is_reported_changed_and_the_rest_is_warmed(
        studio: Studio, gateway_twin: StartTwin) -> None:
    paths = files(studio, 8, MiB)
    plan = studio.whole(paths)
    twin = gateway_twin(studio.root, rtt_ms=20, mbps=20, attr_ttl_s=0)
    replaced: list[bool] = []

    def replace_last(info: JobInfo) -> None:
        if not replaced and info.counters["bytes_done"] > 0:
            tmp = studio.local(paths[-1]).with_suffix(".new")
            tmp.write_bytes(os.urandom(MiB // 2))
            os.replace(tmp, studio.local(paths[-1]))
            replaced.append(True)

    info = embedded.run_embedded(plan, twin_settings(twin.mount, in_flight=2), progress=replace_last)
    assert replaced and info.state is JobState.PARTIAL
    assert [(f.path, f.kind.value) for f in info.findings] == [(paths[-1], "changed")]
    assert "size 1048576 in the plan, 524288 now" in info.findings[0].detail
    assert info.counters["bytes_done"] == 7 * MiB and info.counters["bytes_failed"] == MiB
    assert info.counters["files_done"] == 7 and info.counters["files_failed"] == 1
    assert info.failed_ranges == 0, "a changed file is final: re-plan it, do not retry it"


def status(config: Path, url: str, job_id: str) -> str:
    out = cli("--config", str(config), "status", job_id, "--redis", url, "--oneline")
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_worker_killed_with_the_default_settings_is_overdue_then_its_batches_run_again(
        studio: Studio, tmp_path: Path, redis_url: str, celery_worker: StartWorker) -> None:
    paths = files(studio, 6, MiB, "k")
    plan = studio.whole(paths, gateways=("gwk",))
    config = studio.config(tmp_path / "prewarm.yaml", in_flight=2)  # the default visibility timeout: 60 s
    assert Settings.load(path=str(config)).visibility_timeout_s == 60
    first = celery_worker(config, "prewarm.gwk", redis_url=redis_url, concurrency=1)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json()))
    out = cli("--config", str(config), "warm", str(plan_file), "--redis", redis_url, "--rate", "1MB/s", "--no-wait")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    r = connect(redis_url)
    job = WarmJob(r, job_id)
    deadline = time.monotonic() + 60
    while (i := job.info(findings=False)) is None or i.batches_done < 1:
        assert time.monotonic() < deadline, "no first batch"
        time.sleep(0.1)
    first.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    assert "overdue=0" in status(config, redis_url, job_id)
    while "overdue=0" in (line := status(config, redis_url, job_id)):
        assert time.monotonic() - killed_at < 75, line
        time.sleep(1)
    assert "state=running" in line
    celery_worker(config, "prewarm.gwk", redis_url=redis_url, concurrency=2)
    while (i := job.info()) is None or not i.state.final:
        assert time.monotonic() - killed_at < 150, "the killed worker's batches did not run again"
        time.sleep(0.5)
    assert i.state is JobState.DONE
    assert i.counters["bytes_done"] + i.counters["bytes_skipped"] == 6 * MiB
    assert i.counters["files_done"] + i.counters["files_skipped"] == 6 and i.counters["files_failed"] == 0
    assert i.batches_done == i.batches


def test_redis_restarted_without_persistence_fails_the_waiting_warm_saying_so(
        studio: Studio, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis-plain")
    server.dir.mkdir()
    server.start()
    try:
        plan = studio.whole(files(studio, 2, MiB, "lost"), gateways=("nobody",))
        plan_file = tmp_path / "plan.json"
        plan_file.write_text(json.dumps(plan.to_json()))
        config = studio.config(tmp_path / "prewarm.yaml")
        proc = subprocess.Popen([sys.executable, "-m", "prewarm", "--config", str(config), "warm", str(plan_file),
                                 "--redis", server.url], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={k: v for k, v in os.environ.items() if k != "PREWARM_REDIS_URL"})
        r = connect(server.url, ride_out_restarts=False)
        deadline = time.monotonic() + 30
        while not r.zcard("prewarm:jobs"):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr and proc.stderr.read()
            time.sleep(0.1)
        server.restart(down_s=0.5)
        out, err = proc.communicate(timeout=90)
    finally:
        server.stop()
    assert proc.returncode == 3, err
    assert "vanished from Redis: Redis lost its state: it restarted and keeps no append-only file" in err
    assert f"prewarm warm {plan_file}" in err and "Traceback" not in err
    assert out == ""


def test_the_gateway_mount_vanishing_mid_warm_is_an_io_error_not_missing_files(
        studio: Studio, gateway_twin: StartTwin) -> None:
    """`fusermount3 -u -z` under a running warm: the files after it are not `missing` (the studio would go
    looking for them) but `io-error: gateway mount gone`, offered to --retry once the mount is back."""
    paths = files(studio, 12, MiB, "gone")
    plan = studio.whole(paths)
    twin = gateway_twin(studio.root, rtt_ms=20, mbps=20)
    unmounted: list[bool] = []

    def unmount(info: JobInfo) -> None:
        if not unmounted and info.counters["bytes_done"] > 0:
            subprocess.run(["fusermount3", "-u", "-z", str(twin.mount)], check=True)
            unmounted.append(True)

    info = embedded.run_embedded(plan, twin_settings(twin.mount, in_flight=2), progress=unmount)
    assert unmounted and info.state is JobState.PARTIAL
    kinds = {(f.kind.value, f.detail) for f in info.findings}
    assert kinds == {("io-error", "gateway mount gone")}, kinds
    assert info.counters["bytes_failed"] > 0 and info.failed_ranges > 0
    assert info.counters["bytes_done"] + info.counters["bytes_failed"] == 12 * MiB
