"""`prewarm warm MANIFEST|PLAN.json`: plan if needed, then warm, in-process or through Celery workers.

Without a Redis URL (`--redis`, PREWARM_REDIS_URL or the config) the warm runs
embedded, in this process, needing no server. With one, a warm job is created per
gateway node, its batches are fed to the workers, and this command follows progress
until the jobs end (unless `--no-wait`). Exit 0 when every job is `done`, 1 when one
is `partial`, `failed` or `cancelled`, 2 on bad input, 3 when a service is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import IO, TYPE_CHECKING

from prewarm.cli.options import (
    add_local_job_flags,
    add_path_map_flags,
    add_redis_flag,
    load_job,
    redis_of,
    site_settings,
)
from prewarm.errors import ConfigError
from prewarm.flow import following
from prewarm.plan.model import Plan
from prewarm.plan.units import parse_rate
from prewarm.site.mounts import ReadMode
from prewarm.site.settings import Settings
from prewarm.warm.job import JobInfo, JobState, summary_lines

if TYPE_CHECKING:
    import redis

    from prewarm.report.model import Report
    from prewarm.state.celery_app import CelerySender

EXIT_UNFINISHED = 1

def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("warm", help="read a plan's ranges through the gateway mount so the gateway caches them",
                       description="Warm the gateway cache for a job: plan it (from a manifest) or take a plan, "
                                   "then read its ranges through the gateway mount.")
    p.add_argument("source", nargs="?", metavar="JOB|PLAN.json",
                   help="a plan (JSON), or a job: manifest (YAML or JSON), bundle folder or JSON, hook payload")
    p.add_argument("--traces", action="append", default=[], metavar="PATH",
                   help="traces of earlier frames, when planning from a manifest; repeatable")
    add_redis_flag(p)
    p.add_argument("--in-flight", type=int, metavar="N",
                   help=f"reads in flight per worker (default: the setting, {Settings().in_flight})")
    p.add_argument("--rate", metavar="RATE",
                   help="cap, e.g. 50MB/s or off; with Redis it becomes the gateway's shared rate for all workers")
    p.add_argument("--read-mode", choices=[m.value for m in ReadMode],
                   help="embedded warm: auto (default) reads the gateway's own fsc mount buffered, others O_DIRECT")
    p.add_argument("--gateway", action="append", default=[], metavar="NAME",
                   help="warm this gateway node's cache (queue prewarm.NAME) instead of the plan's; repeatable")
    p.add_argument("--no-wait", action="store_true", help="with Redis: print the job ids and return at once")
    p.add_argument("--give-up", type=float, default=following.GIVE_UP_S, metavar="SECONDS",
                   help=f"with Redis: stop waiting (exit 3) when no batch has finished for this long; the warm "
                        f"stays queued (default {following.GIVE_UP_S:.0f})")
    p.add_argument("--retry", metavar="ID", help="re-read only the failed ranges of warm job ID")
    p.add_argument("--json", action="store_true", help="print the final report(s) as JSON on stdout")
    p.add_argument("--report", metavar="FILE", help="write the warm report when it ends: FILE.html (the page "
                                                    "`prewarm report` makes) or FILE.json; with several gateways, "
                                                    "one file each, named FILE-GATEWAY.html")
    add_local_job_flags(p)
    add_path_map_flags(p)
    p.set_defaults(func=run)


def load_source(source: str, traces: list[str], settings: Settings, args: argparse.Namespace) -> tuple[Plan, Settings]:
    """The plan to warm (`prewarm.flow.jobs`: a plan file, or any job planned as `prewarm plan` plans
    it, from the trace store without `--traces`) and the settings to warm it with."""
    from prewarm.flow import jobs

    job = load_job(args, source, settings)
    return jobs.plan(job, traces or None, settings), settings


def run(args: argparse.Namespace) -> int:
    from prewarm.flow import warming
    from prewarm.warm import embedded

    settings = site_settings(args)
    if args.in_flight is not None:
        if args.in_flight <= 0:
            raise ConfigError("--in-flight", "must be a positive integer")
        settings = replace(settings, in_flight=args.in_flight)
    rate = parse_rate(args.rate, "command line", "--rate", ConfigError) if args.rate is not None else None
    if args.rate is not None:
        settings = replace(settings, throttle_bps=rate)
    if args.read_mode:
        if settings.redis_url:
            raise ConfigError("--read-mode", "workers read with the read_mode of their own config; "
                                             "the flag applies to an embedded warm (no Redis)")
        settings = replace(settings, read_mode=ReadMode(args.read_mode))
    if args.retry:
        return _retry(args, settings)
    if not args.source:
        raise ConfigError("warm", "give a manifest or a plan (or --retry ID)")
    plan, settings = load_source(args.source, args.traces, settings, args)
    for m in plan.missing:
        print(f"planner: missing input {m.path} ({m.reason}{f', line {m.line}' if m.line else ''})", file=sys.stderr)
    report_path = _report_path(args.report)
    if not settings.redis_url:
        plan = warming.check_plan(plan, settings, args.source)
        progress = ProgressLine(sys.stderr)
        warm = embedded.warm_embedded(plan, settings, progress=progress.update)
        progress.done()
        if report_path:
            from prewarm.report import build

            progress_of = build.Progress(warm.planned, warm.done)
            data = build.build(warm.info, plan, progress_of, warm.failed, warm.info.samples, settings.throttle_bps)
            _write_report(report_path, data)
        return _report([warm.info], args.json)
    from prewarm.state.celery_app import CelerySender

    r = redis_of(settings, "warm")
    sender = CelerySender(settings)
    gateways = tuple(args.gateway) or settings.gateways(plan.gateways)
    if args.rate is not None:
        from prewarm.state.throttle import set_rate

        for gw in gateways:
            set_rate(r, gw, rate)
    submitted = warming.submit_plan(r, plan, settings, sender.send, args.source, gateways, reuse=False)
    return _follow(r, list(submitted.ids), args, settings, sender)


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    from prewarm.state import runner
    from prewarm.state.celery_app import CelerySender
    from prewarm.state.jobs import WarmJob

    r = redis_of(settings, "warm --retry")
    old = WarmJob(r, args.retry)
    gw = r.hget(old.key, "gateway")
    if gw is None:
        raise ConfigError("--retry", f"no warm job {args.retry} (expired or never created)")
    sender = CelerySender(settings)
    job = runner.submit(r, old.plan(), settings, sender.send, gw.decode(), retry_of=old)
    return _follow(r, [job.id], args, settings, sender)


def _follow(r: redis.Redis[bytes], ids: list[str], args: argparse.Namespace, settings: Settings,
            sender: CelerySender) -> int:
    """Wait for the jobs to end (`prewarm.flow.following`), showing progress; then report them."""
    from prewarm.state.jobs import WarmJob

    warn_unserved(sender, [h.info(findings=False) for h in (WarmJob(r, i) for i in ids)])
    if args.no_wait:
        for job_id in ids:
            print(job_id)
        return 0
    print("warm job(s): " + " ".join(ids), file=sys.stderr)
    progress = ProgressLine(sys.stderr)
    try:
        final = following.follow(r, ids, settings, sender.send, args.give_up, progress.update,
                                 lambda line: print(line, file=sys.stderr), lambda gone: lost_jobs(r, gone, args))
    finally:
        progress.done()
    if args.report:
        from prewarm.report import load

        for info in final:
            _write_report(args.report, load.load(r, info.id, settings.throttle_bps),
                          info.gateway if len(final) > 1 else "")
    return _report(final, args.json)


def warn_unserved(sender: CelerySender, infos: Sequence[JobInfo | None]) -> None:
    """Say at once when no worker consumes a queued or running job's queue: it would wait forever."""
    gateways = {i.gateway for i in infos if i is not None and not i.state.final}
    for queue in sender.unserved(gateways) if gateways else ():
        gateway = queue.removeprefix("prewarm.")
        print(f"no worker consumes {queue}: start one with `prewarm worker --gateway {gateway}` "
              f"(or `celery -A workers worker -Q {queue} -P threads`) against this Redis", file=sys.stderr)


