"""Plan a job on this site: read the manifest, look at the studio files, read the traces, build the plan.

The IO around the pure core (`prewarm.plan`). Facts are gathered once and handed on
as values: the manifest's text becomes a `Manifest`, the site's file system (through
its one guard, `prewarm.site`) resolves the inputs, the traces are aggregated, and
`prewarm.plan.build` does the rest. Studio paths stay studio paths throughout: only
the site's file system knows where they are on this machine, and only the site's
settings (or the operator's `--local` flags folded into them) say so. A manifest may
add trace aliases, never local paths.
"""

from __future__ import annotations

import gc
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace

from prewarm.errors import ConfigError, OutsideRoots
from prewarm.formats.reader import StructureReader, guarded_files
from prewarm.formats.scenes import SceneReader
from prewarm.plan.aggregate import TraceSet, aggregate_runs, merge
from prewarm.plan.build import Effective, PlanOptions, build_plan, job_frames, prediction_options
from prewarm.plan.inputs import ResolvedInputs, resolve_inputs
from prewarm.plan.manifest import Manifest
from prewarm.plan.model import Plan
from prewarm.plan.ordering import Columns, serially
from prewarm.plan.pathmap import PathMap
from prewarm.plan.scenes import Expansion, expand_scenes
from prewarm.plan.stats import StoreStats, TraceStats
from prewarm.site.fs import SiteFS
from prewarm.site.guard import Guard, inside
from prewarm.site.settings import Settings
from prewarm.traces import cores
from prewarm.traces.counters import ImportStats
from prewarm.traces.files import TraceFile, collect, read_batches
from prewarm.traces.loading import load_profiles

DEFAULT_OPTIONS = PlanOptions()
"""Nothing asked for beyond the manifest and the site's settings."""

__all__ = ["PlanOptions", "check_inputs", "load_traces", "plan_manifest",
           "plan_resolved", "plan_traced", "site_fs"]


def plan_manifest(manifest: Manifest, traces: Sequence[str | TraceFile] | None, settings: Settings,
                  options: PlanOptions = DEFAULT_OPTIONS, clock: Callable[[], float] = time.time,
                  cores: int = 1) -> Plan:
    """Plan `manifest` on this site from `traces`: files or folders of this machine, or trace files
    already found through a guard (the service's studio paths).

    `traces=None`: from the trace store's profiles of the shot's earlier jobs (issue 14),
    the same plan as from their raw traces without reading a stored call again, so a
    submitter need not know where traces live. `[]`: from no traces at all.

    `cores` > 1 predicts and orders the traced files in forked processes (`forked`): for a
    command of its own, not for the service, whose request threads a fork must not copy.
    """
    with _without_cycle_collection():
        return _plan_manifest(manifest, traces, settings, options, clock, cores)


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Planning builds millions of small objects (spans, tuples, profiles) that live until the plan
    is done, and none of them form cycles; the cyclic collector rescans all of them at every full
    collection: 29% of a plan from the store at 1,000 frames x 2,000 inputs (`bench/scale.py`,
    3.96 s against 2.80 s, the same peak memory). Reference counting frees them either way.
    Whoever turned it off turns it back on, so concurrent plans (the service) never leave it off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _plan_manifest(manifest: Manifest, traces: Sequence[str | TraceFile] | None, settings: Settings,
                   options: PlanOptions, clock: Callable[[], float], cores: int = 1) -> Plan:
    aliases = settings.path_map.merged(manifest.path_map)
    store: StoreStats | None = None
    if traces is None:
        stored = load_profiles(settings, manifest, aliases, options.frame)
        ts, counts = stored.traces, TraceStats()  # profiles hold no bad lines
        if stored.folders:
            store = StoreStats(stored.folders, stored.skipped)
    else:
        ts, imported = load_traces(traces, aliases, options.frame)
        counts = TraceStats(trace_lines_skipped=imported.skipped_lines, trace_calls_failed=imported.failed_calls)
    plan = _plan_traced(manifest, ts, settings, options, counts, clock(), cores)
    if store is None or plan.stats is None:
        return plan
    return replace(plan, stats=replace(plan.stats, store=store))


def plan_traced(manifest: Manifest, ts: TraceSet, settings: Settings, options: PlanOptions = DEFAULT_OPTIONS,
                clock: Callable[[], float] = time.time) -> Plan:
    """Plan `manifest` from traces already aggregated: a live re-plan loads the store's once and
    plans only the inputs whose evidence changed (`prewarm.flow.live`)."""
    with _without_cycle_collection():
        return _plan_traced(manifest, ts, settings, options, TraceStats(), clock(), 1)


def _plan_traced(manifest: Manifest, ts: TraceSet, settings: Settings, options: PlanOptions,
                 counts: TraceStats, created: float, cores: int) -> Plan:
    with site_fs(settings) as fs:
        check_inputs(manifest, fs.guard.roots)
        scenes = expand_scene_inputs(manifest, fs.guard, options)
        resolved = resolve_inputs(scenes.manifest, fs)
        plan = plan_resolved(scenes.manifest, resolved, ts, fs, settings, options, counts, created, cores)
    return scenes.annotate(plan, resolved.files, resolved.missing)


def expand_scene_inputs(manifest: Manifest, guard: Guard, options: PlanOptions) -> Expansion:
    """Scene inputs (USD stages, .blend files) bring in what they use, per frame.

    Read in child processes (`prewarm.formats.scenes`) that open files through the same
    guard; dependencies outside the allowed roots are counted, not planned or opened, so
    a scene's render-node paths do not fail a warm.
    """
    return expand_scenes(manifest, SceneReader(guard), frames=job_frames(manifest, options),
                         allowed=guard.allows)


