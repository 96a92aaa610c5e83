"""The warm report: is the job's data warm, how fast did it get there, what went wrong. Pure.

A render-farm engineer wants one answer first (ready for the first frames, and when,
against when they start) and then the evidence: totals in bytes and files, time taken
against the physical limit (planned bytes / throttle), throughput and reads in flight
over time, coverage per file, and the files that are missing or failed with the one
command that retries them. Everything here takes values and returns a `Report`
(`prewarm.report.model`), typed values with their JSON; loading them from Redis is
`prewarm.report.load`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prewarm.errors import InputError
from prewarm.plan.evaluate import Evaluation, input_of
from prewarm.plan.framespec import parse_frames
from prewarm.plan.model import Plan
from prewarm.plan.ranges import ByteRange
from prewarm.plan.records import FileInfo
from prewarm.report.model import (
    CoverageRow,
    JobHead,
    Problem,
    Readiness,
    Report,
    Retry,
    Sample,
    Summary,
    Tally,
    Timing,
)
from prewarm.warm.batches import Batch
from prewarm.warm.job import JobInfo, JobState
from prewarm.warm.results import FileFinding, FindingKind
from prewarm.warm.timeline import Point, merged

MAX_POINTS = 600
"""Series longer than this are averaged into buckets: a plot has no use for more points than pixels."""

MIN_SPAN_S = 0.01
"""The shortest time a rate sample is divided by: a warm that ran a millisecond of a second
(clocks of two hosts a little apart) is not shown reading a thousand times its bytes."""

COVERAGE_ROWS = 40
"""Inputs shown in the coverage chart, largest first; the rest are summed in one row."""

LOST = frozenset({FindingKind.MISSING, FindingKind.DENIED, FindingKind.OUTSIDE, FindingKind.CHANGED})
"""Findings after which nothing useful of the file is in the cache (bytes of a changed file are stale)."""


@dataclass(frozen=True)
class Progress:
    """What the stored batches say about a job: planned and done bytes per file (after granule cuts)."""

    planned: Mapping[str, int]
    done: Mapping[str, int]

    @classmethod
    def of(cls, batches: Iterable[Batch], done: set[int]) -> Progress:
        planned: dict[str, int] = defaultdict(int)
        finished: dict[str, int] = defaultdict(int)
        for b in batches:
            for r in b.reads:
                planned[r.path] += r.length
                if b.index in done:
                    finished[r.path] += r.length
        return cls(dict(planned), dict(finished))


def retry_command(info: JobInfo) -> str | None:
    """The command that re-reads just the failed ranges; None when there is nothing to retry."""
    if not info.failed_ranges:
        return None
    if info.id.startswith("local-"):
        return "prewarm warm PLAN.json  (an embedded warm keeps no state: re-run it, or warm through Redis)"
    return f"prewarm warm --retry {info.id}"


def build(info: JobInfo, plan: Plan | None, progress: Progress | None, failed: Sequence[ByteRange] = (),
          points: Sequence[Point] = (), throttle_bps: int | None = None,
          evaluation: Evaluation | None = None, now: float | None = None) -> Report:
    """The whole report: what the HTML page and `prewarm report` show, and (`Report.to_json`) what
    `prewarm report --json` prints."""
    c = info.counters
    seconds = merged(points)
    failed_by_file: dict[str, int] = defaultdict(int)
    for r in failed:
        failed_by_file[r.path] += r.length
    missing = [f for f in info.findings if f.kind is FindingKind.MISSING]
    planned_by_file = progress.planned if progress is not None else {}
    return Report(
        job=JobHead(info.id, info.name, info.gateway, info.state.value, info.created, info.started, info.finished,
                    info.retry_of, info.batches, info.batches_done),
        summary=Summary(
            planned=Tally(info.bytes_planned, info.files_planned, meta=info.meta_planned),
            warmed=Tally(info.progress()[0], c["files_done"], meta=c["meta_done"]),
            skipped=Tally(c["bytes_skipped"], c["files_skipped"]),
            missing=_missing(missing, planned_by_file, plan),
            failed=Tally(c["bytes_failed"], c["files_failed"], meta=c["meta_failed"], ranges=info.failed_ranges)),
        timing=_timing(info, throttle_bps, now),
        readiness=_readiness(info, plan, seconds, failed, now),
        series=_series(seconds, info.started, info.finished),
        coverage=_coverage(info, progress, failed_by_file, plan),
        problems=[Problem(f.path, f.kind.value, f.detail) for f in info.findings]
        + ([] if plan is None else [Problem(m.path, "missing-input",
                                            f"{m.reason}{f' (manifest line {m.line})' if m.line else ''}")
                                    for m in plan.missing]),
        retry=Retry(retry_command(info), info.failed_ranges),
        evaluation=evaluation,
    )


def _missing(found: Sequence[FileFinding], planned_by_file: Mapping[str, int], plan: Plan | None) -> Tally:
    """Missing files as the problems table lists them: those the warm found gone (their planned bytes)
    and the inputs the plan found absent (files, bytes unknown: they do not exist)."""
    inputs = 0 if plan is None else sum(m.count for m in plan.missing)
    return Tally(sum(planned_by_file.get(f.path, 0) for f in found), len(found) + inputs, inputs=inputs)


def _missing_for(plan: Plan, frame: int) -> list[str]:
    """The inputs the plan found absent that `frame` reads: every frame reads an input without frames."""
    out = []
    for m in plan.missing:
        if m.optional:
            continue
        try:
            if m.frames is None or frame in parse_frames(m.frames, "plan"):
                out.append(m.path)
        except InputError:   # a hand-written plan's frames that do not parse: the input counts for every frame
            out.append(m.path)
    return out


def _timing(info: JobInfo, throttle_bps: int | None, now: float | None) -> Timing:
    end = info.finished if info.finished is not None else now
    elapsed = None if info.started is None or end is None else max(end - info.started, 0.0)
    ideal = info.bytes_planned / throttle_bps if throttle_bps else None
    read = info.counters["bytes_done"]
    return Timing(elapsed_s=elapsed, ideal_s=ideal, throttle_bps=throttle_bps,
                  rate_bps=read / elapsed if elapsed else None,
                  files_per_s=info.counters["files_done"] / elapsed if elapsed else None,
                  efficiency=ideal / elapsed if ideal and elapsed else None,
                  link=info.link)


def _series(points: list[Point], started: float | None, finished: float | None) -> list[Sample]:
    """Seconds since the start with bytes/s and reads in flight, averaged into at most MAX_POINTS buckets.

    Points are whole epoch seconds; the warm ran only part of its first and last: a bucket's
    bytes are divided by the time the warm ran within it (from `started`, up to `finished`),
    so a warm that started 0.8 s into a second does not show a fifth of its rate there, and
    its first sample is at t=0, not before the start."""
    if not points:
        return []
    t0 = started if started is not None else points[0].t
    step = max(1, -(-len(points) // MAX_POINTS))
    out = []
    for i in range(0, len(points), step):
        chunk = points[i:i + step]
        lo, hi = float(chunk[0].t), float(chunk[-1].t + 1)
        if started is not None and lo < started < hi:
            lo = started
        if finished is not None and lo < finished < hi:
            hi = finished
        out.append(Sample(t=round(max(lo - t0, 0.0), 3),
                          bytes_per_s=sum(p.bytes for p in chunk) / max(hi - lo, MIN_SPAN_S),
                          in_flight=sum(p.in_flight for p in chunk) / len(chunk)))
    return out


def _coverage(info: JobInfo, progress: Progress | None, failed_by_file: Mapping[str, int],
              plan: Plan | None) -> list[CoverageRow]:
    """Per input, named as the manifest writes it (`fluid.####.vdb`, `diffuse.<UDIM>.tx`, a folder):
    bytes warmed of bytes planned, and bytes planned of the files' whole size, the saving against
    warming them whole. A file of no manifest input (traces named it), or of a plan that does not
    say (written before plans kept their inputs), is folded with its siblings by name (`Label`)."""
    if progress is None:
        return []
    files: Mapping[str, FileInfo] = {} if plan is None else plan.files
    inputs, input_index = ((), {}) if plan is None else (plan.inputs, plan.input_of)
    lost = {f.path for f in info.findings if f.kind in LOST}
    acc: dict[tuple[int, str], list[int]] = {}
    labels: dict[tuple[int, str], Label] = {}
    for path, planned in progress.planned.items():
        done = 0 if path in lost else max(progress.done.get(path, 0) - failed_by_file.get(path, 0), 0)
        index = input_index.get(path, -1)
        key = (index, inputs[index] if index >= 0 else input_of(path))
        row = acc.setdefault(key, [0, 0, 0, 0])
        row[0] += planned
        row[1] += min(done, planned)
        row[2] += 1
        row[3] += files[path].size if path in files else planned
        if index < 0:
            labels.setdefault(key, Label(path)).add(path)
    rows = [CoverageRow.of(labels[k].text() if k in labels else k[1], *v) for k, v in acc.items()]
    rows.sort(key=lambda r: (-r.planned, r.path))
    if len(rows) > COVERAGE_ROWS:
        rest = rows[COVERAGE_ROWS - 1:]
        rows = rows[:COVERAGE_ROWS - 1] + [CoverageRow.of(
            f"({len(rest)} more inputs)", sum(r.planned for r in rest), sum(r.warmed for r in rest),
            sum(r.files for r in rest), sum(r.file_bytes for r in rest))]
    return rows


_RUNS = re.compile(r"(\d+)")


class Label:
    """A folded input's name as the manifest writes it: only the digit runs that differ between
    its files become `#` (`shot100_lighting_v001.####.exr`, not `shot###_lighting_v###.####.exr`);
    a lone file keeps its name. Files folded under one `input_of` key (same folder, same name
    but for the digits, run for run of the same width) split into the same parts."""

    def __init__(self, first: str) -> None:
        self.parts = _RUNS.split(first)
        self.varies = [False] * len(self.parts)

    def add(self, path: str) -> None:
        for i, part in enumerate(_RUNS.split(path)):
            if i % 2 and part != self.parts[i]:
                self.varies[i] = True

    def text(self) -> str:
        return "".join("#" * len(p) if self.varies[i] else p for i, p in enumerate(self.parts))


def _readiness(info: JobInfo, plan: Plan | None, seconds: list[Point],
               failed: Sequence[ByteRange], now: float | None) -> Readiness:
    """Whether what the first frame needs is warm, and when it was (estimated from plan order).

    The first frame's ranges and the every-frame ranges come first in a plan, and batches are
    dispatched in plan order, so the first frame is ready once the warm has moved that prefix
    of the plan's bytes; the time is read off the bytes read each second.
    """
    if plan is None or not plan.frames or not (plan.ranges or plan.missing):
        return Readiness()
    first = plan.frames[0]
    position = 0
    total = 0
    needed: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in plan.ranges:
        total += r.length
        if r.frame is None or r.frame == first:
            position = total
            needed[r.path].append((r.offset, r.end))
    absent = _missing_for(plan, first)
    blocked = {f.path for f in info.findings if f.path in needed} | set(absent)
    blocked.update(r.path for r in failed if any(r.offset < e and s < r.end for s, e in needed.get(r.path, ())))
    share = position / total if total else 1.0
    reached = info.state.final or info.progress()[1] >= share * info.bytes_planned
    ready = reached and not blocked and info.state is not JobState.CANCELLED
    ready_at = _when(info, seconds, share) if ready else None
    margin = None if plan.start is None or ready_at is None else plan.start - ready_at
    return Readiness(first_frame=first, ready=ready, ready_at=ready_at, start=plan.start, margin_s=margin,
                     share_of_plan=share, blocked_by=sorted(blocked)[:20], missing_inputs=sorted(absent)[:20],
                     late=None if plan.start is None else (not ready and now is not None and now > plan.start)
                     or (margin is not None and margin < 0))


def _when(info: JobInfo, seconds: list[Point], share: float) -> float | None:
    """The end of the second by which `share` of the bytes read had been read (no later than the end)."""
    if info.started is None:
        return None
    total = sum(p.bytes for p in seconds)
    if total <= 0:
        return info.finished
    acc = 0
    for p in seconds:
        acc += p.bytes
        if acc >= share * total - 1e-9:
            end = float(p.t + 1)
            return end if info.finished is None else min(end, info.finished)
    return info.finished