def _report_path(text: str | None) -> str | None:
    if text is not None and not text.lower().endswith((".html", ".htm", ".json")):
        raise ConfigError("--report", f"{text!r}: name a .html or a .json file")
    return text


def _write_report(path: str, report: Report, suffix: str = "") -> None:
    """The report as the page `prewarm report --html` writes, or its JSON; written whole."""
    from prewarm.report import html
    from prewarm.site import atomic

    if suffix:
        stem, dot, ext = path.rpartition(".")
        path = f"{stem}-{suffix}.{ext}"
    text = html.render(report) if not path.lower().endswith(".json") else json.dumps(report.to_json(), indent=1)
    atomic.write_text(path, text, "--report")
    print(f"report: {path}", file=sys.stderr)


def lost_jobs(r: redis.Redis[bytes], gone: list[str], args: argparse.Namespace) -> str:
    """What to say when warm jobs vanished from Redis while this command waited for them."""
    from prewarm.state.client import persistence_warning

    why = ("Redis lost its state: it restarted and keeps no append-only file" if persistence_warning(r)
           else "Redis lost its state (restarted without persistence, flushed, or the keys were evicted)")
    again = (f"prewarm warm --retry {args.retry}" if args.retry else
             "prewarm warm " + " ".join([args.source or "PLAN.json", *(f"--gateway {g}" for g in args.gateway)]))
    return (f"warm job(s) {', '.join(gone)} vanished from Redis: {why}; the batches it held are gone and nothing "
            f"reports whether they ran. Re-run the warm (`{again}`): what was warmed is skipped by the gateway's "
            "cache, not read again over the WAN")


def _report(infos: list[JobInfo], as_json: bool) -> int:
    if as_json:
        print(json.dumps([i.to_json() for i in infos], indent=1))
    for info in infos:
        for line in summary_lines(info):
            print(line, file=sys.stderr)
    return 0 if all(i.state is JobState.DONE for i in infos) else EXIT_UNFINISHED


class ProgressLine:
    """A live line on a terminal; a plain line every `every_s` seconds otherwise (logs, CI)."""

    def __init__(self, out: IO[str], every_s: float = 5.0) -> None:
        self.out = out
        self.tty = out.isatty()
        self.every_s = 0.2 if self.tty else every_s
        self.t0 = time.monotonic()
        self.last = 0.0
        self.shown = False

    def update(self, info: JobInfo) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-3)
        read, moved, files = info.progress()
        rate = read / elapsed
        left = max(info.bytes_planned - moved, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "-"
        line = (f"{info.state.value:<8} {moved / 1e6:,.1f}/{info.bytes_planned / 1e6:,.1f} MB  "
                f"files {files}/{info.files_planned}  {rate / 1e6:.1f} MB/s  ETA {eta}")
        if self.tty:
            self.out.write("\r\x1b[K" + line)
            self.shown = True
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty and self.shown:
            self.out.write("\n")
            self.out.flush()
