"""`prewarm record [--job J --shot S --show P --frame N] [--with ebpf|strace] -- CMD ...`.

Names default to $PREWARM_JOB, $PREWARM_SHOW, $PREWARM_SHOT and $PREWARM_FRAME, so a farm
wrapper can set them once for every task. The recorder is eBPF where the machine allows
it, else strace (`--with` or $PREWARM_RECORD_WITH forces one); stderr says which in one
line. Exits with the command's own status. See docs/record.md for farm wrappers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from prewarm.cli.options import add_redis_flag, site_settings
from prewarm.errors import ConfigError, PrewarmError
from prewarm.site.settings import Settings
from prewarm.traces.ebpf import RECORDERS

if TYPE_CHECKING:
    from prewarm.traces.record import Progress


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
    p.add_argument("--frame-arg", metavar="FLAG",
                   help="take the frame from the render command's own argument after FLAG (e.g. --frame-arg=-f for "
                        "`blender ... -f 12`): for a farm that hands the frame only to the renderer")
    p.add_argument("--store", metavar="DIR", help="the trace store folder (default: trace_store setting)")
    p.add_argument("--drop", metavar="DIR", default=os.environ.get("PREWARM_RECORD_DROP") or None,
                   help="leave the record in this watch folder (`prewarm watch --traces DIR`) with a sidecar naming "
                        "its job and frame, instead of filing it in the store (default $PREWARM_RECORD_DROP)")
    p.add_argument("--with", dest="recorder", choices=RECORDERS, default=os.environ.get("PREWARM_RECORD_WITH") or None,
                   help="force a recorder (default: eBPF where the machine allows it, else strace; "
                        "$PREWARM_RECORD_WITH)")
    p.add_argument("--keep-raw", metavar="FILE", help="also keep the recorder's raw record here")
    p.add_argument("--live-job", metavar="ID", default=os.environ.get("PREWARM_LIVE_JOB") or None,
                   help="the live job (the farm's id, `prewarm frame register`) to post this frame's records so far "
                        "to while it renders, through Redis (default $PREWARM_LIVE_JOB)")
    p.add_argument("--progress-s", type=float, default=120.0, metavar="S",
                   help="with --live-job: post the records so far every S seconds (default 120)")
    add_redis_flag(p)
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the render command")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.flow.filing import structure_of
    from prewarm.traces.record import record
    from prewarm.traces.store import describe

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise ConfigError("record", "give the command to run after --")
    if not args.job:
        raise ConfigError("--job", "say which job this render is of (--job or $PREWARM_JOB)")
    given, where = (_arg_after(cmd, args.frame_arg), "--frame-arg") if args.frame_arg else (args.frame, "--frame")
    try:
        frame = int(given) if given not in (None, "") else None
    except ValueError as exc:
        raise ConfigError(where, f"expected an integer frame, got {given!r}") from exc
    settings = site_settings(args)
    if args.store:
        settings = replace(settings, trace_store=args.store)
    if args.recorder not in (None, *RECORDERS):
        raise ConfigError("--with", f"expected one of {', '.join(RECORDERS)}, got {args.recorder!r}")
    if args.drop:
        if args.live_job:
            raise ConfigError("--live-job", "records so far are filed in the store, not left in a drop folder: "
                                            "give --live-job or --drop, not both")
        return _record_to_drop(settings, cmd, args, frame)
    result = record(settings, cmd, args.job, args.show, args.shot, frame, args.keep_raw, args.recorder,
                    structures=structure_of(settings), progress=_progress(settings, args, frame))
    for note in result.notes:
        print(f"prewarm record: {note}", file=sys.stderr)
    if result.stored is not None:
        print(f"prewarm record: {describe(result.stored)}", file=sys.stderr)
    elif result.error:
        print(f"prewarm record: {result.error}", file=sys.stderr)
    return result.returncode


def _progress(settings: Settings, args: argparse.Namespace, frame: int | None) -> Progress | None:
    """Posting the records so far to a live job (`prewarm frame progress`, through Redis), or None."""
    if not args.live_job:
        return None
    from prewarm.cli.options import redis_of
    from prewarm.flow import live
    from prewarm.state.frames import FrameEvent, Kind
    from prewarm.traces.record import Progress

    live.check_job_id(args.live_job, "--live-job")
    if frame is None:
        raise ConfigError("--live-job", "say which frame this render is (--frame, --frame-arg or $PREWARM_FRAME)")
    if not 1.0 <= args.progress_s <= 86_400:
        raise ConfigError("--progress-s", "between 1 and 86400 seconds")
    node = os.environ.get("PREWARM_NODE") or socket.gethostname()
    try:
        r = redis_of(settings, "record --live-job")
    except PrewarmError as exc:  # the render runs whatever; its finished record is still filed
        print(f"prewarm record: records so far not posted: {exc}", file=sys.stderr)
        return None

    def post(path: str) -> None:
        done = live.report_event(r, settings, FrameEvent(Kind.PROGRESS, args.live_job, frame, time.time(), node),
                                 path)
        if done.trace not in (None, "filed"):
            print(f"prewarm record: records so far of frame {frame}: {done.outcome.value}, {done.trace}",
                  file=sys.stderr)
    return Progress(args.progress_s, post)


def _arg_after(cmd: list[str], flag: str) -> str | None:
    """The value of `flag` in the render's command: `FLAG VALUE` or `FLAG=VALUE`, first one."""
    for i, arg in enumerate(cmd):
        if arg == flag and i + 1 < len(cmd):
            return cmd[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1:]
    return None


def _record_to_drop(settings: Settings, cmd: list[str], args: argparse.Namespace, frame: int | None) -> int:
    """Record into the watch folder: the sidecar first, then the record renamed into place, so the
    watcher never sees a record without its job or a record half written (hidden names are skipped)."""
    from prewarm.farm.tracedrop import SIDECAR
    from prewarm.traces.record import record

    folder = Path(args.drop)
    name = re.sub(r"[^\w.-]", "_", f"{args.job}.{'noframe' if frame is None else frame}.{socket.gethostname()}"
                                    f".{os.getpid()}.trace")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"prewarm record: {folder}: cannot make the drop folder ({exc.strerror}): the record is not kept",
              file=sys.stderr)
        folder = Path(tempfile.gettempdir())
    hidden = folder / f".{name}"
    result = record(settings, cmd, args.job, args.show, args.shot, frame, str(hidden), args.recorder, file=False)
    for note in result.notes:
        print(f"prewarm record: {note}", file=sys.stderr)
    if folder != Path(args.drop) or not hidden.exists():
        hidden.unlink(missing_ok=True)
        return result.returncode
    sidecar = folder / f"{name}{SIDECAR}"
    try:
        tmp = folder / f".{name}{SIDECAR}"
        tmp.write_text(json.dumps({"job": args.job, "show": args.show, "shot": args.shot, "frame": frame}),
                       encoding="utf-8")
        os.rename(tmp, sidecar)
        os.rename(hidden, folder / name)
        print(f"prewarm record: left in {folder / name}", file=sys.stderr)
    except OSError as exc:
        print(f"prewarm record: trace not dropped: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        for leftover in (hidden, sidecar, folder / f".{name}{SIDECAR}"):
            leftover.unlink(missing_ok=True)
    return result.returncode
