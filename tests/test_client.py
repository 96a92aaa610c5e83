"""The client's retry rules against real HTTP servers on loopback: a flaky one (5xx, then OK),
one that refuses (4xx), and a port nobody listens on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from prewarm.errors import InputError, ServiceError
from prewarm.farm.client import PrewarmClient
from tests.fixtures.services import free_port


class Scripted(ThreadingHTTPServer):
    """Answers each request with the next (status, body) of its script; the last one repeats."""

    def __init__(self, script: list[tuple[int, dict[str, object]]]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script = script
        self.seen: list[tuple[str, str, str | None]] = []


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append((self.command, self.path, self.headers.get("authorization")))
        status, body = self.server.script[min(len(self.server.seen), len(self.server.script)) - 1]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[type[Scripted]]:
    servers: list[Scripted] = []

    def start(script: list[tuple[int, dict[str, object]]]) -> Scripted:
        server = Scripted(script)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for s in servers:
        s.shutdown()
        s.server_close()


def url(server: Scripted) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_5xx_is_retried_with_backoff_then_succeeds(scripted: type[Scripted]) -> None:
    server = scripted([(503, {"error": "Redis: down"}), (502, {"error": "proxy"}), (200, {"ok": True})])
    client = PrewarmClient(url(server), token="t", retries=2, backoff=0.05)
    assert client.health() == {"ok": True}
    assert [s[:2] for s in server.seen] == [("GET", "/api/v1/health")] * 3
    assert server.seen[0][2] == "Bearer t"


def test_5xx_beyond_the_retries_is_a_service_error(scripted: type[Scripted]) -> None:
    server = scripted([(500, {"error": "boom"})])
    with pytest.raises(ServiceError, match="HTTP 500: boom .after 2 attempt"):
        PrewarmClient(url(server), retries=1, backoff=0.01).status("abc")
    assert len(server.seen) == 2


def test_4xx_is_never_retried(scripted: type[Scripted]) -> None:
    server = scripted([(422, {"error": "frames: bad spec", "where": "manifest:2"})])
    with pytest.raises(InputError) as caught:
        PrewarmClient(url(server), retries=3, backoff=1.0).submit_manifest("job: x\n")
    assert caught.value.where == "manifest:2" and "HTTP 422: frames: bad spec" in str(caught.value)
    assert len(server.seen) == 1


def test_a_dead_port_is_a_service_error_after_the_retries() -> None:
    t0 = time.monotonic()
    with pytest.raises(ServiceError, match=r"cannot reach .*\(after 3 attempt"):
        PrewarmClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.05).health()
    assert time.monotonic() - t0 < 5


def test_missing_local_files_are_named() -> None:
    client = PrewarmClient("http://127.0.0.1:1")
    with pytest.raises(InputError, match="not a job bundle folder"):
        client.submit_bundle("/no/such/bundle")
    with pytest.raises(InputError, match="cannot read the manifest"):
        client.submit_manifest(Path("/no/such/manifest.yaml"))
