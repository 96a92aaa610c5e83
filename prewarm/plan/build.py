"""From the facts gathered about a job to its `Plan`: prediction, order, metadata, findings. Pure.

The facts come in as values (the manifest, the inputs resolved against the site's
file system, the aggregated traces) and one function, `lookup`, that says what a
studio path named only by a trace is (the site's stat, through its guard). Where
each setting's value comes from (a flag, the manifest, the site) is decided by the
caller; this module only applies them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from prewarm.errors import ManifestError
from prewarm.plan.access import Op
from prewarm.plan.aggregate import TraceSet
from prewarm.plan.framespec import format_frames
from prewarm.plan.inputs import Missing, ResolvedInputs
from prewarm.plan.knobs import PredictOptions, with_knobs
from prewarm.plan.limits import FOLD_MISSING, MAX_FINDINGS
from prewarm.plan.manifest import FrameOrder, Manifest
from prewarm.plan.model import FIELDS_LIMITS, Plan
from prewarm.plan.ordering import FanOut, order_ranges, serially
from prewarm.plan.predict import predict
from prewarm.plan.prediction import Candidate, Structures
from prewarm.plan.records import FileInfo, Finding, MetaOp
from prewarm.plan.stats import PlanStats, TraceStats

Lookup = Callable[[str], FileInfo | None]


@dataclass(frozen=True)
class PlanOptions:
    """What the person planning asked for on top of the manifest; None: the manifest's, else the site's."""

    granule: int | None = None
    max_bytes: int | None = None
    max_gap: int | None = None
    frame: int | None = None
    """Frame of trace records that carry none and whose file names hold no number."""
    frames: tuple[int, ...] | None = None
    """Plan these frames instead of the manifest's (re-plan the rest of a running job)."""
    predict: PredictOptions = field(default_factory=PredictOptions)
    knobs: Mapping[str, int | bool] = field(default_factory=dict)
    """Prediction knobs from the command line: over the manifest's `predict:`, over `predict`."""


def prediction_options(manifest: Manifest, options: PlanOptions) -> PredictOptions:
    """The prediction knobs in force: the command line's, else the manifest's, else `options.predict`."""
    return with_knobs(with_knobs(options.predict, manifest.predict), options.knobs)


@dataclass(frozen=True)
class Effective:
    """The settings a plan is made with, each already chosen from its sources."""

    granule: int
    max_gap: int
    max_bytes: int | None
    roots: tuple[str, ...]
    """Traced files below these may join the plan though no input names them."""


def job_frames(manifest: Manifest, options: PlanOptions) -> list[int]:
    """The frames to plan, in the order the farm renders them."""
    frames = list(options.frames if options.frames is not None else manifest.frames)
    return sorted(frames) if manifest.frame_order is FrameOrder.SORTED else frames


def job_folders(manifest: Manifest, files: Sequence[str], roots: Sequence[str]) -> Callable[[str], bool]:
    """Traced files may join the plan only below the job's own folders or configured roots.

    Raw strace logs hold every library and font a renderer opens; those are the
    render node's business, not the gateway's.
    """
    folders = {posixpath.dirname(p) for p in files}
    folders.update(spec.path.rstrip("/") for spec in manifest.inputs if spec.is_dir)
    folders.update(roots)
    memo: dict[str, bool] = {}

    def ok(path: str) -> bool:
        d = posixpath.dirname(path)
        chain = []
        verdict = False
        while True:
            if d in memo:
                verdict = memo[d]
                break
            if d in folders:
                verdict = True
                break
            chain.append(d)
            parent = posixpath.dirname(d)
            if parent == d:
                break
            d = parent
        for c in chain:
            memo[c] = verdict
        return verdict

    return ok


def fold_missing(manifest: Manifest, resolved: Sequence[Missing], traced: Sequence[tuple[str, str]]
                 ) -> list[Finding]:
    """The plan's findings: each input's missing files, folded into one finding with a count and
    the frames when there are more than `FOLD_MISSING` for one reason (a per-frame pattern over a
    million frames is one line, not a million); files traces read that are gone, folded the same
    way by reason; at most `MAX_FINDINGS` in all."""
    groups: dict[tuple[int, str], list[Missing]] = {}
    for m in resolved:
        groups.setdefault((m.input_index, m.reason), []).append(m)
    out: list[Finding] = []
    for (index, why), items in groups.items():
        why += " (optional input)" if items[0].optional else ""
        if len(items) <= FOLD_MISSING:
            out.extend(Finding(m.path, why, m.input_line, optional=m.optional) for m in items)
            continue
        frames = [m.frame for m in items if m.frame is not None]
        out.append(Finding(manifest.inputs[index].path, why, items[0].input_line, count=len(items),
                           frames=format_frames(frames) if frames else None, optional=items[0].optional))
    by_reason: dict[str, list[str]] = {}
    for path, why in traced:
        by_reason.setdefault(why.partition(":")[0], []).append(path)
    for (path, why), head in zip(traced, (why.partition(":")[0] for _, why in traced), strict=True):
        paths = by_reason.get(head)
        if paths is None:
            continue
        if len(paths) <= FOLD_MISSING:
            out.append(Finding(path, why))
            continue
        del by_reason[head]
        out.append(Finding(path, f"{head}: {len(paths):,} files earlier renders read are gone, this one first",
                           count=len(paths)))
    if len(out) > MAX_FINDINGS:
        rest = sum(f.count for f in out[MAX_FINDINGS:])
        out = out[:MAX_FINDINGS] + [Finding(out[MAX_FINDINGS].path, f"and {rest:,} more not listed", count=rest)]
    return out


