"""`prewarm doctor` as a user runs it: on the twin (both sides), a plain folder and a missing mount,
with real Redis and a real Celery worker for the queue check, and two twins for the proxy check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.services import ROOT, StartWorker
from tests.fixtures.studio import PREFIX, Studio
from tests.fixtures.twin import StartTwin

pytestmark = pytest.mark.integration


def doctor(config: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out = subprocess.run([sys.executable, "-m", "prewarm", "--config", str(config), "doctor", *args, "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout), out.stderr


def config(tmp_path: Path, **settings: Any) -> Path:
    path = tmp_path / "prewarm.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def failing(report: dict[str, Any]) -> list[str]:
    return [c["name"] for c in report["checks"] if c["status"] == "fail"]


@pytest.fixture
def texture(studio: Studio) -> str:
    return studio.file("tex/a.tx", 300_000)


def test_on_the_gateways_fsc_mount_auto_reads_buffered(studio: Studio, texture: str, gateway_twin: StartTwin,
                                                      tmp_path: Path) -> None:
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None, fsc=True)
    rc, report, _ = doctor(config(tmp_path, roots=[PREFIX]), "--local", f"{PREFIX}={twin.mount}")
    assert rc == 0, failing(report)
    assert report["read_mode"] == "buffered"
    checks = by_name(report)
    assert "fsc" in checks[f"mount {twin.mount}"]["detail"] and checks[f"mount {twin.mount}"]["fsc"]
    assert checks[f"option rsize {twin.mount}"]["status"] == "ok"
    assert checks[f"option nconnect {twin.mount}"]["status"] == "warn", "the twin does not play nconnect=16"
    assert checks["test read"]["bytes"] == 64 * 1024
    assert twin.stats()["cached_bytes"] > 0, "the timed read went through the cache, as a warm would"


def test_forced_o_direct_on_the_fsc_mount_is_useless(studio: Studio, texture: str, gateway_twin: StartTwin,
                                                     tmp_path: Path) -> None:
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None, fsc=True)
    rc, report, _ = doctor(config(tmp_path, roots=[PREFIX], read_mode="direct"), "--local", f"{PREFIX}={twin.mount}")
    assert rc == 1 and failing(report) == [f"read mode {twin.mount}"]
    assert report["read_mode"] == "direct" and "caches nothing" in by_name(report)[f"read mode {twin.mount}"]["detail"]


def test_on_a_render_side_client_auto_reads_direct(studio: Studio, texture: str, gateway_twin: StartTwin,
                                                   tmp_path: Path) -> None:
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None)
    rc, report, _ = doctor(config(tmp_path, path_map=[{"studio": PREFIX, "local": str(twin.mount)}]))
    assert rc == 0, failing(report)
    assert report["read_mode"] == "direct"
    assert by_name(report)["O_DIRECT"]["o_direct"] is True


def test_a_plain_folder_is_read_direct_and_said_to_reach_no_gateway(studio: Studio, texture: str,
                                                                    tmp_path: Path) -> None:
    rc, report, _ = doctor(config(tmp_path, roots=[PREFIX]), "--local", f"{PREFIX}={studio.root}")
    assert rc == 0, failing(report)
    assert report["read_mode"] == "direct"
    mount = by_name(report)[f"mount {studio.root}"]
    assert mount["status"] == "warn" and "not an NFS mount" in mount["detail"]


def test_a_missing_mount_and_no_roots_are_useless(tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted"
    rc, report, _ = doctor(config(tmp_path), str(missing))
    assert rc == 1 and set(failing(report)) == {f"mount {missing}", "roots"}
    assert report["read_mode"] == "direct"


def test_the_table_says_the_read_mode_and_the_verdict(studio: Studio, texture: str, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "prewarm", "--config", str(config(tmp_path, roots=[PREFIX])),
                          "doctor", "--local", f"{PREFIX}={studio.root}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"read mode: direct ({studio.root})" in out.stdout and "will do its job" in out.stdout


def test_nobody_consuming_the_queue_is_useless_until_a_worker_does(
        studio: Studio, texture: str, tmp_path: Path, redis_url: str, celery_worker: StartWorker) -> None:
    cfg = config(tmp_path, roots=[PREFIX], redis_url=redis_url,
                 path_map=[{"studio": PREFIX, "local": str(studio.root)}])
    rc, report, _ = doctor(cfg)
    assert rc == 1 and failing(report) == ["workers prewarm"]
    assert by_name(report)["redis"]["status"] == "ok"
    celery_worker(cfg, "prewarm.prewarm", redis_url=redis_url)
    rc, report, _ = doctor(cfg)
    assert rc == 0, failing(report)
    assert by_name(report)["workers prewarm"]["queue"] == "prewarm.prewarm"
    assert len(by_name(report)["workers prewarm"]["workers"]) == 1


def test_redis_configured_but_down_is_useless(tmp_path: Path, studio: Studio, texture: str) -> None:
    rc, report, _ = doctor(config(tmp_path, roots=[PREFIX], redis_url="redis://127.0.0.1:1/0"),
                           "--local", f"{PREFIX}={studio.root}")
    assert rc == 1 and failing(report) == ["redis"]


def test_a_warm_reaching_another_proxy_than_its_gateways_agent_is_reported(
        studio: Studio, texture: str, gateway_twin: StartTwin, tmp_path: Path) -> None:
    a = gateway_twin(studio.root, rtt_ms=1, mbps=None, node_name="proxy-a")
    b = gateway_twin(studio.root, rtt_ms=1, mbps=None, node_name="proxy-b")
    settings = {"roots": [PREFIX], "agent_url": a.url, "gateway_agents": {"gw-b": b.url}}
    rc, report, _ = doctor(config(tmp_path, **settings), "--local", f"{PREFIX}={b.mount}")
    checks = by_name(report)
    assert rc == 1 and failing(report) == [f"proxy prewarm {b.mount}"]
    assert checks[f"proxy prewarm {b.mount}"]["reached"].startswith("proxy-b")
    assert checks[f"proxy gw-b {b.mount}"]["match"] == "same"
    assert checks["agent prewarm"]["proxy"] == "proxy-a"
    rc, report, _ = doctor(config(tmp_path, roots=[PREFIX], agent_url=a.url), "--local", f"{PREFIX}={a.mount}")
    assert rc == 0 and by_name(report)[f"proxy prewarm {a.mount}"]["match"] == "same"


def test_the_gateways_the_queues_and_redis_have_are_checked_not_only_the_default(
        studio: Studio, texture: str, tmp_path: Path, redis_url: str, celery_worker: StartWorker) -> None:
    """A warm waiting in Redis for gateway gw-late, and a worker serving gw-a: both gateways are checked."""
    import redis

    cfg = config(tmp_path, roots=[PREFIX], redis_url=redis_url,
                 path_map=[{"studio": PREFIX, "local": str(studio.root)}])
    celery_worker(cfg, "prewarm.prewarm,prewarm.gw-a", redis_url=redis_url)
    r = redis.Redis.from_url(redis_url)
    r.zadd("prewarm:gw:gw-late:jobs", {"0123abcd": 1.0})
    try:
        rc, report, _ = doctor(cfg)
    finally:
        r.delete("prewarm:gw:gw-late:jobs")
    checks = by_name(report)
    assert checks["workers gw-a"]["status"] == "ok" and checks["workers prewarm"]["status"] == "ok"
    assert rc == 1 and failing(report) == ["workers gw-late"]
    assert "no worker consumes prewarm.gw-late" in checks["workers gw-late"]["detail"]


def test_the_agent_a_mount_declares_is_asked_when_none_is_configured(
        studio: Studio, texture: str, gateway_twin: StartTwin, tmp_path: Path) -> None:
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None, node_name="proxy-declared")
    rc, report, _ = doctor(config(tmp_path, roots=[PREFIX]), "--local", f"{PREFIX}={twin.mount}")
    check = by_name(report)[f"agent {twin.mount}"]
    assert check["status"] == "ok" and check["proxy"] == "proxy-declared"
    assert "declared by the mount" in check["detail"]
