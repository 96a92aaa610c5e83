"""`prewarm cancel ID`: stop dispatching a warm job and revoke its queued batches."""

from __future__ import annotations

import argparse
import sys

from prewarm.cli.warm import add_redis_flag, load_settings, redis_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cancel", help="cancel a warm job")
    p.add_argument("id", help="warm job id")
    add_redis_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.state import runner
    from workers.app import configure
    from workers.tasks import revoke, send

    settings = load_settings(args)
    r = redis_of(settings, "cancel")
    configure(settings)
    if runner.cancel(r, args.id, settings, revoke, send):
        print(f"cancelled {args.id}", file=sys.stderr)
    else:
        print(f"{args.id} had already ended", file=sys.stderr)
    return 0
