"""Warming through the gateway twin (a real FUSE mount with WAN latency and a chunk cache).

What matters is the gateway's side: every planned granule crosses the WAN exactly
once, nothing outside the plan is read, re-reads reach the gateway (not this host's
page cache), and a second job over the same data sends it nothing at all. The twin
runs its chunk model here, where "every planned granule once" is exact arithmetic;
what the page model fetches for the same reads is test_twin_fsc.py's subject.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from prewarm.plan.access import Op
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.plan.records import MetaOp
from prewarm.site.settings import Settings
from prewarm.state.client import connect
from prewarm.state.jobs import WarmJob
from prewarm.warm import embedded
from prewarm.warm.job import JobState
from tests.fixtures.services import ROOT, StartWorker
from tests.fixtures.studio import PREFIX, Studio
from tests.fixtures.twin import StartTwin

pytestmark = pytest.mark.integration

MiB = 1 << 20


def twin_settings(mount: Path, in_flight: int) -> Settings:
    return Settings(path_map=PathMap((Prefix(PREFIX, (), str(mount)),)), roots=(PREFIX,), in_flight=in_flight)


def planned_ranges(studio: Studio, n: int) -> list[tuple[str, int, int]]:
    """Per file: its first granule and its tail granule (to EOF), skipping the middle one."""
    out = []
    for i in range(n):
        p = studio.file(f"tex/t{i}.tx", 2 * MiB + MiB // 2)
        out += [(p, 0, MiB), (p, 2 * MiB, MiB // 2)]
    return out


def inside_plan(reads: list[tuple[str, int, int]], ranges: list[tuple[str, int, int]]) -> bool:
    spans = {(p.removeprefix(PREFIX), o, o + n) for p, o, n in ranges}
    return all(any(rp == p and o >= s and o + n <= e for p, s, e in spans) for rp, o, n in reads)


def test_embedded_warm_fetches_each_planned_granule_once_and_nothing_else(
        studio: Studio, gateway_twin: StartTwin) -> None:
    ranges = planned_ranges(studio, 6)
    plan = studio.plan(ranges, metadata=(MetaOp(Op.READDIR, f"{PREFIX}/tex"),))
    twin = gateway_twin(studio.root, rtt_ms=5, mbps=200, log_reads=True, cache_model="chunk")
    info = embedded.run_embedded(plan, twin_settings(twin.mount, in_flight=8))
    assert info.state is JobState.DONE, info.findings
    stats = twin.stats()
    assert stats["wan_bytes"] == plan.bytes == 6 * (MiB + MiB // 2)
    assert stats["misses"] == 12
    assert stats["ops"]["READDIRPLUS"]["requests"] == 1
    reads = twin.reads()
    assert sum(n for _, _, n in reads) == plan.bytes and inside_plan(reads, ranges)
    # the same warm again: every read reaches the gateway (no local page cache), all hits
    twin.reset()
    again = embedded.run_embedded(plan, twin_settings(twin.mount, in_flight=8))
    stats = twin.stats()
    assert again.state is JobState.DONE
    assert stats["wan_bytes"] == 0 and stats["bytes_served"] == plan.bytes


def test_workers_warm_through_the_twin_and_a_second_job_reads_nothing(
        studio: Studio, gateway_twin: StartTwin, redis_url: str, celery_worker: StartWorker,
        tmp_path: Path) -> None:
    ranges = planned_ranges(studio, 8)
    plan = studio.plan(ranges, gateways=("gw1",))
    twin = gateway_twin(studio.root, rtt_ms=5, mbps=200, log_reads=True, cache_model="chunk")
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump({"path_map": [{"studio": PREFIX, "local": str(twin.mount)}],
                                      "roots": [PREFIX], "in_flight": 8, "visibility_timeout_s": 10}))
    celery_worker(config, "prewarm.gw1", redis_url=redis_url)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json()))

    def warm() -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "prewarm", "--config", str(config), "warm", str(plan_file),
                              "--redis", redis_url, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        [report] = json.loads(out.stdout)
        assert isinstance(report, dict)
        return report

    first = warm()
    stats = twin.stats()
    assert stats["wan_bytes"] == plan.bytes
    assert inside_plan(twin.reads(), ranges)
    twin.reset()
    second = warm()
    again = twin.stats()
    assert again["reads"] == 0 and again["opens"] == 0, "the second job reads (or opens) nothing already warmed"
    assert second["counters"]["bytes_skipped"] == plan.bytes and second["counters"]["bytes_done"] == 0
    assert first["counters"]["bytes_done"] == plan.bytes
    info = WarmJob(connect(redis_url), str(second["id"])).info()
    assert info is not None and info.state is JobState.DONE


def test_a_worker_killed_mid_warm_every_granule_still_reaches_the_gateway(
        studio: Studio, gateway_twin: StartTwin, redis_url: str, celery_worker: StartWorker,
        tmp_path: Path) -> None:
    ranges = planned_ranges(studio, 10)
    plan = studio.plan(ranges, gateways=("gw1",))
    twin = gateway_twin(studio.root, rtt_ms=5, mbps=None, log_reads=True, cache_model="chunk")
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump({"path_map": [{"studio": PREFIX, "local": str(twin.mount)}],
                                      "roots": [PREFIX], "in_flight": 2, "visibility_timeout_s": 4,
                                      "throttle_bps": 3_000_000}))
    first = celery_worker(config, "prewarm.gw1", redis_url=redis_url, concurrency=2)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json()))
    out = subprocess.run([sys.executable, "-m", "prewarm", "--config", str(config), "warm", str(plan_file),
                          "--redis", redis_url, "--no-wait"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = connect(redis_url)
    job = WarmJob(r, out.stdout.strip())
    deadline = time.monotonic() + 60
    while (info := job.info(findings=False)) is None or info.batches_done < 1:
        assert time.monotonic() < deadline, "no batch finished"
        time.sleep(0.05)
    first.kill()
    celery_worker(config, "prewarm.gw1", redis_url=redis_url)
    deadline = time.monotonic() + 90
    while not ((state := job.state()) and state.final):
        assert time.monotonic() < deadline, "the warm did not complete after the kill"
        time.sleep(0.1)
    assert job.state() is JobState.DONE
    stats = twin.stats()
    assert stats["wan_bytes"] == plan.bytes, "every planned granule fetched, each once"
    assert inside_plan(twin.reads(), ranges)
