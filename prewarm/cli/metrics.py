"""`prewarm metrics --port N`: a standalone Prometheus exporter of the warm jobs in Redis.

For farms that run workers without `prewarm serve` (which serves the same at
/api/v1/metrics). Each scrape reads Redis; the exporter keeps nothing, so any number
of them can run and a restart loses nothing. Runs until interrupted.
"""

from __future__ import annotations

import argparse
import sys
import threading

from prewarm.cli.options import add_redis_flag, redis_of, site_settings
from prewarm.errors import ConfigError, ServiceError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("metrics", help="serve Prometheus metrics of the warm jobs (standalone exporter)")
    p.add_argument("--port", type=int, default=9464, help="port to listen on (default 9464)")
    p.add_argument("--bind", default="0.0.0.0", metavar="ADDR", help="address to listen on (default all)")
    add_redis_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    from prewarm.report.metrics import RedisCollector

    if not 0 < args.port < 65536:
        raise ConfigError("--port", f"{args.port} is not a TCP port")
    r = redis_of(site_settings(args), "metrics")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(r))
    try:
        server, _ = start_http_server(args.port, addr=args.bind, registry=registry)
    except OSError as exc:
        raise ServiceError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}") from exc
    print(f"prewarm metrics on http://{args.bind}:{server.server_address[1]}/metrics", file=sys.stderr, flush=True)
    threading.Event().wait()
    return 0
