"""The warm report as one self-contained HTML page. Pure: report data in, a string out.

Render nodes and farm dashboards often have no route to the internet, and reports are
mailed and archived, so the page loads nothing: styles are inline and the plots are
inline SVG drawn here. Hand-rolled SVG rather than matplotlib: three simple chart kinds
take about a hundred lines, render crisply at any size, stay selectable text, and keep
a 50 MB plotting stack (and its second-long import) out of workers and the service.
Every string from the job (paths, details, names) is escaped: paths are user data.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from html import escape

from prewarm.plan.evaluate import Evaluation
from prewarm.report.model import CoverageRow, Problem, Readiness, Report, Retry, Summary, Timing

W, H = 720, 180
"""Size of a line chart, in SVG user units (it scales with the page)."""

PAD_L, PAD_B, PAD_T, PAD_R = 56, 28, 12, 12

CHAR_W = 6.6
"""Width of an 11 px sans-serif character, on the wide side: text is fitted to its space with it,
so that no label runs past the chart however the browser's font measures."""

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:980px;
     color:#1d232a;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2e8;padding-bottom:4px}
.sub{color:#5b6670}.verdict{font-size:18px;padding:10px 14px;border-radius:6px;margin:14px 0}
.ok{background:#e3f5e8;border-left:6px solid #2e9d4f}.bad{background:#fdecea;border-left:6px solid #c9372c}
.wait{background:#fff6e0;border-left:6px solid #d99a00}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;text-align:right;border-bottom:1px solid #eef1f4}
th{background:#f5f7f9;font-weight:600}td:first-child,th:first-child{text-align:left}
td.path{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all;text-align:left}
code{background:#f1f3f5;padding:2px 6px;border-radius:4px;font-size:13px}
svg{width:100%;height:auto;display:block}svg text{font:11px system-ui,sans-serif;fill:#5b6670}
.none{color:#8a949c;font-style:italic}
"""


def render(report: Report) -> str:
    job = report.job
    times = [s.t for s in report.series]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>prewarm report {escape(job.id)}: {escape(job.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Warm {escape(job.id)}: {escape(job.name)}</h1>",
        f'<div class="sub">gateway {escape(job.gateway)} &middot; state <b>{escape(job.state)}</b> &middot; '
        f"batches {job.batches_done}/{job.batches} &middot; started {_time(job.started)} &middot; "
        f"finished {_time(job.finished)}"
        + (f" &middot; retry of {escape(job.retry_of)}" if job.retry_of else "") + "</div>",
        _verdict(report.readiness),
        "<h2>Summary</h2>", _summary(report.summary, report.timing),
        "<h2>Throughput</h2>",
        _line_chart(times, [s.bytes_per_s for s in report.series], 1e-6, "MB/s", "#2f6fbf", "throughput",
                    cap=report.timing.throttle_bps),
        "<h2>Reads in flight</h2>",
        _line_chart(times, [s.in_flight for s in report.series], 1.0, "reads", "#8a4fbf", "in-flight"),
        "<h2>Coverage per input</h2>", _coverage(report.coverage),
        "<h2>Missing and failed</h2>", _problems(report.problems, report.retry),
    ]
    if report.evaluation:
        parts += ["<h2>Prediction quality</h2>", _evaluation(report.evaluation)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _time(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _secs(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:,.1f} s" if abs(s) < 120 else f"{s / 60:,.1f} min"


def _verdict(r: Readiness) -> str:
    if r.first_frame is None:
        return '<div class="verdict wait">No plan with frames: readiness unknown.</div>'
    frame = r.first_frame
    start = "" if r.start is None else f"; frames start {_time(r.start)}"
    if r.ready:
        margin = r.margin_s
        when = "" if margin is None else (f", {_secs(margin)} before they start" if margin >= 0
                                          else f", {_secs(-margin)} after they started")
        cls = "bad" if margin is not None and margin < 0 else "ok"
        return (f'<div class="verdict {cls}">Ready for frame {frame}: warm since {_time(r.ready_at)}'
                f"{escape(when)}.</div>")
    if r.missing_inputs:
        paths = ", ".join(escape(p) for p in r.missing_inputs[:5])
        more = len(r.missing_inputs) - 5
        return (f'<div class="verdict bad">Not ready for frame {frame}: it reads inputs that do not exist '
                f'({paths}{f" and {more} more" if more > 0 else ""}){start}. No warm can help: fix them on '
                f'the studio side.</div>')
    if r.blocked_by:
        paths = ", ".join(escape(p) for p in r.blocked_by[:5])
        return (f'<div class="verdict bad">Not ready for frame {frame}: it needs files that failed ({paths})'
                f'{start}.</div>')
    cls = "bad" if r.late else "wait"
    return f'<div class="verdict {cls}">Not ready for frame {frame} yet{start}.</div>'


def _summary(s: Summary, t: Timing) -> str:
    rows = [("planned", s.planned), ("warmed", s.warmed), ("already warm (skipped)", s.skipped),
            ("failed", s.failed), ("missing (below)", s.missing)]
    body = "".join(f"<tr><td>{name}</td><td>{_mb(v.bytes)}</td><td>{v.files:,}</td></tr>" for name, v in rows)
    rate = "-" if t.rate_bps is None else f"{t.rate_bps / 1e6:,.1f} MB/s"
    fps = "-" if t.files_per_s is None else f"{t.files_per_s:,.1f} files/s"
    ideal = ("no throttle set: no ideal" if t.ideal_s is None or not t.throttle_bps
             else f"{_secs(t.ideal_s)} at {t.throttle_bps / 1e6:,.1f} MB/s")
    eff = "" if t.efficiency is None else f" ({1 / t.efficiency:.2f}x the ideal)"
    return (f"<table><tr><th></th><th>bytes</th><th>files</th></tr>{body}</table>"
            f"<p>Took {_secs(t.elapsed_s)}{eff}; ideal (planned bytes / throttle) {ideal}. "
            f"Read at {rate}, {fps}.</p>")


def _ticks(top: float, n: int = 4) -> list[float]:
    """Round axis values (1, 2, 2.5, 5 x 10^k) from 0 up to `top`."""
    if top <= 0:
        return [0.0]
    raw = top / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(top / step) + 1)]


def _line_chart(xs: Sequence[float], values: Sequence[float], scale: float, unit: str, color: str,
                label: str, cap: float | None = None) -> str:
    """`values` at times `xs`, a line; `cap` (in the values' unit) is drawn as a dashed line: the throttle's rate."""
    if not xs:
        return '<p class="none">No samples recorded for this warm.</p>'
    ys = [v * scale for v in values]
    x0, x1 = xs[0], max(xs[-1], xs[0] + 1)
    top = max(max(ys), (cap or 0) * scale, 1e-9) * 1.1
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return PAD_T + ph - y / top * ph

    grid = []
    for v in _ticks(top):
        y = sy(v)
        grid.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9ed"/>'
                    f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
    for v in _ticks(x1 - x0):
        x = sx(x0 + v)
        grid.append(f'<text x="{x:.1f}" y="{H - 8}" text-anchor="middle">{v:g}s</text>')
    if cap:
        y = sy(cap * scale)
        grid.append(f'<line class="cap" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c9372c" '
                    f'stroke-dasharray="5 4"/><text x="{W - PAD_R}" y="{y - 4:.1f}" text-anchor="end">'
                    f'throttle {cap * scale:,.1f} {unit}</text>')
    pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=True))
    area = f"{sx(xs[0]):.1f},{sy(0):.1f} {pts} {sx(xs[-1]):.1f},{sy(0):.1f}"
    return (f'<svg class="chart" data-chart="{label}" viewBox="0 0 {W} {H}" role="img" '
            f'aria-label="{label} over time">{"".join(grid)}'
            f'<polygon points="{area}" fill="{color}" fill-opacity="0.15"/>'
            f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.8"/>'
            f'<text x="{PAD_L}" y="{PAD_T - 2}" >{unit}</text></svg>')


def _fit(text: str, width: float) -> str:
    """`text` cut to `width` at CHAR_W a character, keeping its end (a path's file name)."""
    chars = max(int(width // CHAR_W), 2)
    return text if len(text) <= chars else "\u2026" + text[-(chars - 1):]


def _coverage(rows: Sequence[CoverageRow]) -> str:
    """A row per input: its name on a line of its own, then the bar and, in a column kept for it
    at the right, the share warmed: nothing runs past the chart, whatever the names."""
    if not rows:
        return '<p class="none">No planned reads.</p>'
    label_h, bar_h, gap = 14, 14, 10
    height = len(rows) * (label_h + bar_h + gap) + 8
    top = max(r.planned for r in rows) or 1
    details = [_coverage_detail(r) for r in rows]
    detail_w = min(max(len(d) for d in details) * CHAR_W + 8, W / 2)
    width = W - detail_w
    out = [(f'<svg class="chart" data-chart="coverage" viewBox="0 0 {W} {height}" role="img" '
           f'aria-label="coverage per input, largest first">')]
    for i, (r, detail) in enumerate(zip(rows, details, strict=True)):
        y = 4 + i * (label_h + bar_h + gap)
        planned_w = max(r.planned / top * width, 1)
        warmed_w = r.warmed / top * width
        share = r.warmed / r.planned if r.planned else 1.0
        color = "#2e9d4f" if share >= 0.999 else "#d99a00" if share > 0 else "#c9372c"
        out.append(f'<text x="0" y="{y + 11}"><title>{escape(r.path)}</title>{escape(_fit(r.path, W))}</text>'
                   f'<rect x="0" y="{y + label_h}" width="{planned_w:.1f}" height="{bar_h}" fill="#e6e9ed"/>'
                   f'<rect x="0" y="{y + label_h}" width="{warmed_w:.1f}" height="{bar_h}" fill="{color}"/>'
                   f'<text x="{W}" y="{y + label_h + 11}" text-anchor="end">'
                   f'{escape(_fit(detail, detail_w - 8))}</text>')
    out.append("</svg>")
    return "".join(out)


def _coverage_detail(r: CoverageRow) -> str:
    share = r.warmed / r.planned if r.planned else 1.0
    files = f" ({r.files} files)" if r.files > 1 else ""
    of_file = f"; {r.planned_share:.0%} of the file{'s' if r.files > 1 else ''} ({_mb(r.file_bytes)})"
    return f"{share:.0%} of {_mb(r.planned)}{files}{of_file}"


def _problems(problems: Sequence[Problem], retry: Retry) -> str:
    if not problems and not retry.command:
        return '<p class="none">Nothing missing, nothing failed.</p>'
    out = []
    if retry.command:
        out.append(f"<p>{retry.ranges:,} failed range(s) may succeed later. Retry just those: "
                   f"<code>{escape(retry.command)}</code></p>")
    if problems:
        out.append('<table class="problems"><tr><th>file</th><th>kind</th><th>detail</th></tr>')
        out.extend(f'<tr><td class="path">{escape(p.path)}</td><td>{escape(p.kind)}</td>'
                   f'<td style="text-align:left">{escape(p.detail)}</td></tr>' for p in problems)
        out.append("</table><p class=\"sub\">Missing, denied, refused and changed files are final for this warm: "
                   "fix them on the studio side, then warm the job again (what is already warm is skipped). "
                   "The retry re-reads only ranges that failed with an I/O error.</p>")
    return "".join(out)


def _evaluation(e: Evaluation) -> str:
    o = e.overall
    out = [(f"<p>Against the reads of {e.frames_traced} rendered frame(s), on "
           f"{e.block // 1024} KiB blocks: recall <b>{o.recall:.1%}</b>, over-fetch "
           f"<b>{o.overfetch:.2f}</b>x ({_mb(o.needed_bytes)} needed, {_mb(o.planned_bytes)} planned).</p>")]
    if e.per_input:
        out.append("<table><tr><th>input</th><th>recall</th><th>over-fetch</th><th>needed</th><th>planned</th></tr>")
        out.extend(f'<tr><td class="path">{escape(r.input)}</td><td>{r.recall:.1%}</td>'
                   f'<td>{"-" if r.overfetch is None else f"{r.overfetch:.2f}"}</td><td>{_mb(r.needed_bytes)}</td>'
                   f'<td>{_mb(r.planned_bytes)}</td></tr>' for r in e.per_input[:40])
        out.append("</table>")
    if e.missed_by_reason:
        out.append("<p>Missed: " + "; ".join(f"{_mb(n)} {escape(why)}" for why, n in e.missed_by_reason.items())
                   + ". These evaluations are kept with the job and the shot so later plans can learn from them.</p>")
    if e.missed:
        out.append("<h3>Missed reads, and why</h3><table><tr><th>file</th><th>why</th><th>bytes</th></tr>")
        out.extend(f'<tr><td class="path">{escape(m.path)}</td><td style="text-align:left">{escape(m.why)}</td>'
                   f'<td>{_mb(m.bytes)}</td></tr>' for m in e.missed[:40])
        out.append("</table>")
    return "".join(out)