@contextmanager
def site_fs(settings: Settings) -> Iterator[SiteFS]:
    """This machine's studio file system, through its one guard; refused when it has no roots."""
    roots = settings.allowed_roots()
    if not roots:
        raise ConfigError("roots", "this machine has no allowed studio roots: set `roots` or `path_map` in "
                                   "the settings file, or pass --local STUDIO=MOUNT")
    with SiteFS(Guard(roots, settings.path_map), settings.in_flight) as fs:
        yield fs


def check_inputs(manifest: Manifest, roots: tuple[str, ...]) -> None:
    """A job naming a path outside the roots is refused whole: it is a bad job, not a partial one."""
    for i, spec in enumerate(manifest.inputs):
        if not inside(spec.path, roots):
            raise OutsideRoots(f"{manifest.source}:{spec.line}: inputs[{i}]",
                               f"{spec.path!r} is outside the allowed roots {list(roots)}")


def plan_resolved(manifest: Manifest, resolved: ResolvedInputs, ts: TraceSet, fs: SiteFS, settings: Settings,
                  options: PlanOptions = DEFAULT_OPTIONS, imported: TraceStats | None = None,
                  created: float | None = None, cores: int = 1) -> Plan:
    """The plan of inputs already resolved and traces already aggregated (benches split them per run).

    Each setting is taken from the first that gives it: the options, the manifest, the site.
    """
    effective = Effective(
        granule=options.granule or manifest.granule or settings.granule,
        max_gap=settings.max_gap if options.max_gap is None else options.max_gap,
        max_bytes=options.max_bytes if options.max_bytes is not None else manifest.max_bytes,
        roots=settings.roots)
    # The files' own structure (texture tiles, EXR tables), read once per file through the guard.
    structures = StructureReader(guarded_files(fs.guard) if prediction_options(manifest, options).structure else None)
    plan = build_plan(manifest, resolved, ts, fs.info, options, effective, imported or TraceStats(), created,
                      structures.by_path(fs.info), forked if cores > 1 else serially, cores)
    assert plan.stats is not None  # build_plan's plans carry what it counted
    return replace(plan, stats=replace(plan.stats, structure=structures.stats()))


FORK_MAX_RSS = 256 << 20
"""The largest planner that forks its parts. A child comes to copy every page of the parent
it touches (reading an object writes its reference count), so a planner of a whole
sequence (600 MB and more) plans in one process rather than risk twice that."""


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def forked(work: Callable[[int, int], Columns], n: int) -> list[Columns]:
    """`work(i, n)` for i >= 1 in forked children and i = 0 here; the results in order.

    Fork rather than fresh interpreters: the children find the traces, the predictors and
    the files' structures already in memory (copy on write; with the cyclic collector off
    little else is touched), make only pure predictions and ranges, and send back only the
    ranges, pickled through a pipe. A child that fails fails the plan. A planner already
    larger than `FORK_MAX_RSS` does all the work itself."""
    if n < 2 or _rss() > FORK_MAX_RSS:
        return [work(0, 1)]
    children: list[tuple[int, int]] = []
    try:
        for i in range(1, n):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: its result goes through the pipe, a failure into its exit status
                status = 1
                try:
                    os.close(r)
                    with os.fdopen(w, "wb") as out:
                        pickle.dump(work(i, n), out, protocol=pickle.HIGHEST_PROTOCOL)
                    status = 0
                finally:
                    os._exit(status)
            os.close(w)
            children.append((pid, r))
        results = [work(0, n)]
        while children:
            pid, r = children[0]
            with os.fdopen(r, "rb") as src:
                data = src.read()
            children.pop(0)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                raise RuntimeError(f"a planning process failed (wait status {status})")
            results.append(pickle.loads(data))
        return results
    finally:
        for pid, r in children:
            with suppress(OSError):
                os.close(r)
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)


PARALLEL_BYTES = 32 << 20
"""Below this much trace data, starting worker processes costs more than it saves."""


def _aggregate_files(files: list[TraceFile], path_map: PathMap, frame: int | None) -> tuple[TraceSet, ImportStats]:
    stats = ImportStats()
    with _without_cycle_collection():
        return aggregate_runs(read_batches(files, path_map, frame=frame, stats=stats)), stats


def load_traces(paths: Sequence[str | TraceFile], path_map: PathMap, frame: int | None = None,
                workers: int | None = None, min_parallel_bytes: int = PARALLEL_BYTES) -> tuple[TraceSet, ImportStats]:
    """Import and aggregate trace files, over all cores when there is enough to read.

    Trace files are per frame, so aggregates of disjoint groups of files merge exactly.
    Each file travels to the worker processes with its guard.
    """
    files = collect(paths)
    if not files:
        return TraceSet(), ImportStats()
    workers = cores.workers_for(len(files), sum(f.size for f in files), min_parallel_bytes, workers)
    if workers < 2:
        return _aggregate_files(files, path_map, frame)
    step = -(-len(files) // workers)  # contiguous groups: merged in file order, the same TraceSet as one process
    groups = [files[i:i + step] for i in range(0, len(files), step)]
    with cores.pool(workers) as pool:
        parts = list(pool.map(_aggregate_files, groups, [path_map] * len(groups), [frame] * len(groups)))
    stats = ImportStats()
    for _, part in parts:
        stats.add(part)
    return merge(ts for ts, _ in parts), stats
