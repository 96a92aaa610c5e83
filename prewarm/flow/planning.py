"""Plan a job: manifest, file system and traces in, a `Plan` out. The IO around the pure core.

This module only gathers facts (what the manifest names, what exists on disk and
how big it is, what earlier frames read) and hands them to `predict` and
`order_ranges`. Files are looked at through their local paths (`PathMap.to_local`),
but every path in the plan is a studio path.
"""

from __future__ import annotations

import multiprocessing
import os
import posixpath
import stat as stat_mod
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields, replace

from prewarm.plan.access import Op
from prewarm.plan.aggregate import TraceSet, aggregate_runs, merge
from prewarm.plan.inputs import Resolved, resolve_inputs
from prewarm.plan.manifest import FrameOrder, Manifest, load_manifest
from prewarm.plan.model import FileInfo, Finding, MetaOp, Plan
from prewarm.plan.ordering import order_ranges
from prewarm.plan.pathmap import PathMap
from prewarm.plan.predict import Candidate, PredictOptions, predict
from prewarm.site.settings import Settings
from prewarm.traces.counters import ImportStats
from prewarm.traces.files import read_batches, trace_files
from prewarm.traces.store import load_profiles


@dataclass(frozen=True)
class PlanOptions:
    granule: int | None = None
    """Overrides the manifest's and the settings' granule."""
    max_bytes: int | None = None
    """Overrides the manifest's budget."""
    max_gap: int | None = None
    frame: int | None = None
    """Frame of trace records that carry none and whose file names hold no number."""
    frames: tuple[int, ...] | None = None
    """Plan these frames instead of the manifest's (re-plan the rest of a running job)."""
    path_map: PathMap = field(default_factory=PathMap)
    """From the command line: takes precedence over the manifest and the settings."""
    predict: PredictOptions = field(default_factory=PredictOptions)


def plan_job(manifest_path: str, traces: Sequence[str], settings: Settings,
             options: PlanOptions = PlanOptions()) -> Plan:
    """Plan from a manifest file. Without `traces`, the trace store's earlier jobs of the
    shot are used (`find_traces`): a submitter need not know where traces live."""
    manifest = load_manifest(manifest_path)
    if not traces:
        return plan_stored(manifest, settings, options)
    return plan_manifest(manifest, traces, settings, options)


def plan_stored(manifest: Manifest, settings: Settings, options: PlanOptions = PlanOptions()) -> Plan:
    """Plan from the profiles the trace store keeps of the shot's earlier jobs (issue 14): the
    same plan as from their raw traces, without reading a single stored call again."""
    path_map = settings.path_map.merged(manifest.path_map).merged(options.path_map)
    stored = load_profiles(settings, manifest, path_map, options.frame)
    plan = build_plan(manifest, resolve_inputs(manifest, path_map), stored.traces, path_map, settings, options,
                      ImportStats())
    if stored.folders:
        return replace(plan, stats={**plan.stats, "traces_from_store": stored.folders,
                                    **({"traces_skipped": stored.skipped} if stored.skipped else {})})
    return plan


def plan_manifest(manifest: Manifest, traces: Sequence[str], settings: Settings,
                  options: PlanOptions = PlanOptions()) -> Plan:
    path_map = settings.path_map.merged(manifest.path_map).merged(options.path_map)
    resolved = resolve_inputs(manifest, path_map)
    ts, import_stats = load_traces(traces, path_map, options.frame)
    return build_plan(manifest, resolved, ts, path_map, settings, options, import_stats)


PARALLEL_BYTES = 32 << 20
"""Below this much trace data, starting worker processes costs more than it saves."""


def _aggregate_files(files: list[str], path_map: PathMap, frame: int | None) -> tuple[TraceSet, ImportStats]:
    stats = ImportStats()
    return aggregate_runs(read_batches(files, path_map, frame=frame, stats=stats)), stats


