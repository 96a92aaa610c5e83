"""`prewarm doctor [MOUNT | --local STUDIO=MOUNT] [--json]`: what a warm on this machine will do, and why.

Checks the mount(s) a warm reads through, the kernel, the read mode `auto` picks, the
agents and the proxy each gateway's warm reaches, Redis, the workers consuming each
gateway's queue, and the roots and path map (see `prewarm.farm.doctor`). Prints a
table, or JSON with `--json` (`read_mode` is `direct` or `buffered`). Exit 0 when a
warm here would do its job, 1 when it would be useless, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from prewarm.cli.options import add_redis_flag, path_map_from, site_settings

EXIT_USELESS = 1

_MARK = {"ok": "ok", "info": "--", "warn": "WARN", "fail": "FAIL"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="say what a warm on this machine will do, and why (exit 1 if useless)",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    p.add_argument("mount", nargs="?", metavar="MOUNT", help="a local directory to warm through (the gateway mount)")
    p.add_argument("--local", action="append", default=[], metavar="STUDIO=LOCAL",
                   help="check the mount reached as LOCAL for studio prefix STUDIO; repeatable")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    add_redis_flag(p)
    p.set_defaults(func=run, alias=[])


def run(args: argparse.Namespace) -> int:
    from prewarm.farm import doctor

    settings = site_settings(args)
    cli_map = path_map_from(args)
    if args.mount:
        targets = [doctor.Target(os.path.abspath(args.mount))]
    elif cli_map.entries:
        targets = [doctor.Target(e.local, e.studio) for e in cli_map.entries if e.local]
    else:
        targets = doctor.targets_of(settings)
    report = doctor.diagnose(settings, targets)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        _table(report)
    return EXIT_USELESS if report.useless else 0


def _table(report: object) -> None:
    from prewarm.farm.doctor import Report

    assert isinstance(report, Report)
    width = max((len(c.name) for c in report.checks), default=10)
    for c in report.checks:
        print(f"{_MARK[c.status.value]:<4}  {c.name:<{width}}  {c.detail}")
    modes = ", ".join(f"{m} ({where})" for where, m in report.read_modes.items()) or "-"
    verdict = "a warm here would be useless: fix the FAIL lines" if report.useless else "a warm here will do its job"
    print(f"\nread mode: {modes}\n{verdict}", file=sys.stdout)
