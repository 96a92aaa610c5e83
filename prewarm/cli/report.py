"""`prewarm report ID [--json] [--html FILE]`: the warm report of one job, from Redis.

Without flags, a short text form on stdout; `--json` prints the report data (the same
the service serves at /jobs/ID/report); `--html FILE` writes the self-contained page.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from prewarm.cli.options import add_redis_flag, redis_of, site_settings
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
        print(json.dumps(data, indent=1))
    elif not args.html:
        print("\n".join(text_lines(data)))
    return 0


def text_lines(data: dict[str, Any]) -> list[str]:
    j, s, t, r = data["job"], data["summary"], data["timing"], data["readiness"]
    lines = [f"warm {j['id']} ({j['name']}) on {j['gateway']}: {j['state']}"]
    for name in ("planned", "warmed", "skipped", "missing", "failed"):
        lines.append(f"  {name:<8} {s[name]['bytes'] / 1e6:>12,.1f} MB {s[name]['files']:>8,} files")
    if t["elapsed_s"] is not None:
        ideal = "" if t["ideal_s"] is None else f" (ideal {t['ideal_s']:.1f}s at the throttle)"
        lines.append(f"  took {t['elapsed_s']:.1f}s{ideal}")
    if r["first_frame"] is not None:
        when = "" if r["margin_s"] is None else f", {r['margin_s']:+.0f}s before the frames start"
        lines.append(f"  first frame {r['first_frame']}: {'ready' if r['ready'] else 'not ready'}{when}")
    for p in data["problems"][:20]:
        lines.append(f"  {p['kind']}: {p['path']}: {p['detail']}")
    if data["retry"]["command"]:
        lines.append(f"  retry the {data['retry']['ranges']} failed range(s): {data['retry']['command']}")
    if data["evaluation"]:
        o = data["evaluation"]["overall"]
        lines.append(f"  prediction: recall {o['recall']:.1%}, over-fetch {o['overfetch']:.2f}x")
    return lines
