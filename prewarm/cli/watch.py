"""`prewarm watch --spool DIR --traces DIR`: submit jobs dropped in a spool, file traces dropped by render nodes.

Without `--server` a spooled job is planned here (from the trace store's earlier jobs
of its shot) and warmed through the workers when Redis is configured, else embedded.
With `--server URL` it goes to the warm service (`prewarm serve`), which does the same.
Runs until interrupted; `--once` makes one pass (after letting drops settle) and exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from prewarm.cli.options import site_settings
from prewarm.errors import ConfigError

if TYPE_CHECKING:
    from prewarm.farm.watch import Outcome


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("watch", help="watch a spool folder for jobs and a drop folder for traces",
                       description="Submit every manifest or job bundle dropped into the spool folder once "
                                   "(then move it to done/ or failed/), and import every trace dropped into "
                                   "the traces folder into the trace store.")
    p.add_argument("--spool", metavar="DIR", help="folder of manifests and job bundles to submit")
    p.add_argument("--traces", metavar="DIR", help="folder where render nodes drop traces")
    p.add_argument("--store", metavar="DIR", help="the trace store folder (default: trace_store setting)")
    p.add_argument("--server", metavar="URL", help="submit through the warm service instead of in-process")
    p.add_argument("--token", default=os.environ.get("PREWARM_TOKEN"),
                   help="bearer token of the warm service (default $PREWARM_TOKEN)")
    p.add_argument("--redis", metavar="URL", help="Redis of the workers (default $PREWARM_REDIS_URL or the config)")
    p.add_argument("--settle", type=float, default=1.0, metavar="S",
                   help="a drop must stay unchanged this long before it is read (default 1 s)")
    p.add_argument("--retry", type=float, default=10.0, metavar="S",
                   help="retry a submission that found the service down after this long (default 10 s)")
    p.add_argument("--once", action="store_true", help="one pass over both folders, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.farm.spool import Spool, client_submitter, local_submitter
    from prewarm.farm.tracedrop import TraceDrop
    from prewarm.farm.watch import watch

    if not args.spool and not args.traces:
        raise ConfigError("watch", "give --spool DIR, --traces DIR or both")
    if args.settle < 0 or args.retry <= 0:
        raise ConfigError("--settle/--retry", "must be positive numbers of seconds")
    settings = site_settings(args)
    if args.store:
        settings = replace(settings, trace_store=args.store)
    pollers = []
    folders = []
    if args.spool:
        submit = client_submitter(args.server, args.token) if args.server else local_submitter(settings)
        spool = Spool(args.spool, submit, settle_s=args.settle, retry_s=args.retry,
                      dedupe_s=settings.service_dedupe_s, max_bytes=settings.max_request_bytes)
        pollers.append(spool.poll)
        folders.append(Path(args.spool))
    if args.traces:
        if not settings.trace_store:
            raise ConfigError("--traces", "traces are filed in the trace store: set trace_store or pass --store")
        drop = TraceDrop(Path(args.traces), settings, settle_s=args.settle)
        pollers.append(drop.poll)
        folders.append(Path(args.traces))
    if args.once:
        return _once(pollers, args.settle)
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    print(f"watching {', '.join(map(str, folders))} (Ctrl-C to stop)", file=sys.stderr)
    for outcome in watch(pollers, folders, stop):
        print(f"{outcome.name}: {outcome.state}: {outcome.detail}", file=sys.stderr, flush=True)
    return 0


def _once(pollers: list[Callable[[], list[Outcome]]], settle_s: float) -> int:
    """One pass: see each drop, let it settle, take it; exit 1 when any failed."""
    from prewarm.farm.watch import DropState

    failed = 0
    for poll in pollers:
        poll()  # first sight of each drop
    time.sleep(settle_s)
    for poll in pollers:
        for outcome in poll():
            failed += outcome.state == DropState.FAILED
            print(f"{outcome.name}: {outcome.state}: {outcome.detail}", file=sys.stderr)
    return 1 if failed else 0
