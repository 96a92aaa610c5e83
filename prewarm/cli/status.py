"""`prewarm status [ID...]`: warm jobs in detail, the recent ones, or live progress; `--json` for scripts.

`--follow` watches jobs until they end (the given ones, else every queued or running
one): on a terminal, a progress bar per warm with bytes, files, rate and ETA; in logs
and farm job output (not a TTY, or `--oneline`), one plain line per warm every
`--every` seconds. `--oneline` alone prints that line once per job.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from prewarm.cli.options import add_redis_flag, redis_of, site_settings
from prewarm.errors import ConfigError
from prewarm.site.settings import Settings
from prewarm.warm.job import JobInfo, summary_lines

if TYPE_CHECKING:
    import redis

POLL_S = 0.5
"""How often live bars read the job state."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="show warm jobs: one in detail, the recent ones, or live progress")
    p.add_argument("ids", nargs="*", metavar="ID", help="warm job id(s) (default: list recent jobs)")
    p.add_argument("-n", "--limit", type=int, default=20, help="how many recent jobs to list")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-f", "--follow", action="store_true", help="live progress until the jobs end")
    p.add_argument("--oneline", action="store_true", help="one plain line per job (logs, farm job output)")
    p.add_argument("--every", type=float, default=10.0, metavar="S",
                   help="with --follow and no TTY: seconds between lines (default 10)")
    add_redis_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.state.jobs import WarmJob, recent

    if args.every <= 0:
        raise ConfigError("--every", "must be a positive number of seconds")
    settings = site_settings(args)
    r = redis_of(settings, "status")
    if args.follow:
        return follow(r, args.ids, args.oneline or not sys.stdout.isatty(), args.every, settings)
    if args.ids:
        infos = []
        for job_id in args.ids:
            info = WarmJob(r, job_id).info()
            if info is None:
                raise ConfigError(job_id, unknown_job(r))
            infos.append(mark_overdue(r, info, settings))
        if args.json:
            print(json.dumps(infos[0].to_json() if len(infos) == 1 else [i.to_json() for i in infos], indent=1))
        for info in [] if args.json else infos:
            print(oneline(info, *_rate(r, info)) if args.oneline else "\n".join(summary_lines(shown(info))))
        _warn_unserved(settings, infos)
        return 0
    infos = [mark_overdue(r, i, settings) for i in recent(r, args.limit)]
    if args.json:
        print(json.dumps([i.to_json() for i in infos], indent=1))
        return 0
    if not infos:
        print("no warm jobs", file=sys.stderr)
    for i in infos:
        if args.oneline:
            print(oneline(i, *_rate(r, i)))
            continue
        c = i.counters
        print(f"{i.id}  {i.state.value:<9} {i.gateway:<12} {printable(i.name):<30} "
              f"{(c['bytes_done'] + c['bytes_skipped']) / 1e6:,.1f}/{i.bytes_planned / 1e6:,.1f} MB  "
              f"batches {i.batches_done}/{i.batches}  findings {c['files_failed']}"
              + (f"  OVERDUE {len(i.overdue)}" if i.overdue else ""))
    _warn_unserved(settings, infos)
    return 0


def mark_overdue(r: redis.Redis[bytes], info: JobInfo, settings: Settings) -> JobInfo:
    """`info` with the batches sent longer ago than the visibility timeout and not finished."""
    from prewarm.state.dispatch import overdue

    if not info.state.final:
        info.overdue = overdue(r, info.gateway, info.id, settings.visibility_timeout_s, time.time())
    return info


def unknown_job(r: redis.Redis[bytes]) -> str:
    """Why a job id is not there, with the likeliest cause on a Redis that keeps nothing."""
    from prewarm.state.client import persistence_warning

    lost = " or lost when this Redis restarted: it keeps no append-only file" if persistence_warning(r) else ""
    return f"no such warm job (expired, never created{lost})"


