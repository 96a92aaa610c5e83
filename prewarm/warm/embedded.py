"""The embedded warm: a whole plan read in this process, no Redis, no workers.

Same loop, same report and same exit codes as a warm through Celery, so a first
try on one machine shows exactly what a farm will see.

The plan is warmed as a sequence of large batches made as they are taken
(`batches.embedded_batches`): memory stays flat however many reads the plan asks
for, and the reader threads drain only once per `EMBEDDED_READS` reads. What spans
batches is kept for the whole warm: the files opened (`reader.OpenOnce`: each file
opened once, descriptors bounded) and the in-flight window with what it measured
(`window.Window`), which the report shows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from prewarm.plan.model import Plan
from prewarm.plan.ranges import ByteRange
from prewarm.site.settings import Settings
from prewarm.warm.batches import Batch, embedded_batches, embedded_head, merged_size
from prewarm.warm.columns import merge_table
from prewarm.warm.job import JobInfo, JobState, final_state
from prewarm.warm.loop import WarmContext, execute_batch
from prewarm.warm.reader import OpenOnce, Reader, site_reader
from prewarm.warm.results import FileFinding, Snapshot, WarmResult
from prewarm.warm.throttle import TokenBucket, Unthrottled
from prewarm.warm.timeline import Sampler
from prewarm.warm.window import Window


@dataclass(frozen=True)
class EmbeddedWarm:
    """An embedded warm's job, and what its report needs besides: bytes per file and the ranges that failed."""

    info: JobInfo
    planned: dict[str, int]
    """Bytes read or meant to be, per file, as the batches cut them."""
    done: dict[str, int]
    failed: tuple[ByteRange, ...]


def run_embedded(plan: Plan, settings: Settings, reader: Reader | None = None,
                 progress: Callable[[JobInfo], None] | None = None) -> JobInfo:
    """Warm a plan in this process: no server, same loop and same report as with workers."""
    return warm_embedded(plan, settings, reader, progress).info


def warm_embedded(plan: Plan, settings: Settings, reader: Reader | None = None,
                  progress: Callable[[JobInfo], None] | None = None) -> EmbeddedWarm:
    """`run_embedded`, keeping what `prewarm warm --report` needs."""
    opens = OpenOnce(reader or site_reader(settings))
    first = next((path for path, _, length in plan.table.spans() if length > 0), None)
    if first is not None:
        opens.open_ahead(first)
    head, ended = embedded_head(plan, settings.read_size)
    planned = sum(b.bytes for b in head)
    gateway = ",".join(settings.gateways(plan.gateways))
    info = JobInfo(id=f"local-{uuid.uuid4().hex[:8]}", name=plan.job, gateway=gateway,
                   state=JobState.RUNNING, created=time.time(), started=time.time(), priority=plan.priority,
                   start=plan.start, bytes_planned=planned, files_planned=len(ended))
    sampler = Sampler(info.samples.append)
    totals = WarmResult()

    def report(snapshot: Snapshot) -> None:
        # Each batch counts from zero; the one sampler of the whole warm must see the warm's
        # running total, or every batch boundary would emit a negative second.
        counters = {k: v + getattr(totals, k) for k, v in snapshot.counters.items()}
        sampler(Snapshot(snapshot.bytes_done + totals.bytes_done, counters, snapshot.in_flight))
        if progress is not None:
            info.counters = {**counters, "inputs_missing": plan.missing_inputs}
            progress(info)

    throttle = (TokenBucket(settings.throttle_bps, time.monotonic, time.sleep)
                if settings.throttle_bps else Unthrottled())
    window = Window(settings.in_flight)
    ctx = WarmContext(reader=opens, in_flight=settings.in_flight, throttle=throttle, progress=report, window=window)
    findings: dict[str, FileFinding] = {}
    failed: list[ByteRange] = []
    per_file: dict[str, int] = {}

    def warm(batch: Batch) -> None:
        for path, n in batch.reads.file_bytes().items():
            per_file[path] = per_file.get(path, 0) + n
        opens.last_reads(batch.closes)
        result = execute_batch(batch, ctx)
        for k in WarmResult.COUNTERS:
            setattr(totals, k, getattr(totals, k) + getattr(result, k))
        for path, finding in result.findings.items():
            findings.setdefault(path, finding)
        failed.extend(result.failed)
        info.batches += 1
        info.meta_planned += len(batch.meta)

    try:
        # the head is read before the rest is merged: a merge on a thread beside it held the GIL
        # the reader threads need between their system calls, and doubled the time to first read
        for batch in head:
            warm(batch)
        merged = merge_table(plan.table, ended)
        rest, rest_files = merged_size(merged)
        info.bytes_planned += rest
        info.files_planned += rest_files
        for batch in embedded_batches(plan, settings.read_size, merged, head=len(head)):
            warm(batch)
    finally:
        opens.close()
    sampler.flush()
    estimate = window.estimate()
    info.link = None if estimate is None else estimate.to_json()
    info.counters = {**totals.counters(), "inputs_missing": plan.missing_inputs}
    info.findings = sorted(findings.values(), key=lambda f: f.path)
    info.failed_ranges = len(failed)
    info.batches_done = info.batches
    info.finished = time.time()
    info.state = final_state(info.numbers(), len(info.findings))
    return EmbeddedWarm(info, per_file, dict(per_file), tuple(failed))
