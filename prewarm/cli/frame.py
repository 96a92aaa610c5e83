"""`prewarm frame`: tell prewarm when a frame of a live job starts and ends (any farm), and re-plan.

    prewarm frame register JOB MANIFEST [--warm ID]...     make JOB live (without --warm: warm it now)
    prewarm frame start JOB FRAME [--node N] [--at T]      a frame started (node: $PREWARM_NODE or this host)
    prewarm frame done JOB FRAME [--node N] [--trace FILE] a frame finished; its trace is filed in the store
    prewarm frame progress JOB FRAME --trace FILE          a running frame's records so far, filed likewise
    prewarm frame requeue|fail JOB FRAME
    prewarm frame replan [--loop]                          run the re-plans that are due (the service does this)
    prewarm frame show JOB [--json]                        the job's frames and events

JOB is the farm's id of the job, as its events name it. Talks to Redis directly (like
`prewarm cancel`); nodes without Redis use the service's `POST /api/v1/frames`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from prewarm.cli.options import add_redis_flag, redis_of, site_settings
from prewarm.errors import ConfigError

if TYPE_CHECKING:
    import redis

    from prewarm.site.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("frame", help="frame events of a live job (start, done, ...) and live re-planning",
                       description="Tell prewarm when frames of a live job start and finish; finished frames' "
                                   "traces re-plan the frames still to start.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    reg = verbs.add_parser("register", help="make a job live: its manifest and warm ids")
    reg.add_argument("job", help="the farm's job id")
    reg.add_argument("manifest", help="the job's manifest")
    reg.add_argument("--warm", action="append", default=None, metavar="ID",
                     help="its warm job id (repeatable); without it the job is planned from the store and warmed")
    helps = {"start": "a frame started", "done": "a frame finished (with its trace)",
             "requeue": "a frame was requeued: it will start again", "fail": "a frame failed",
             "progress": "a running frame's records so far (filed until its finished trace replaces them)"}
    for verb in ("start", "done", "requeue", "fail", "progress"):
        v = verbs.add_parser(verb, help=helps[verb])
        v.add_argument("job", help="the farm's job id")
        v.add_argument("frame", help="the frame number")
        v.add_argument("--node", default=os.environ.get("PREWARM_NODE") or socket.gethostname(),
                       help="the render node (default $PREWARM_NODE, else this host's name)")
        v.add_argument("--at", type=float, default=None, metavar="EPOCH", help="when (default now)")
        if verb in ("done", "progress"):
            v.add_argument("--trace", metavar="FILE", required=verb == "progress",
                           help="its trace (strace or JSON Lines), filed in the store")
            v.add_argument("--store", metavar="DIR", help="the trace store folder (default: trace_store setting)")
    rp = verbs.add_parser("replan", help="run the re-plans that are due (the service runs them itself)")
    rp.add_argument("--loop", action="store_true", help="keep running, every 2 s, until interrupted")
    show = verbs.add_parser("show", help="a live job's frames, events and last re-plan")
    show.add_argument("job")
    show.add_argument("--json", action="store_true")
    for v in (reg, rp, show, *(verbs.choices[k] for k in ("start", "done", "requeue", "fail", "progress"))):
        add_redis_flag(v)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = site_settings(args)
    if getattr(args, "store", None):
        settings = replace(settings, trace_store=args.store)
    r = redis_of(settings, "frame")
    if args.verb == "register":
        return _register(r, settings, args)
    if args.verb == "replan":
        return _replan(r, settings, args.loop)
    if args.verb == "show":
        return _show(r, settings, args.job, args.json)
    return _event(r, settings, args)


def _register(r: redis.Redis[bytes], settings: Settings, args: argparse.Namespace) -> int:
    from prewarm.flow import live, warming
    from prewarm.flow.jobs import load_manifest
    from prewarm.flow.planning import plan_manifest
    from prewarm.state.celery_app import CelerySender

    live.check_job_id(args.job, "JOB")
    if os.path.isdir(args.manifest):
        raise ConfigError(args.manifest, "a live job registers a manifest file: register a job bundle through the "
                                         "service (POST /live/jobs), which re-plans farm submissions")
    manifest = load_manifest(args.manifest, settings)
    with open(args.manifest, encoding="utf-8") as fh:  # read above: a file within max_request_bytes, UTF-8
        text = fh.read()
    ids = args.warm
    if ids is None:
        plan = plan_manifest(manifest, None, settings)
        ids = list(warming.submit_plan(r, plan, settings, CelerySender(settings).send, args.manifest).ids)
    live.register(r, args.job, manifest, ids, "manifest", text)
    print(f"prewarm frame: {args.job} is live ({len(manifest.frames)} frames, warm {','.join(ids) or '-'})",
          file=sys.stderr)
    return 0


def _event(r: redis.Redis[bytes], settings: Settings, args: argparse.Namespace) -> int:
    from prewarm.flow import live
    from prewarm.state.frames import FrameEvent, Kind

    live.check_job_id(args.job, "JOB")
    try:
        frame = int(args.frame)
    except ValueError as exc:
        raise ConfigError("FRAME", f"expected an integer, got {args.frame[:40]!r}") from exc
    event = FrameEvent(Kind(args.verb), args.job, frame, time.time() if args.at is None else args.at, args.node)
    reported = live.report_event(r, settings, event, getattr(args, "trace", None))
    extra = f"; trace {reported.trace}" if reported.trace else ""
    if reported.outcome.refused:
        raise ConfigError(f"{args.job} frame {frame}", f"refused: {reported.outcome.value.replace('_', ' ')}")
    print(f"prewarm frame: {args.job} frame {frame}: {reported.outcome.value}{extra}", file=sys.stderr)
    return 0


def _replan(r: redis.Redis[bytes], settings: Settings, loop: bool) -> int:
    from prewarm.flow import live
    from prewarm.state.celery_app import CelerySender

    sender = CelerySender(settings)
    while True:
        for done in live.replan_due(r, settings, sender.send):
            print(json.dumps(done.to_json()))
        if not loop:
            return 0
        time.sleep(live.DEBOUNCE_S)


def _show(r: redis.Redis[bytes], settings: Settings, job: str, as_json: bool) -> int:
    from prewarm.report.frames import live_report

    report = live_report(r, job, settings)
    if report is None:
        raise ConfigError(job, "no live job of that id (never registered, or expired)")
    if as_json:
        print(json.dumps(report.to_json(), indent=1))
        return 0
    print(f"{job} ({report.name}): {report.state}, {report.replans} re-plan(s), events {report.events}")
    for f in report.frames:
        warm = {None: "-", True: "warm", False: "NOT WARM"}[f.warm_at_start]
        print(f"  {f.frame:>6} {f.state.value:<8} {f.node or '-':<16} started {f.started or '-'} "
              f"finished {f.finished or '-'} data at start: {warm}")
    if report.started_before_warm:
        print(f"started before their data was warm: {report.started_before_warm}")
    ev = report.evaluation
    if ev is not None and ev.overall is not None:
        o = ev.overall
        print(f"prediction so far ({ev.frames_traced} finished frames traced): recall {o.recall:.3f}, "
              f"over-fetch {o.overfetch:.2f}x")
    return 0
