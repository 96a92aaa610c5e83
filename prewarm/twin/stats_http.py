"""The twin's counters over HTTP on loopback, in its own shape and in the knfsd agent's.

    GET  /stats               the twin's counters (`Gateway.stats()`)
    GET  /reads               {"reads": [[path, offset, length], ...]} when started with read logging
    GET  /api/v1/mountStats   the knfsd-cache-utils agent's shape, so verification code
                              written against a real proxy runs against the twin
    GET  /api/v1/nodeInfo     which proxy this is (also `/`, and any other path, as the agent does)
    POST /reset               zero counters and the read log
    POST /drop                empty the data and attribute caches (a cold run)
    POST /restart             a gateway restart keeping its cache disk (`Gateway.restart`)
    POST /faults              inject a fault: {"prefix", "errno", "count", "delay_s"} (see `Fault`)
    GET  /faults              the injected faults and how often each fired
    DELETE /faults            clear them

Like the agent, the `/api/v1` answers and `/` are always gzip-encoded, whatever the
client asked: a client of the agent must cope with that.

In the mountStats view `normalRead` is bytes served to clients and `serverRead` the
bytes fetched over the WAN, which is how the agent's numbers read on a real proxy:
server reads growing with normal reads is WAN traffic, normal reads alone are hits.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prewarm.twin.gateway import Fault, Gateway

_EVENTS = ("inodeRevalidate", "dnodeRevalidate", "dataInvalidate", "attributeInvalidate", "vfsOpen",
           "vfsLookup", "vfsAccess", "vfsUpdatePage", "vfsReadPage", "vfsReadPages", "vfsWritePage",
           "vfsWritePages", "vfsGetdents", "vfsSetattr", "vfsFlush", "vfsFsync", "vfsLock",
           "vfsFileRelease", "truncation", "writeExtension", "sillyRename", "shortRead", "shortWrite",
           "delay", "pnfsRead", "pnfsWrite")


def go_duration(seconds: float) -> str:
    """Whole seconds as Go's `time.Duration.String()` prints them ("1h17m46s"), as the agent does."""
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def mount_stats(stats: dict[str, Any], mountpoint: str) -> dict[str, Any]:
    """Render `Gateway.stats()` as the knfsd agent's `GET /api/v1/mountStats` response."""
    cfg = stats["config"]
    ops = stats["ops"]
    operations = []
    for name, o in ops.items():
        wait_ms = int(o["wait_ms"])
        operations.append({
            "operation": name, "requests": o["requests"], "transmissions": o["requests"], "retries": 0,
            "majorTimeouts": 0, "bytesSent": 0, "bytesReceived": o["bytes_received"],
            "queueMilliseconds": 0, "rttMilliseconds": wait_ms, "executionMilliseconds": wait_ms,
            "errors": o["errors"]})
    events = dict.fromkeys(_EVENTS, 0)
    events.update(vfsOpen=stats["opens"], vfsLookup=ops["LOOKUP"]["requests"],
                  inodeRevalidate=ops["GETATTR"]["requests"], vfsGetdents=ops["READDIRPLUS"]["requests"],
                  dataInvalidate=stats["attr_invalidations"], vfsReadPages=stats["reads"])
    ttl = str(int(cfg["attr_ttl_s"]))
    rsize = str(cfg["rsize"])
    return {"mounts": [{
        "device": f"prewarm-twin:{cfg['origin']}",
        "mount": mountpoint,
        "export": cfg["origin"],
        "options": {"ro": "", "vers": "3", "rsize": rsize, "wsize": rsize, "acregmin": ttl, "acregmax": ttl,
                    "acdirmin": ttl, "acdirmax": ttl, "hard": "", "nocto": "", "proto": "tcp", "fsc": ""},
        "stats": {
            "age": go_duration(stats["uptime_s"]),
            "bytes": {"normalRead": stats["bytes_served"] - stats["direct_bytes_served"], "normalWrite": 0,
                      "directRead": stats["direct_bytes_served"], "directWrite": 0,
                      "serverRead": stats["wan_bytes"], "serverWrite": 0,
                      "readPages": -(-stats["bytes_served"] // 4096), "writePages": 0},
            "events": events,
            "operations": operations,
        },
    }]}


def node_info(name: str) -> dict[str, Any]:
    """The agent's `GET /api/v1/nodeInfo`, for a proxy named `name` on this host's loopback."""
    return {"name": name, "hostname": socket.gethostname(),
            "interfaceConfig": {"ipAddress": "127.0.0.1", "networkName": "loopback", "networkURI": ""},
            "zone": "local", "machineType": "prewarm-twin", "image": "prewarm-twin"}


def start_stats_server(gateway: Gateway, mountpoint: str, port: int = 0,
                       host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve the endpoints above from a daemon thread; `server.server_address[1]` is the port bound.

    The proxy's name is `gateway.config.node_name`, or `prewarm-twin-PORT`.
    """
    node: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: Any, gzipped: bool = False) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            if gzipped:
                data = gzip.compress(data)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0].rstrip("/")
            views: dict[str, Callable[[], dict[str, Any]]] = {
                     "/stats": gateway.stats,
                     "/reads": lambda: {"reads": [list(r) for r in gateway.reads()]},
                     "/faults": lambda: {"faults": [f.to_json() for f in gateway.faults]}}
            view = views.get(route)
            if view is not None:
                self._send(200, view())
            elif route == "/api/v1/mountStats":
                self._send(200, mount_stats(gateway.stats(), mountpoint), gzipped=True)
            else:  # the agent answers any other path as it answers /
                self._send(200, node, gzipped=True)

        def do_POST(self) -> None:
            route = self.path.split("?", 1)[0].rstrip("/")
            actions: dict[str, Callable[[], None]] = {
                "/reset": gateway.reset, "/drop": gateway.drop, "/restart": gateway.restart}
            if route in actions:
                actions[route]()
            elif route == "/faults":
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    gateway.inject(Fault.parse(json.loads(self.rfile.read(min(length, 1 << 16)) or b"{}")))
                except (ValueError, AttributeError) as exc:
                    self._send(400, {"error": str(exc)})
                    return
            else:
                self._send(404, {"error": f"no such endpoint: {route}"})
                return
            self._send(200, {"ok": True})

        def do_DELETE(self) -> None:
            if self.path.split("?", 1)[0].rstrip("/") == "/faults":
                self._send(200, {"cleared": [f.to_json() for f in gateway.clear_faults()]})
            else:
                self._send(404, {"error": f"no such endpoint: {self.path}"})

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the twin's stderr is for errors."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    node.update(node_info(gateway.config.node_name or f"prewarm-twin-{server.server_address[1]}"))
    threading.Thread(target=server.serve_forever, name="twin-stats-http", daemon=True).start()
    return server
