"""`prewarm cancel ID`: stop dispatching a warm job and revoke its queued batches."""

from __future__ import annotations

import argparse
import sys

from prewarm.cli.options import add_redis_flag, redis_of, site_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cancel", help="cancel a warm job")
    p.add_argument("id", help="warm job id")
    add_redis_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.state import runner
    from prewarm.state.celery_app import CelerySender

    settings = site_settings(args)
    r = redis_of(settings, "cancel")
    sender = CelerySender(settings)
    if runner.cancel(r, args.id, settings, sender.revoke, sender.send):
        print(f"cancelled {args.id}", file=sys.stderr)
    else:
        print(f"{args.id} had already ended", file=sys.stderr)
    return 0
