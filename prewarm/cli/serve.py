"""`prewarm serve`: run the warm service (see prewarm/farm/service.py and docs/service.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from prewarm.cli.options import add_redis_flag, site_settings
from prewarm.errors import ConfigError

HEADER_TIMEOUT_S = 10.0
"""Seconds a client has to send a request's headers, from the connection (or the end of the last
response): a submitter sends them at once; a client that trickles them holds a connection."""
MAX_CONNECTIONS = 200
"""Connections and requests in progress at once (uvicorn's `limit_concurrency`): beyond it, 503.
200 parallel submissions were tried; each holds a thread of planning at most."""
MAX_HEADER_BYTES = 64 * 1024
"""Bytes of an incomplete request head held (uvicorn's `h11_max_incomplete_event_size`)."""


def header_timeout_protocol(seconds: float) -> type[Any]:
    """uvicorn's h11 protocol with a header timeout, which uvicorn lacks: its keep-alive timeout
    starts only after a response, so a client that opens a connection and sends its headers a
    byte at a time held it for ever. The timer runs from the connection (and from the end of
    each response) until a request's headers are complete; then the connection is closed."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeout(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _waiting_for: object = None

        def _arm(self) -> None:
            self._disarm()
            self._waiting_for = self.cycle
            self._timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and self.cycle is not self._waiting_for:
                self._disarm()  # a new request's headers are all in

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeout


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the HTTP service that submitter hooks call",
                       description="Serve the warm API: submit a job (manifest, OpenJD bundle, Deadline 10 job), "
                                   "status, list, cancel, health. Needs Redis; Celery workers do the reading.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8750, help="port (default 8750)")
    p.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT_S, metavar="SECONDS",
                   help=f"close a connection whose request headers are not all in within this long "
                        f"(default {HEADER_TIMEOUT_S:g}): slow clients cannot hold connections")
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
    if not 0 < args.header_timeout <= 3600:
        raise ConfigError("--header-timeout", f"{args.header_timeout:g} is not between 0 and 3600 seconds")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                http=header_timeout_protocol(args.header_timeout), limit_concurrency=MAX_CONNECTIONS,
                h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    return 0
