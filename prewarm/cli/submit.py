"""`prewarm submit MANIFEST|BUNDLE_DIR --server URL`: hand a job to the warm service.

Prints the warm id(s), one a line, on stdout. Exit 2 when the service refuses the job
(its message names what is wrong), 3 when it cannot be reached after the retries.
"""

from __future__ import annotations

import argparse
import os
import sys

from prewarm.cli.options import add_job_flags, parameters_of, site_settings
from prewarm.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("submit", help="submit a job to the warm service (`prewarm serve`)",
                       description="Submit a manifest, an OpenJD job bundle folder, or a Deadline 10 job "
                                   "(job info + plugin info) to the warm service, which plans and warms it.")
    p.add_argument("source", nargs="?", metavar="MANIFEST|BUNDLE_DIR", help="a manifest file or a job bundle folder")
    p.add_argument("--deadline-job", metavar="FILE", help="Deadline 10 job info file (with --deadline-plugin)")
    p.add_argument("--deadline-plugin", metavar="FILE", help="Deadline 10 plugin info file")
    p.add_argument("--extra-input", action="append", default=[], metavar="PATH",
                   help="with a Deadline job: an input path or pattern the job files do not name; repeatable")
    p.add_argument("--remote-bundle", action="store_true",
                   help="send the bundle folder's path (the service reads it under its roots) instead of its files")
    p.add_argument("--traces", action="append", metavar="PATH",
                   help="trace files or folders under the service's roots (default: its trace store); repeatable")
    add_job_flags(p)
    p.add_argument("--server", default=os.environ.get("PREWARM_SERVER"),
                   help="service URL, e.g. http://prewarm:8750 (default $PREWARM_SERVER)")
    p.add_argument("--token", default=os.environ.get("PREWARM_SERVICE_TOKEN"),
                   help="bearer token (default $PREWARM_SERVICE_TOKEN)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per attempt (default 2)")
    p.add_argument("--retries", type=int, default=2, help="retries on connection errors and 5xx (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.farm.client import PrewarmClient

    if not args.server:
        raise ConfigError("--server", "give the service URL (or set $PREWARM_SERVER)")
    if args.timeout <= 0 or args.retries < 0:
        raise ConfigError("--timeout/--retries", "need a positive timeout and zero or more retries")
    client = PrewarmClient(args.server, token=args.token, timeout=args.timeout, retries=args.retries)
    if args.deadline_job or args.deadline_plugin:
        if not (args.deadline_job and args.deadline_plugin) or args.source:
            raise ConfigError("--deadline-job", "a Deadline job needs both --deadline-job and --deadline-plugin, "
                                                "and no MANIFEST|BUNDLE_DIR")
        result = client.submit_deadline(args.deadline_job, args.deadline_plugin, args.extra_input, args.traces)
    elif not args.source:
        raise ConfigError("submit", "give a manifest, a bundle folder, or --deadline-job/--deadline-plugin")
    elif args.remote_bundle or os.path.isdir(args.source):
        result = client.submit_bundle(args.source, args.traces, remote=args.remote_bundle,
                                      parameters=parameters_of(args, site_settings(args)))
    else:
        if not os.path.isfile(args.source):
            raise ConfigError(args.source, "no such manifest file or bundle folder")
        result = client.submit_manifest(args.source, args.traces)
    for job_id in result["ids"]:
        print(job_id)
    plan = result.get("plan", {})
    what = "already warming/warm" if result.get("duplicate") else "warming"
    print(f"{result['job']}: {what} {plan.get('bytes', 0) / 1e6:.1f} MB in {plan.get('files', 0)} file(s); "
          f"{len(result.get('missing', []))} missing input(s)", file=sys.stderr)
    for m in result.get("missing", [])[:20]:
        print(f"  missing {m['path']}: {m['reason']}", file=sys.stderr)
    for queue in result.get("unserved") or ():
        print(f"  no worker consumes {queue}: the warm waits there until one starts "
              f"(`prewarm worker --gateway {queue.removeprefix('prewarm.')}`)", file=sys.stderr)
    return 0
