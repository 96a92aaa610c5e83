"""Prometheus metrics from the job state in Redis: the service's route, the standalone exporter,
and the service's report routes, over real HTTP on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from prewarm.farm.service import create_app
from prewarm.report import metrics
from prewarm.state import runner
from prewarm.warm.job import JobInfo, JobState
from prewarm.warm.results import FileFinding, FindingKind
from prewarm.warm.timeline import Point
from tests.fixtures.service import run_server
from tests.fixtures.services import ROOT, free_port, stop_pid
from tests.fixtures.studio import Studio

MiB = 1 << 20


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_rate_and_in_flight_come_from_the_last_complete_seconds() -> None:
    pts = [Point(95, 50, 9), Point(96, 10, 3), Point(99, 40, 4), Point(100, 999, 7)]
    assert metrics.current(pts, now=100.5) == (100 / metrics.RATE_WINDOW_S, 4)  # seconds 95-99


def test_families_aggregate_jobs_per_gateway_and_carry_no_job_label() -> None:
    """A label per job id is a series per job, unbounded over months: jobs add up per gateway."""
    def job(id_: str, state: JobState, planned: int, done: int, kinds: tuple[FindingKind, ...] = ()) -> JobInfo:
        info = JobInfo(id=id_, name="shot", gateway="gw1", state=state, created=0.0, bytes_planned=planned,
                       findings=[FileFinding(f"/{id_}/{n}", k, "x") for n, k in enumerate(kinds)])
        info.counters["bytes_done"] = done
        return info

    jobs = [metrics.JobSample(job("j1", JobState.RUNNING, 10, 7, (FindingKind.MISSING, FindingKind.MISSING)), 3.0, 2),
            metrics.JobSample(job("j2", JobState.QUEUED, 20, 0), 0.0, 0),
            metrics.JobSample(job("j3", JobState.DONE, 100, 100, (FindingKind.MISSING,)), 0.0, 0)]
    fams = {f.name: f for f in metrics.families(jobs, [metrics.GatewaySample("gw1", 5, 2, None)])}
    assert not [s for f in fams.values() for s in f.samples if "job" in s.labels or "name" in s.labels]
    value = {(f.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    assert value["prewarm_jobs", (("gateway", "gw1"), ("state", "running"))] == 1
    assert value["prewarm_jobs", (("gateway", "gw1"), ("state", "done"))] == 1
    assert value["prewarm_gateway_planned_bytes", (("gateway", "gw1"),)] == 30  # the unfinished two
    assert value["prewarm_gateway_job_bytes", (("gateway", "gw1"), ("kind", "done"))] == 7
    assert value["prewarm_gateway_errors", (("gateway", "gw1"), ("kind", "missing"))] == 3
    assert value["prewarm_gateway_rate_bytes_per_second", (("gateway", "gw1"),)] == 3.0
    assert fams["prewarm_gateway_queue_batches"].samples[0].value == 5
    assert fams["prewarm_gateway_throttle_bytes_per_second"].samples == []
    assert {f.type for f in fams.values()} == {"gauge"}  # sums over a window of jobs can go down


class Sent(list[tuple[str, str, int]]):
    def __call__(self, gateway: str, job_id: str, index: int) -> None:
        self.append((gateway, job_id, index))


def test_service_serves_metrics_and_the_report_of_a_job(r: redis.Redis, studio: Studio) -> None:
    paths = [studio.file(f"t{i}.tx", 2 * MiB) for i in range(4)]
    settings = studio.settings(throttle_bps=32 * MiB)
    sent = Sent()
    done = runner.submit(r, studio.whole(paths[:2]), settings, sent, "gw1")
    while sent:
        _, job_id, index = sent.pop(0)
        runner.run_batch(r, settings, job_id, index, sent)
    runner.submit(r, studio.whole(paths[2:]), settings, sent, "gw1")  # `waiting`: sent, never run
    url, stop = run_server(create_app(settings, r, sent, lambda ids: None, "token"))
    try:
        text = requests.get(f"{url}/api/v1/metrics", timeout=10).text
        got = samples(text)
        assert got[("prewarm_jobs", (("gateway", "gw1"), ("state", "done")))] == 1.0
        assert got[("prewarm_jobs", (("gateway", "gw1"), ("state", "queued")))] == 1.0  # `waiting`
        assert got[("prewarm_gateway_planned_bytes", (("gateway", "gw1"),))] == 4 * MiB  # `waiting`'s, unfinished
        assert got[("prewarm_gateway_job_bytes", (("gateway", "gw1"), ("kind", "done")))] == 0
        assert got[("prewarm_gateway_inflight_batches", (("gateway", "gw1"),))] >= 1
        rep = requests.get(f"{url}/api/v1/jobs/{done.id}/report", timeout=10)
        assert rep.status_code == 200 and rep.json()["summary"]["warmed"]["bytes"] == 4 * MiB
        page = requests.get(f"{url}/api/v1/jobs/{done.id}/report.html", timeout=10)
        assert page.headers["content-type"].startswith("text/html") and 'data-chart="coverage"' in page.text
        assert requests.get(f"{url}/api/v1/jobs/abc123/report", timeout=10).status_code == 404
        assert requests.get(f"{url}/api/v1/jobs/..%2Fx/report.html", timeout=10).status_code == 404
    finally:
        stop()


def test_standalone_exporter(redis_url: str, r: redis.Redis, studio: Studio) -> None:
    settings = studio.settings()
    runner.submit(r, studio.whole([studio.file("a.tx", MiB)]), settings, Sent(), "gw9")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    proc = subprocess.Popen([sys.executable, "-m", "prewarm", "metrics", "--port", str(port), "--bind", "127.0.0.1",
                             "--redis", redis_url], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "exporter did not start"
                time.sleep(0.1)
        got = samples(text)
        assert got[("prewarm_gateway_planned_bytes", (("gateway", "gw9"),))] == MiB  # the job, queued
        assert got[("prewarm_gateway_inflight_batches", (("gateway", "gw9"),))] == 1  # sent, no worker
        assert got[("prewarm_gateway_queue_batches", (("gateway", "gw9"),))] == 0
    finally:
        stop_pid(proc.pid)
        proc.communicate()


def test_exporter_on_a_bad_port_is_one_line_exit_2() -> None:
    out = subprocess.run([sys.executable, "-m", "prewarm", "metrics", "--port", "70000"],
                         cwd=ROOT, check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--port" in out.stderr


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist() -> None:
    import json
    import re

    from prometheus_client import CollectorRegistry, generate_latest

    info = JobInfo(id="j1", name="shot", gateway="gw1", state=JobState.RUNNING, created=0.0,
                   findings=[FileFinding("/a", FindingKind.MISSING, "x")])

    class Snapshot:
        def collect(self) -> Iterator[metrics.Metric]:
            yield from metrics.families([metrics.JobSample(info, 1.0, 1)],
                                        [metrics.GatewaySample("gw1", 1, 1, 5.0)])

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())  # type: ignore[arg-type]
    exposed = {s.name for fam in text_string_to_metric_families(generate_latest(registry).decode())
               for s in fam.samples}
    dashboard = json.loads((ROOT / "docs" / "grafana" / "prewarm.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {m for e in exprs for m in re.findall(r"\bprewarm_\w+", e)}
    assert asked and asked <= exposed, asked - exposed
