"""`prewarm plan JOB [--traces PATH]... [-o PLAN.json]` (contract 3).

JOB is anything `prewarm.flow.jobs` reads: a manifest (YAML or JSON), an OpenJD job
bundle folder or bundle JSON, a Deadline Cloud hook payload; bundles take `-p` values.
"""

from __future__ import annotations

import argparse
import os
import sys

from prewarm.cli.options import add_local_job_flags, add_path_map_flags, load_job, site_settings
from prewarm.errors import ConfigError
from prewarm.flow import jobs
from prewarm.flow.planning import PlanOptions
from prewarm.plan.framespec import parse_frames
from prewarm.plan.knobs import KNOBS, PredictOptions, check_knob
from prewarm.plan.limits import granule_problem
from prewarm.plan.model import Plan
from prewarm.plan.stats import StructureStats, TraceStats
from prewarm.plan.units import parse_size, size_text
from prewarm.site import atomic
from prewarm.site.settings import Settings

SITE, PREDICT = Settings(), PredictOptions()
"""Where the defaults shown in help come from: the one default of each setting and knob."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="predict the byte ranges a job's frames will read, in warm order",
                       description="Plan a render job: which byte ranges of which files its frames will read, "
                                   "in the order they are needed. Writes the plan as JSON.")
    p.add_argument("manifest", metavar="JOB",
                   help="the job: a manifest (YAML or JSON), a job bundle folder or bundle JSON, a hook payload")
    p.add_argument("--traces", action="append", default=[], metavar="PATH",
                   help="trace file or folder of earlier frames (strace or JSON Lines, plain or gzip); repeatable")
    p.add_argument("-o", "--output", metavar="PLAN.json", help="write the plan here (default: stdout)")
    p.add_argument("--summary", action="store_true", help="print a summary table on stderr")
    p.add_argument("--frame", type=int, help="frame of trace records that name none")
    p.add_argument("--frames", metavar="SPEC", help="plan these frames instead of the manifest's")
    p.add_argument("--granule", metavar="SIZE",
                   help=f"align ranges to this size (default: the granule setting, "
                        f"{size_text(SITE.granule)}: the pages a gateway fetches)")
    p.add_argument("--max-bytes", metavar="SIZE", help="budget: keep the ranges worth the most frames per byte")
    p.add_argument("--max-gap", metavar="SIZE",
                   help=f"join ranges of a file this close (default: the max_gap setting, {size_text(SITE.max_gap)})")
    p.add_argument("--spread", metavar="SIZE",
                   help=f"widen spans borrowed from neighbouring frames: coverage for bytes "
                        f"(default {size_text(PREDICT.spread)})")
    p.add_argument("--neighbours", type=int, metavar="N",
                   help=f"training frames borrowed from on each side (default {PREDICT.neighbours})")
    p.add_argument("--unseen-cap", metavar="SIZE",
                   help=f"files no trace read are warmed whole up to this size, else head and tail "
                        f"(default {size_text(PREDICT.unseen_cap)})")
    p.add_argument("--tile-grow", type=int, metavar="N",
                   help=f"tiles by which a texture footprint borrowed from traced frames grows "
                        f"(default {PREDICT.texture.grow})")
    p.add_argument("--finer", type=int, metavar="N",
                   help=f"MIP levels of children added beyond the traced frames: a push-in hedge "
                        f"(default {PREDICT.texture.finer})")
    p.add_argument("--unseen-coarse", type=int, metavar="PIXELS",
                   help=f"never-traced textures: levels up to this size go early, finer ones last "
                        f"(default {PREDICT.unseen_coarse})")
    p.add_argument("--no-structure", dest="structure", action="store_false", default=None,
                   help="do not read files' structure (texture tiles, EXR tables): the byte model only")
    add_local_job_flags(p)
    add_path_map_flags(p)
    p.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> PlanOptions:
    def size(name: str) -> int | None:
        value = getattr(args, name)
        return None if value is None else parse_size(value, "command line", "--" + name.replace("_", "-"))

    knobs: dict[str, int | bool] = {}
    for name in KNOBS:
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if KNOBS[name][0] == "size":
            value = 0 if str(value).strip() == "0" else size(name)
        try:
            knobs[name] = check_knob(name, value)
        except ValueError as exc:
            raise ConfigError("command line", f"{flag}: {str(exc).split(': ', 1)[-1]}") from exc
    frames = parse_frames(args.frames, "command line", "--frames") if args.frames else None
    granule = size("granule")
    problem = None if granule is None else granule_problem(granule)
    if problem:
        raise ConfigError("--granule", problem)
    return PlanOptions(granule=granule, max_bytes=size("max_bytes"), max_gap=size("max_gap"),
                       frame=args.frame, frames=frames, knobs=knobs)


def run(args: argparse.Namespace) -> int:
    settings = site_settings(args)
    job = load_job(args, args.manifest, settings)
    if job.plan is not None:
        raise ConfigError(args.manifest, "already a plan: `prewarm plan` takes a job (manifest, bundle, payload)")
    plan = jobs.plan(job, args.traces or None, settings, options_from(args), cores=min(os.cpu_count() or 1, 8))
    if args.output is None:
        sys.stdout.writelines(plan.json_text())
    else:
        atomic.write_text(args.output, plan.json_text(), "-o")
    if args.summary:
        print(summary_table(plan), file=sys.stderr)
    return 0


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _structure_row(s: StructureStats) -> str:
    """Files predicted by their tiles, and those a reader could not read (left to the byte model)."""
    read = ", ".join(f"{n} {k}" for k, n in sorted(s.structured_files.items())) or "none"
    bad = s.structure_unreadable
    return f"{read} read by structure; {bad} unreadable (byte model)" + (
        f", e.g. {next(iter(s.structure_unreadable_files))}" if bad else "")


def summary_table(plan: Plan) -> str:
    t = plan.totals()
    s = plan.stats.traces if plan.stats is not None else TraceStats()
    structure = plan.stats.structure if plan.stats is not None else None
    rows = [
        ("job", plan.job),
        ("frames", f"{t.frames} (first {plan.frames[0] if plan.frames else '-'})"),
        ("planned", f"{human(t.bytes)} in {t.ranges} ranges of {t.files} files"
                    + (f" ({t.bytes / t.whole_file_bytes:.0%} of those files)" if t.whole_file_bytes else "")),
        ("by reason", ", ".join(f"{k} {human(v)}" for k, v in t.bytes_by_reason.items()) or "-"),
        ("metadata", f"{t.metadata_ops} operations (stat, readdir)"),
        ("traces", f"{s.trace_records} records from {s.trace_frames} frames"
                   f" ({s.trace_lines_skipped} lines skipped, {s.trace_calls_failed} failed calls)"),
        ("structure", _structure_row(structure or StructureStats())),
        ("missing", str(t.missing)),
        ("dropped", f"{human(t.dropped_bytes)} over budget" if t.dropped_ranges else "nothing"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    for m in plan.missing[:10]:
        lines.append(f"{'':<{width}}  missing: {m.path} ({m.reason}{f', line {m.line}' if m.line else ''})")
    if len(plan.missing) > 10:
        lines.append(f"{'':<{width}}  ... and {len(plan.missing) - 10} more in the plan's 'missing'")
    return "\n".join(lines)
