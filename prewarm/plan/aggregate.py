"""What earlier renders read, aggregated from a stream of trace records. Pure.

The predictor needs, per file, which spans each training frame read; it never needs
the individual calls. Aggregating while streaming keeps memory proportional to the
distinct regions read, not to the length of the logs (5 million records fold into
a few hundred thousand spans).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prewarm.plan.access import Access, Op
from prewarm.plan.ranges import Span, SpanAccumulator, normalize
from prewarm.plan.structure import Filed


@dataclass
class TraceSet:
    """Per file, per training frame: the normal span list that frame read."""

    reads: dict[str, dict[int, list[Span]]] = field(default_factory=dict)
    stats: dict[str, set[int]] = field(default_factory=dict)
    """Files stat-ed or opened, by the frames that did it (also files never read)."""
    listed: dict[str, set[int]] = field(default_factory=dict)
    """Directories listed (getdents), by frame: renderers resolve UDIM tiles this way."""
    frames: frozenset[int] = frozenset()
    records: int = 0
    unframed: int = 0
    """Records with no frame: they cannot train a per-frame model and are counted, not used."""
    filed: dict[str, dict[int, Filed]] | None = field(default=None, compare=False)
    """From the trace store: per structured file, per frame, its reads in tiles and the file's identity
    when they were filed (a frame missing there was filed without one: by an older prewarm). None
    from raw traces, which carry no identity. Not compared: what the store knows about the files
beside the reads does not make its traces other traces than the raw files' (`to_traceset`)."""
    sizes: dict[str, dict[int, int]] = field(default_factory=dict, compare=False)
    """From raw traces: per file, per frame, the size its stat (`fstat`, `statx`) returned, where the
    trace shows one. A plan against a file of another size knows it changed since it was traced,
    as the store's identities say. Not compared, as `filed`: the store does not keep them."""


def aggregate(records: Iterable[Access]) -> TraceSet:
    acc: dict[str, dict[int, SpanAccumulator]] = defaultdict(dict)
    stats: dict[str, set[int]] = defaultdict(set)
    listed: dict[str, set[int]] = defaultdict(set)
    sizes: dict[str, dict[int, int]] = defaultdict(dict)
    frames: set[int] = set()
    n = unframed = 0
    for a in records:
        n += 1
        f = a.frame
        if f is None:
            unframed += 1
            continue
        frames.add(f)
        if a.op is Op.READ:
            if a.length > 0:
                per = acc[a.path]
                sa = per.get(f)
                if sa is None:
                    sa = per[f] = SpanAccumulator()
                sa.add(a.offset, a.offset + a.length)
        elif a.op is Op.READDIR:
            listed[a.path].add(f)
        else:
            stats[a.path].add(f)
            if a.op is Op.STAT and a.length > 0:
                sizes[a.path][f] = a.length
    reads = {p: {f: sa.spans() for f, sa in per.items()} for p, per in acc.items()}
    return TraceSet(reads=reads, stats=dict(stats), listed=dict(listed), frames=frozenset(frames),
                    records=n, unframed=unframed, sizes=dict(sizes))


def aggregate_runs(runs: Iterable[Sequence[tuple[Any, ...]]]) -> TraceSet:
    """`aggregate` of runs of record tuples `(path, op, offset, length, frame, ...)` (the
    importers' `Rec`): the same TraceSet, without one object per call."""
    acc: dict[str, dict[int, SpanAccumulator]] = {}
    stats: dict[str, set[int]] = defaultdict(set)
    listed: dict[str, set[int]] = defaultdict(set)
    sizes: dict[str, dict[int, int]] = defaultdict(dict)
    frames: set[int] = set()
    n = unframed = 0
    last_path: str | None = None
    last_frame: int | None = None
    add = None
    read = Op.READ
    for run in runs:
        n += len(run)
        for r in run:
            f = r[4]
            if f is None:
                unframed += 1
                continue
            if r[1] is read:
                if r[3] <= 0:
                    frames.add(f)
                    continue
                if r[0] is not last_path or f != last_frame or add is None:
                    frames.add(f)
                    per = acc.get(r[0])
                    if per is None:
                        per = acc[r[0]] = {}
                    sa = per.get(f)
                    if sa is None:
                        sa = per[f] = SpanAccumulator()
                    add, last_path, last_frame = sa.add, r[0], f
                add(r[2], r[2] + r[3])
            else:
                frames.add(f)
                (listed if r[1] is Op.READDIR else stats)[r[0]].add(f)
                if r[1] is Op.STAT and r[3] > 0:
                    sizes[r[0]][f] = r[3]
    reads = {p: {f: sa.spans() for f, sa in per.items()} for p, per in acc.items()}
    return TraceSet(reads=reads, stats=dict(stats), listed=dict(listed), frames=frozenset(frames),
                    records=n, unframed=unframed, sizes=dict(sizes))


def restrict(ts: TraceSet, keep_frames: Iterable[int]) -> TraceSet:
    """The same traces limited to some frames: how benchmarks split train from test."""
    keep = frozenset(keep_frames)
    reads = {}
    for p, per in ts.reads.items():
        sub = {f: s for f, s in per.items() if f in keep}
        if sub:
            reads[p] = sub
    stats = {p: fs & keep for p, fs in ts.stats.items() if fs & keep}
    listed = {p: fs & keep for p, fs in ts.listed.items() if fs & keep}
    filed = None if ts.filed is None else {
        p: kept for p, per in ts.filed.items() if (kept := {f: v for f, v in per.items() if f in keep})}
    sizes = {p: mine for p, by in ts.sizes.items() if (mine := {f: n for f, n in by.items() if f in keep})}
    return TraceSet(reads=reads, stats=stats, listed=listed, frames=ts.frames & keep,
                    records=ts.records, unframed=ts.unframed, filed=filed, sizes=sizes)


def restrict_paths(ts: TraceSet, keep: Collection[str]) -> TraceSet:
    """The same traces limited to some files, every frame kept (a file's share of the traced frames
    stays what it was): how a live re-plan predicts only the files whose evidence changed."""
    filed = None if ts.filed is None else {p: per for p, per in ts.filed.items() if p in keep}
    return TraceSet(reads={p: per for p, per in ts.reads.items() if p in keep},
                    stats={p: fs for p, fs in ts.stats.items() if p in keep}, listed=ts.listed,
                    frames=ts.frames, records=ts.records, unframed=ts.unframed, filed=filed,
                    sizes={p: by for p, by in ts.sizes.items() if p in keep})


def merge(parts: Iterable[TraceSet]) -> TraceSet:
    """One TraceSet from aggregates of disjoint groups of trace files (parallel import)."""
    reads: dict[str, dict[int, list[Span]]] = {}
    stats: dict[str, set[int]] = defaultdict(set)
    listed: dict[str, set[int]] = defaultdict(set)
    sizes: dict[str, dict[int, int]] = defaultdict(dict)
    frames: set[int] = set()
    n = unframed = 0
    for part in parts:
        for p, per in part.reads.items():
            mine = reads.setdefault(p, {})
            for f, spans in per.items():
                mine[f] = normalize(mine[f] + spans) if f in mine else spans
        for p, fs in part.stats.items():
            stats[p] |= fs
        for p, fs in part.listed.items():
            listed[p] |= fs
        for p, per_size in part.sizes.items():
            sizes[p].update(per_size)
        frames |= part.frames
        n += part.records
        unframed += part.unframed
    return TraceSet(reads=reads, stats=dict(stats), listed=dict(listed), frames=frozenset(frames),
                    records=n, unframed=unframed, sizes=dict(sizes))
