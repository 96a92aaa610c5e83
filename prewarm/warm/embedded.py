"""The embedded warm: a whole plan read in this process, no Redis, no workers.

Same loop, same report and same exit codes as a warm through Celery, so a first
try on one machine shows exactly what a farm will see.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from prewarm.plan.model import Plan
from prewarm.plan.ranges import ByteRange
from prewarm.site.settings import Settings
from prewarm.warm.batches import Batch, whole_batch
from prewarm.warm.job import JobInfo, JobState, final_state
from prewarm.warm.loop import WarmContext, warm_batch
from prewarm.warm.reader import Reader, site_reader
from prewarm.warm.results import Snapshot
from prewarm.warm.throttle import TokenBucket, Unthrottled
from prewarm.warm.timeline import Sampler


@dataclass(frozen=True)
class EmbeddedWarm:
    """An embedded warm's job, and what its report needs besides: the batch and the ranges that failed."""

    info: JobInfo
    batch: Batch
    failed: tuple[ByteRange, ...]


def run_embedded(plan: Plan, settings: Settings, reader: Reader | None = None,
                 progress: Callable[[JobInfo], None] | None = None) -> JobInfo:
    """Warm a plan in this process: no server, same loop and same report as with workers."""
    return warm_embedded(plan, settings, reader, progress).info


def warm_embedded(plan: Plan, settings: Settings, reader: Reader | None = None,
                  progress: Callable[[JobInfo], None] | None = None) -> EmbeddedWarm:
    """`run_embedded`, keeping what `prewarm warm --report` needs.

    The whole plan is one batch, so the reader pool never drains between batches.
    """
    batch = whole_batch(plan, settings.read_size)
    gateway = ",".join(settings.gateways(plan.gateways))
    info = JobInfo(id=f"local-{uuid.uuid4().hex[:8]}", name=plan.job, gateway=gateway,
                   state=JobState.RUNNING, created=time.time(), started=time.time(), priority=plan.priority,
                   start=plan.start, batches=1, bytes_planned=batch.bytes, files_planned=len(batch.closes),
                   meta_planned=len(batch.meta))

    sampler = Sampler(info.samples.append)

    def report(snapshot: Snapshot) -> None:
        sampler(snapshot)
        if progress is not None:
            info.counters = {**snapshot.counters, "inputs_missing": plan.missing_inputs}
            progress(info)

    throttle = (TokenBucket(settings.throttle_bps, time.monotonic, time.sleep)
                if settings.throttle_bps else Unthrottled())
    ctx = WarmContext(reader=reader or site_reader(settings), in_flight=settings.in_flight, throttle=throttle,
                      progress=report)
    result = warm_batch(batch, ctx)
    sampler.flush()
    info.counters = {**result.counters(), "inputs_missing": plan.missing_inputs}
    info.findings = sorted(result.findings.values(), key=lambda f: f.path)
    info.failed_ranges = len(result.failed)
    info.batches_done = 1
    info.finished = time.time()
    info.state = final_state(info.numbers(), len(info.findings))
    return EmbeddedWarm(info, batch, tuple(result.failed))