def load_traces(paths: Sequence[str], path_map: PathMap, frame: int | None = None,
                workers: int | None = None, min_parallel_bytes: int = PARALLEL_BYTES) -> tuple[TraceSet, ImportStats]:
    """Import and aggregate trace files, over all cores when there is enough to read.

    Trace files are per frame, so aggregates of disjoint groups of files merge exactly.
    """
    files = [str(f) for p in paths for f in trace_files(p)]
    if not files:
        return TraceSet(), ImportStats()
    workers = workers or min(len(files), os.cpu_count() or 1, 8)
    size = sum(os.path.getsize(f) for f in files)
    if workers < 2 or size < min_parallel_bytes:
        return _aggregate_files(files, path_map, frame)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        parts = list(pool.map(_aggregate_files, [files[i::workers] for i in range(workers)],
                              [path_map] * workers, [frame] * workers))
    stats = ImportStats()
    for _, s in parts:
        for f in fields(ImportStats):
            if isinstance(getattr(s, f.name), int):
                setattr(stats, f.name, getattr(stats, f.name) + getattr(s, f.name))
        stats.first_skipped = stats.first_skipped or s.first_skipped
    return merge(ts for ts, _ in parts), stats


def _frames(manifest: Manifest, options: PlanOptions) -> list[int]:
    frames = list(options.frames if options.frames is not None else manifest.frames)
    return sorted(frames) if manifest.frame_order is FrameOrder.SORTED else frames


def file_lookup(path_map: PathMap, known: dict[str, FileInfo]) -> Callable[[str], FileInfo | None]:
    """Stat a studio path through its local path, once; regular files only."""
    cache: dict[str, FileInfo | None] = dict(known)

    def lookup(path: str) -> FileInfo | None:
        if path in cache:
            return cache[path]
        try:
            st = os.stat(path_map.to_local(path))
            info = FileInfo(path, st.st_size, st.st_mtime) if stat_mod.S_ISREG(st.st_mode) else None
        except OSError:
            info = None
        cache[path] = info
        return info

    return lookup


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


def build_plan(manifest: Manifest, resolved: Resolved, ts: TraceSet, path_map: PathMap, settings: Settings,
               options: PlanOptions, import_stats: ImportStats) -> Plan:
    frames = _frames(manifest, options)
    granule = options.granule or manifest.granule or settings.granule
    max_gap = settings.max_gap if options.max_gap is None else options.max_gap
    max_bytes = options.max_bytes if options.max_bytes is not None else manifest.max_bytes
    known = {f.path: f.info for f in resolved.files}
    lookup = file_lookup(path_map, known)
    wholes = {i for i, spec in enumerate(manifest.inputs) if spec.whole}
    candidates = [Candidate(f.path, f.frame, f.input_index in wholes) for f in resolved.files]
    traced_ok = job_folders(manifest, list(known), settings.roots)

    result = predict(frames, candidates, ts, lookup, traced_ok, options.predict)
    sizes = {}
    for p in {pr.path for pr in result.predictions}:
        info = lookup(p)
        assert info is not None, p  # predict only predicts files lookup found
        sizes[p] = info.size
    ordered = order_ranges(result.predictions, frames, sizes, granule, max_gap, max_bytes)

    files: dict[str, FileInfo] = {}
    metadata: list[MetaOp] = []
    for r in ordered.ranges:
        if r.path not in files:
            info = lookup(r.path)
            assert info is not None
            files[r.path] = info
            metadata.append(MetaOp(Op.STAT, r.path))
    listed = dict.fromkeys(resolved.listed_dirs)
    listed.update(dict.fromkeys(d for d in sorted(ts.listed) if traced_ok(d + "/x")))
    metadata.extend(MetaOp(Op.READDIR, d) for d in listed)

    missing = [Finding(m.path, m.reason + (" (optional input)" if m.optional else ""), m.input_line)
               for m in resolved.missing]
    missing += [Finding(p, why) for p, why in result.missing]
    stats = {
        "trace_records": ts.records,
        "trace_frames": len(ts.frames),
        "trace_lines_skipped": import_stats.skipped_lines,
        "trace_calls_failed": import_stats.failed_calls,
        "granule": granule,
        **result.stats,
    }
    return Plan(job=manifest.job, frames=tuple(frames), ranges=tuple(ordered.ranges), metadata=tuple(metadata),
                files=files, missing=tuple(missing), dropped=tuple(ordered.dropped), granule=granule,
                start=manifest.start, priority=manifest.priority, gateways=manifest.gateways, stats=stats)
