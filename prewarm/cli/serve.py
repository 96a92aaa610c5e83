"""`prewarm serve`: run the warm service (see prewarm/farm/service.py and docs/service.md)."""

from __future__ import annotations

import argparse
import sys

from prewarm.cli.options import add_redis_flag, site_settings
from prewarm.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the HTTP service that submitter hooks call",
                       description="Serve the warm API: submit a job (manifest, OpenJD bundle, Deadline 10 job), "
                                   "status, list, cancel, health. Needs Redis; Celery workers do the reading.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8750, help="port (default 8750)")
    p.add_argument("--no-token", action="store_true",
                   help="serve without a bearer token (only on a trusted loopback): anyone may submit and cancel")
    add_redis_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from prewarm.farm.service import QueueWatch, connect, create_app
    from prewarm.state.celery_app import CelerySender, consumers
    from prewarm.state.client import persistence_warning, ping

    settings = site_settings(args)
    if not settings.service_token and not args.no_token:
        raise ConfigError("service_token", "no token: set `service_token` in the config or $PREWARM_SERVICE_TOKEN "
                                           "(or pass --no-token on a trusted loopback)")
    if not settings.allowed_roots():
        raise ConfigError("roots", "the service needs `roots` or `path_map` in its config: it plans only below them")
    if not 0 < args.port < 65536:
        raise ConfigError("--port", f"{args.port} is not a port number")
    if not settings.redis_url:
        raise ConfigError("--redis", "`prewarm serve` needs Redis: pass --redis URL or set PREWARM_REDIS_URL")
    r = connect(settings.redis_url)
    ping(r, settings.redis_url)
    warning = persistence_warning(r)
    if warning:
        print(f"prewarm serve: warning: {warning}", file=sys.stderr)
    sender = CelerySender(settings)
    served = QueueWatch(lambda: set(consumers(sender.app))).start()
    app = create_app(settings, r, sender.send, sender.revoke, None if args.no_token else settings.service_token,
                     served)
    print(f"prewarm serve: http://{args.host}:{args.port}/api/v1 (OpenAPI at /openapi.json)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