def build_plan(manifest: Manifest, resolved: ResolvedInputs, ts: TraceSet, lookup: Lookup, options: PlanOptions,
               effective: Effective, imported: TraceStats, created: float | None,
               structure: Structures = lambda p: None, fan_out: FanOut = serially, parts: int = 1) -> Plan:
    """The plan of `manifest`; `imported` holds the trace import's counters (lines skipped, calls
    failed) shown in the summary, to which the records and frames of `ts` are added here.
    `structure` gives a file's levels and tiles where a reader could read them (`prewarm.formats`).
    With `parts` > 1 the traced files are predicted and ordered in that many parts, which
    `fan_out` may run in other processes (`order_ranges`): the same plan either way."""
    frames = job_frames(manifest, options)
    known: dict[str, FileInfo | None] = {f.path: f.info for f in resolved.files}

    def info(path: str) -> FileInfo | None:
        if path not in known:
            known[path] = lookup(path)
        return known[path]

    wholes = {i for i, spec in enumerate(manifest.inputs) if spec.whole}
    candidates = [Candidate(f.path, f.frame, f.input_index in wholes, frames=manifest.inputs[f.input_index].frames,
                            tile_set=f.input_index if f.tile else None)
                  for f in resolved.files]
    traced_ok = job_folders(manifest, [f.path for f in resolved.files], effective.roots)

    result = predict(frames, candidates, ts, info, traced_ok, prediction_options(manifest, options), structure,
                     defer=parts > 1)
    files: dict[str, FileInfo] = {}
    for p in {pr.path for pr in result.predictions} | {p for p, _ in result.deferred}:
        found = info(p)
        assert found is not None, p  # predict only predicts files lookup found
        files[p] = found
    ordered = order_ranges(result.predictions, frames, {p: f.size for p, f in files.items()}, effective.granule,
                           effective.max_gap, effective.max_bytes, deferred=result.deferred, fan_out=fan_out,
                           parts=parts)

    planned = ordered.ranges.paths()
    metadata = [MetaOp(Op.STAT, p) for p in planned]
    listed = dict.fromkeys(resolved.listed_dirs)
    listed.update(dict.fromkeys(d for d in sorted(ts.listed) if traced_ok(d + "/x")))
    metadata.extend(MetaOp(Op.READDIR, d) for d in listed)

    missing = fold_missing(manifest, resolved.missing, result.missing)
    # a changed file is there: shown, and the warm is not less for it
    missing += [Finding(p, why, optional=True) for p, why in result.changed[:MAX_FINDINGS]]
    stats = PlanStats(replace(imported, trace_records=ts.records, trace_frames=len(ts.frames)),
                      effective.granule, result.stats)
    planned_files = {p: files[p] for p in planned}
    input_of: dict[str, int] = {}
    for f in resolved.files:    # a file two inputs name is its first's, as planning took it
        if f.path in planned_files:
            input_of.setdefault(f.path, f.input_index)
    plan = Plan(job=manifest.job, frames=tuple(frames), ranges=ordered.ranges, metadata=tuple(metadata),
                files=planned_files, missing=tuple(missing), dropped=ordered.dropped,
                granule=effective.granule, created=created, start=manifest.start, priority=manifest.priority,
                gateways=manifest.gateways, stats=stats, inputs=tuple(spec.path for spec in manifest.inputs),
                input_of=input_of)
    for key, most in FIELDS_LIMITS.items():  # a plan the warm side would refuse is refused here, not there
        if len(getattr(plan, key)) > most:
            raise ManifestError(manifest.source, f"{key}: the plan would hold {len(getattr(plan, key)):,}, more than "
                                f"the {most:,} a plan may (prewarm.plan.limits): plan the job in parts (fewer "
                                f"frames), or coarser (--granule, --max-gap)")
    problem = plan.limit_problem()  # the checks a loaded plan passes: the planner never writes one they refuse
    if problem:
        raise ManifestError(manifest.source, f"the plan would be refused at {problem[0]}: {problem[1]}")
    return plan
