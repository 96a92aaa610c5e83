"""`prewarm report ID [--json] [--html FILE]`: the warm report of one job, from Redis.

Without flags, a short text form on stdout; `--json` prints the report data (the same
the service serves at /jobs/ID/report); `--html FILE` writes the self-contained page.
"""

from __future__ import annotations

import argparse
import json

from prewarm.cli.options import add_redis_flag, redis_of, site_settings
from prewarm.report.model import Report
from prewarm.site import atomic


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="the report of a warm job: summary, plots, coverage, failures")
    p.add_argument("id", help="warm job id")
    p.add_argument("--json", action="store_true", help="print the report data as JSON")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML page (no network needed to view)")
    add_redis_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.report import html as report_html
    from prewarm.report import load as report_redis

    settings = site_settings(args)
    data = report_redis.load(redis_of(settings, "report"), args.id, settings.throttle_bps)
    if args.html:
        atomic.write_text(args.html, report_html.render(data), "--html")
    if args.json:
        print(json.dumps(data.to_json(), indent=1))
    elif not args.html:
        print("\n".join(text_lines(data)))
    return 0


def text_lines(report: Report) -> list[str]:
    j, t, r = report.job, report.timing, report.readiness
    lines = [f"warm {j.id} ({j.name}) on {j.gateway}: {j.state}"]
    for name, tally in report.summary.lines():
        lines.append(f"  {name:<8} {tally.bytes / 1e6:>12,.1f} MB {tally.files:>8,} files")
    if t.elapsed_s is not None:
        ideal = "" if t.ideal_s is None else f" (ideal {t.ideal_s:.1f}s at the throttle)"
        lines.append(f"  took {t.elapsed_s:.1f}s{ideal}")
    if r.first_frame is not None:
        when = "" if r.margin_s is None else f", {r.margin_s:+.0f}s before the frames start"
        lines.append(f"  first frame {r.first_frame}: {'ready' if r.ready else 'not ready'}{when}")
    for p in report.problems[:20]:
        lines.append(f"  {p.kind}: {p.path}: {p.detail}")
    if report.retry.command:
        lines.append(f"  retry the {report.retry.ranges} failed range(s): {report.retry.command}")
    if report.evaluation:
        o = report.evaluation.overall
        lines.append(f"  prediction: recall {o.recall:.1%}, over-fetch {o.overfetch:.2f}x")
    return lines
