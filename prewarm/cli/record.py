"""`prewarm record [--job J --shot S --show P --frame N] [--with ebpf|strace] -- CMD ...`.

Names default to $PREWARM_JOB, $PREWARM_SHOW, $PREWARM_SHOT and $PREWARM_FRAME, so a farm
wrapper can set them once for every task. The recorder is eBPF where the machine allows
it, else strace (`--with` or $PREWARM_RECORD_WITH forces one); stderr says which in one
line. Exits with the command's own status. See docs/record.md for farm wrappers.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from prewarm.cli.options import site_settings
from prewarm.errors import ConfigError
from prewarm.traces.ebpf import RECORDERS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("record", help="run a render command under eBPF or strace and file its trace in the store",
                       description="Run CMD under a recorder (eBPF where the machine allows it, else strace), keep "
                                   "its reads under the configured roots, and file the trace in the trace store with "
                                   "its job and frame. Exits with CMD's status.")
    p.add_argument("--job", default=os.environ.get("PREWARM_JOB"), help="the job (default $PREWARM_JOB)")
    p.add_argument("--show", default=os.environ.get("PREWARM_SHOW"), help="the show (default $PREWARM_SHOW)")
    p.add_argument("--shot", default=os.environ.get("PREWARM_SHOT"), help="the shot (default $PREWARM_SHOT)")
    p.add_argument("--frame", default=os.environ.get("PREWARM_FRAME"),
                   help="the frame the command renders (default $PREWARM_FRAME)")
    p.add_argument("--store", metavar="DIR", help="the trace store folder (default: trace_store setting)")
    p.add_argument("--with", dest="recorder", choices=RECORDERS, default=os.environ.get("PREWARM_RECORD_WITH") or None,
                   help="force a recorder (default: eBPF where the machine allows it, else strace; "
                        "$PREWARM_RECORD_WITH)")
    p.add_argument("--keep-raw", metavar="FILE", help="also keep the recorder's raw record here")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the render command")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.traces.record import record
    from prewarm.traces.store import describe

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise ConfigError("record", "give the command to run after --")
    if not args.job:
        raise ConfigError("--job", "say which job this render is of (--job or $PREWARM_JOB)")
    try:
        frame = int(args.frame) if args.frame not in (None, "") else None
    except ValueError as exc:
        raise ConfigError("--frame", f"expected an integer, got {args.frame!r}") from exc
    settings = site_settings(args)
    if args.store:
        settings = replace(settings, trace_store=args.store)
    if args.recorder not in (None, *RECORDERS):
        raise ConfigError("--with", f"expected one of {', '.join(RECORDERS)}, got {args.recorder!r}")
    result = record(settings, cmd, args.job, args.show, args.shot, frame, args.keep_raw, args.recorder)
    for note in result.notes:
        print(f"prewarm record: {note}", file=sys.stderr)
    if result.stored is not None:
        print(f"prewarm record: {describe(result.stored)}", file=sys.stderr)
    elif result.error:
        print(f"prewarm record: {result.error}", file=sys.stderr)
    return result.returncode
