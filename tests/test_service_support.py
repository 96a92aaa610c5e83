"""The warm service on loopback for the service, client and hook tests: uvicorn in a thread,
real Redis, Celery's real `send` (a worker, when a test starts one, does the reading)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
import yaml

from prewarm.client import PrewarmClient
from prewarm.config import Settings
from prewarm.pathmap import PathMap
from prewarm.service import connect, create_app
from tests.fixtures.services import free_port

ROOT = Path(__file__).resolve().parents[1]
STUDIO = "/studio/proj"
TRACES = "/studio/traces"
TOKEN = "s3cret-token"
SHOT100 = ROOT / "sample_jobs" / "shot100"


@dataclass
class LiveService:
    url: str
    settings: Settings
    r: redis.Redis
    config: Path
    """A worker config file with the same roots and mapping."""

    def client(self, **kw: Any) -> PrewarmClient:
        kw.setdefault("token", TOKEN)
        return PrewarmClient(self.url, **kw)


def run_server(app: Any) -> tuple[str, Callable[[], None]]:
    """Serve `app` on a free loopback port in a thread; returns the URL and a stop function."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture
def live_service(redis_url: str, shot_trees: Path, tmp_path: Path) -> Iterator[LiveService]:
    """Roots: the shot trees as /studio/proj, and /studio/traces holding the shot100 traces."""
    from workers.app import configure
    from workers.tasks import revoke, send

    shutil.copytree(SHOT100 / "traces", tmp_path / "traces" / "shot100")
    mapping = [{"studio": STUDIO, "local": str(shot_trees)}, {"studio": TRACES, "local": str(tmp_path / "traces")}]
    settings = Settings(redis_url=redis_url, path_map=PathMap.parse(mapping, "test"), roots=(STUDIO, TRACES),
                        max_request_bytes=64 * 1024, service_token=TOKEN,
                        visibility_timeout_s=4, dispatch_window=4, in_flight=4)
    configure(settings)
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump({"path_map": mapping, "roots": [STUDIO, TRACES],
                                      "visibility_timeout_s": 4, "in_flight": 4, "dispatch_window": 4}))
    r = connect(redis_url)
    url, stop = run_server(create_app(settings, r, send, revoke, TOKEN))
    yield LiveService(url, settings, r, config)
    stop()
    r.close()
    configure(replace(settings, redis_url=None))


def manifest_text(**changes: Any) -> str:
    data = yaml.safe_load((SHOT100 / "manifest.yaml").read_text())
    data.update(changes)
    return yaml.safe_dump(data)


def wait_final(client: PrewarmClient, job_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.status(job_id)
        if info["state"] in ("done", "partial", "failed", "cancelled"):
            return info
        time.sleep(0.2)
    pytest.fail(f"warm {job_id} did not end in {timeout}s")
