"""`prewarm throttle set GATEWAY RATE` / `show GATEWAY...`: the warm rate shared by a gateway's workers.

Takes effect on the next read of every worker, while warms run.
"""

from __future__ import annotations

import argparse

from prewarm.cli.options import add_redis_flag, redis_of, site_settings
from prewarm.plan.units import parse_rate


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("throttle", help="set or show a gateway's warm rate")
    p.add_argument("action", choices=("set", "show"))
    p.add_argument("gateway")
    p.add_argument("rate", nargs="?", help="e.g. 50MB/s, 400MiB/s, off (with `set`)")
    add_redis_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.errors import ConfigError
    from prewarm.state.throttle import get_rate, set_rate

    settings = site_settings(args)
    r = redis_of(settings, "throttle")
    if args.action == "set":
        if args.rate is None:
            raise ConfigError("throttle set", "give a rate, e.g. 50MB/s, or off")
        set_rate(r, args.gateway, parse_rate(args.rate, "command line", "RATE", ConfigError))
    rate = get_rate(r, args.gateway)
    if rate is None:
        shown = "not set (workers use their configured throttle_bps)" if settings.throttle_bps is None else \
            f"not set (workers' default {settings.throttle_bps / 1e6:.1f} MB/s)"
    else:
        shown = "unthrottled" if rate == 0 else f"{rate / 1e6:.1f} MB/s"
    print(f"{args.gateway}: {shown}")
    return 0
