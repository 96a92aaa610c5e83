"""`prewarm traces import|list|prune`: the trace store of earlier renders (see prewarm.traces.store and
prewarm.traces.catalogue)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace

from prewarm.cli.options import add_path_map_flags, site_settings
from prewarm.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("traces", help="the store of earlier renders' traces, per show/shot/job",
                       description="Import traces into the trace store, list what it holds, prune it. "
                                   "Planning a job finds the traces of earlier jobs of its shot there.")
    p.add_argument("--store", metavar="DIR", help="the trace store folder (default: trace_store setting)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="import|list|prune")

    i = verbs.add_parser("import", help="normalise trace files (strace or JSON Lines) into the store")
    i.add_argument("paths", nargs="+", metavar="PATH", help="trace file or folder")
    i.add_argument("--job", required=True, help="the job the traces are of")
    i.add_argument("--show", help="the show (with --shot: later jobs of the shot find these traces)")
    i.add_argument("--shot", help="the shot")
    i.add_argument("--frame", type=int, help="frame of records that name none, in files whose names hold no number")
    add_path_map_flags(i)  # where the studio files are: textures read are filed in tiles with their identity

    ls = verbs.add_parser("list", help="stored jobs, newest first")
    ls.add_argument("--show")
    ls.add_argument("--shot")
    ls.add_argument("--json", action="store_true", help="one JSON object per job")

    pr = verbs.add_parser("prune", help="remove whole jobs, oldest first")
    pr.add_argument("--max-bytes", metavar="SIZE", help="shrink the store to this size (e.g. 20GiB)")
    pr.add_argument("--keep-jobs", type=int, metavar="N", help="keep only the newest N jobs of each shot")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.flow.filing import structure_of
    from prewarm.plan.units import parse_size
    from prewarm.traces import catalogue
    from prewarm.traces import store as trace_store

    settings = site_settings(args)
    if args.store:
        settings = replace(settings, trace_store=args.store)
    if args.verb == "import":
        # structured files read are filed in tiles, with their identity now (a re-publish later is seen)
        result = trace_store.import_traces(settings, args.paths, args.show, args.shot, args.job, args.frame,
                                           structures=structure_of(settings))
        print(trace_store.describe(result), file=sys.stderr)
        return 0
    if args.verb == "list":
        for job in catalogue.list_traces(settings, args.show, args.shot):
            if args.json:
                print(json.dumps(asdict(job)))
            else:
                print(f"{job.show}\t{job.shot}\t{job.job}\t{job.frames} frames\t{job.bytes / 1e6:.2f} MB\t{job.path}")
        return 0
    if args.max_bytes is None and args.keep_jobs is None:
        raise ConfigError("prune", "say how much to keep: --max-bytes SIZE and/or --keep-jobs N")
    if args.keep_jobs is not None and args.keep_jobs < 0:
        raise ConfigError("--keep-jobs", "must be 0 or more")
    max_bytes = parse_size(args.max_bytes, "command line", "--max-bytes") if args.max_bytes else None
    pruned = catalogue.prune(settings, max_bytes=max_bytes, keep_jobs=args.keep_jobs)
    for job in pruned.removed:
        print(f"removed {job.show}/{job.shot}/{job.job} ({job.bytes / 1e6:.2f} MB)", file=sys.stderr)
    print(f"{len(pruned.removed)} job(s) removed, {pruned.bytes_freed / 1e6:.2f} MB freed, "
          f"{pruned.bytes_left / 1e6:.2f} MB left", file=sys.stderr)
    return 0