def moved(info: JobInfo) -> tuple[int, int]:
    """(bytes, files) dealt with: read, already warm or failed: what progress is measured in."""
    _, done, files = info.progress()
    return done, files


def printable(text: str) -> str:
    """`text` with control characters (a newline, an escape sequence) written as escapes: a job's
    name comes from whoever submitted it, and a newline in it would forge lines of this output."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(info: JobInfo) -> JobInfo:
    """`info` with its name `printable`, for the human report."""
    return info if info.name.isprintable() else replace(info, name=printable(info.name))


def oneline(info: JobInfo, rate_bps: float, in_flight: int) -> str:
    """The log form: everything on one grep-able line, `key=value` where a machine may parse it."""
    done_b, done_f = moved(info)
    left = max(info.bytes_planned - done_b, 0)
    eta = "-" if info.state.final else (f"{left / rate_bps:.0f}s" if rate_bps > 0 else "?")
    pct = 100.0 * done_b / info.bytes_planned if info.bytes_planned else 100.0
    return (f"prewarm {info.id} {printable(info.name)} state={info.state.value} {pct:.1f}% "
            f"bytes={done_b}/{info.bytes_planned} files={done_f}/{info.files_planned} "
            f"rate={rate_bps / 1e6:.1f}MB/s in_flight={in_flight} eta={eta} "
            f"failed_files={info.counters['files_failed']} overdue={len(info.overdue)}")


def _rate(r: redis.Redis[bytes], info: JobInfo) -> tuple[float, int]:
    from prewarm.report.metrics import current
    from prewarm.state.jobs import WarmJob

    if info.state.final:
        return 0.0, 0
    return current(WarmJob(r, info.id).points(), time.time())


def _live(r: redis.Redis[bytes], ids: list[str], settings: Settings) -> list[JobInfo]:
    from prewarm.state.jobs import WarmJob, recent

    if ids:
        infos = [WarmJob(r, i).info(findings=False) for i in ids]
        missing = [i for i, info in zip(ids, infos, strict=True) if info is None]
        if missing:
            raise ConfigError(missing[0], unknown_job(r))
        return [mark_overdue(r, i, settings) for i in infos if i is not None]
    return [mark_overdue(r, i, settings) for i in recent(r, 100) if not i.state.final]


def follow(r: redis.Redis[bytes], ids: list[str], plain: bool, every: float, settings: Settings) -> int:
    """Watch until every followed job has ended; the jobs are fixed at the start."""
    infos = _live(r, ids, settings)
    if not infos:
        print("no queued or running warm jobs", file=sys.stderr)
        return 0
    ids = [i.id for i in infos]
    if plain:
        while True:
            for info in infos:
                print(oneline(info, *_rate(r, info)), flush=True)
            if all(i.state.final for i in infos):
                return 0
            time.sleep(every)
            infos = _live(r, ids, settings)
    return _bars(r, ids, infos, settings)


def _bars(r: redis.Redis[bytes], ids: list[str], infos: list[JobInfo], settings: Settings) -> int:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=False),
               TextColumn("files {task.fields[files]}"), TransferSpeedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[state]}"))
    with Progress(*columns, refresh_per_second=4) as bars:
        tasks = {i.id: bars.add_task(f"{i.id} {printable(i.name)[:28]}", total=max(i.bytes_planned, 1), files="",
                                     state="") for i in infos}
        while True:
            for info in infos:
                done_b, done_f = moved(info)
                bars.update(tasks[info.id], completed=done_b, files=f"{done_f}/{info.files_planned}",
                            state=info.state.value + (f" OVERDUE {len(info.overdue)}" if info.overdue else ""))
            if all(i.state.final for i in infos):
                return 0
            time.sleep(POLL_S)
            infos = _live(r, ids, settings)


def _warn_unserved(settings: Settings, infos: list[JobInfo]) -> None:
    from prewarm.cli.warm import warn_unserved
    from prewarm.state.celery_app import CelerySender

    if any(not i.state.final for i in infos):
        warn_unserved(CelerySender(settings), infos)
