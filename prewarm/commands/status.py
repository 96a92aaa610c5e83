"""`prewarm status [ID]`: one warm job in detail, or the recent ones; `--json` for scripts."""

from __future__ import annotations

import argparse
import json
import sys

from prewarm.commands.warm import add_redis_flag, load_settings, redis_of
from prewarm.errors import ConfigError
from prewarm.jobs import summary_lines


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show a warm job, or the recent ones")
    p.add_argument("id", nargs="?", help="warm job id (default: list recent jobs)")
    p.add_argument("-n", "--limit", type=int, default=20, help="how many recent jobs to list")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_redis_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.state_redis import WarmJob, recent

    r = redis_of(load_settings(args), "status")
    if args.id:
        info = WarmJob(r, args.id).info()
        if info is None:
            raise ConfigError(args.id, "no such warm job (expired or never created)")
        if args.json:
            print(json.dumps(info.to_json(), indent=1))
        else:
            print("\n".join(summary_lines(info)))
        return 0
    infos = recent(r, args.limit)
    if args.json:
        print(json.dumps([i.to_json() for i in infos], indent=1))
        return 0
    if not infos:
        print("no warm jobs", file=sys.stderr)
    for i in infos:
        c = i.counters
        print(f"{i.id}  {i.state.value:<9} {i.gateway:<12} {i.name:<30} "
              f"{(c['bytes_done'] + c['bytes_skipped']) / 1e6:,.1f}/{i.bytes_planned / 1e6:,.1f} MB  "
              f"batches {i.batches_done}/{i.batches}  findings {c['files_failed']}")
    return 0
