"""A new user's first hour on a farm, following the README: workers started its way, and what they are told.

Workers are started as the README says (`prewarm worker`, which becomes `celery -A
workers worker`), the CLI runs as a subprocess, Redis is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from prewarm.testkit.services import Worker, start_prewarm_worker
from tests.fixtures.services import ROOT
from tests.fixtures.studio import Studio
from tests.fixtures.twin import StartTwin

pytestmark = pytest.mark.integration


def cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    return subprocess.run([sys.executable, "-m", "prewarm", "--config", str(config), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def readme_worker(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def start(started: list[Worker], config: Path, tmp_path: Path, redis_url: str, *gateways: str) -> Worker:
    worker = start_prewarm_worker(config, tmp_path / f"worker{len(started)}.log", gateways, redis_url)
    started.append(worker)
    worker.wait_ready()
    return worker


def test_the_readme_worker_serves_plans_that_name_no_gateway(studio: Studio, tmp_path: Path, redis_url: str,
                                                           readme_worker: list[Worker]) -> None:
    config = studio.config(tmp_path / "prewarm.yaml")
    start(readme_worker, config, tmp_path, redis_url)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(studio.whole([studio.file("a.tx", 300_000)]).to_json()))
    out = cli("warm", str(plan), "--redis", redis_url, "--json", config=config)
    assert out.returncode == 0, out.stderr
    assert [j["state"] for j in json.loads(out.stdout)] == ["done"]
    assert "no worker consumes" not in out.stderr


def test_a_gateway_worker_is_started_by_the_gateway_name(studio: Studio, tmp_path: Path, redis_url: str,
                                                         readme_worker: list[Worker]) -> None:
    config = studio.config(tmp_path / "prewarm.yaml")
    start(readme_worker, config, tmp_path, redis_url, "gw-a")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(studio.whole([studio.file("a.tx", 300_000)], gateways=("gw-a",)).to_json()))
    out = cli("warm", str(plan), "--redis", redis_url, "--json", config=config)
    assert out.returncode == 0, out.stderr
    assert [(j["gateway"], j["state"]) for j in json.loads(out.stdout)] == [("gw-a", "done")]


def test_warm_and_status_say_at_once_that_no_worker_consumes_the_queue(studio: Studio, tmp_path: Path,
                                                                       redis_url: str,
                                                                       readme_worker: list[Worker]) -> None:
    config = studio.config(tmp_path / "prewarm.yaml")
    start(readme_worker, config, tmp_path, redis_url)  # a worker, but for the default gateway only
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(studio.whole([studio.file("a.tx", 300_000)], gateways=("gw-z",)).to_json()))
    out = cli("warm", str(plan), "--redis", redis_url, "--no-wait", config=config)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.split()[0]
    assert "no worker consumes prewarm.gw-z: start one with `prewarm worker --gateway gw-z`" in out.stderr
    status = cli("status", job_id, "--redis", redis_url, config=config)
    assert status.returncode == 0 and "no worker consumes prewarm.gw-z" in status.stderr


def test_a_worker_without_roots_says_so_and_where_to_set_them(studio: Studio, tmp_path: Path, redis_url: str,
                                                              readme_worker: list[Worker]) -> None:
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"in_flight": 2}))
    worker = start(readme_worker, bare, tmp_path, redis_url)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(studio.whole([studio.file("a.tx", 300_000)]).to_json()))
    out = cli("warm", str(plan), "--redis", redis_url, "--json", config=studio.config(tmp_path / "submit.yaml"))
    assert out.returncode == 1
    [job] = json.loads(out.stdout)
    assert job["state"] == "failed"
    assert [f["kind"] for f in job["findings"]] == ["outside-roots"]
    assert "no allowed studio roots: set `roots` or `path_map`" in job["findings"][0]["detail"]
    assert "this worker has no allowed studio roots" in worker.log.read_text()


def test_a_worker_warms_the_metadata_of_recent_jobs_again_when_its_gateway_restarts(
        studio: Studio, tmp_path: Path, redis_url: str, readme_worker: list[Worker], gateway_twin: StartTwin) -> None:
    paths = [studio.file(f"tex/t{i}.tx", 200_000) for i in range(5)]
    twin = gateway_twin(studio.root, rtt_ms=2, mbps=None)
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump({"path_map": [{"studio": "/studio/proj", "local": str(twin.mount)}],
                                      "roots": ["/studio/proj"], "agent_url": twin.url, "agent_poll_s": 1,
                                      "visibility_timeout_s": 4}))
    worker = start(readme_worker, config, tmp_path, redis_url)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(studio.plan([(p, 100_000, 37_000) for p in paths]).to_json()))
    out = cli("warm", str(plan), "--redis", redis_url, config=config)
    assert out.returncode == 0, out.stderr
    time.sleep(5)  # the worker's sweep (every 2 s here) takes its first look at the agent: a baseline
    twin.restart()
    twin.reset()
    deadline = time.monotonic() + 30
    while "restarted" not in worker.log.read_text():
        assert time.monotonic() < deadline, worker.log.read_text()[-2000:]
        time.sleep(0.5)
    assert "metadata of its recent jobs warmed again, 5 ok, 0 failed" in worker.log.read_text()
    s = twin.stats()
    assert s["ops"]["LOOKUP"]["requests"] >= 5 and s["wan_bytes"] == 0, "metadata only: the data survived"
