"""`prewarm worker [--gateway NAME]...`: start a Celery worker that warms one or more gateway nodes.

The same as `celery -A workers worker -Q prewarm.NAME -P threads ...`, with the flags the
warm protocol needs spelled once: a threads pool (reads wait on the network, not the
CPU; prefork costs 230 MB for four processes), no mingle or gossip (a second of start-up
saved, nothing lost: the dispatch window lives in Redis), and a node name per gateway.
Without `--gateway` it serves the default gateway (the `queue` setting), where plans
that name no gateway go. The command becomes the worker process (exec), so a service
manager's signals reach Celery directly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from prewarm.cli.options import add_redis_flag, site_settings
from prewarm.errors import ConfigError
from prewarm.state import keys

DEFAULT_CONCURRENCY = 4
"""Batches one worker warms at once; each keeps `in_flight` reads going."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="start a Celery worker warming gateway node(s)",
                       description="Start a Celery worker for the gateway nodes named (default: the default "
                                   "gateway, where plans that name none go). Extra arguments after -- go to Celery.")
    p.add_argument("--gateway", action="append", default=[], metavar="NAME",
                   help="warm this gateway node's cache (queue prewarm.NAME); repeatable")
    p.add_argument("-c", "--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
                   help=f"batches warmed at once (default {DEFAULT_CONCURRENCY})")
    p.add_argument("-l", "--loglevel", default="info", help="Celery's log level (default info)")
    p.add_argument("--print", action="store_true", help="print the Celery command instead of running it")
    p.add_argument("celery_args", nargs=argparse.REMAINDER, help="-- then more arguments for celery worker")
    add_redis_flag(p)
    p.set_defaults(func=run)


def command(gateways: list[str], concurrency: int, loglevel: str, extra: list[str]) -> list[str]:
    celery = shutil.which("celery", path=os.path.dirname(sys.executable)) or shutil.which("celery")
    if celery is None:
        raise ConfigError("celery", "the celery command is not installed here (pip install 'celery[redis]')")
    queues = ",".join(keys.queue(g) for g in gateways)
    return [celery, "-A", "workers", "worker", "-Q", queues, "-P", "threads", "-c", str(concurrency),
            "--without-mingle", "--without-gossip", "-l", loglevel, "-n", f"prewarm-{gateways[0]}@%h",
            *[a for a in extra if a != "--"]]


def run(args: argparse.Namespace) -> int:
    if args.concurrency <= 0:
        raise ConfigError("--concurrency", "must be a positive integer")
    settings = site_settings(args)
    gateways = args.gateway or [settings.queue]
    argv = command(gateways, args.concurrency, args.loglevel, args.celery_args)
    if args.print:
        print(" ".join(argv))
        return 0
    env = dict(os.environ)
    if args.config:
        env["PREWARM_CONFIG"] = os.path.abspath(args.config)
    if settings.redis_url:
        env["PREWARM_REDIS_URL"] = settings.redis_url
    os.execve(argv[0], argv, env)
