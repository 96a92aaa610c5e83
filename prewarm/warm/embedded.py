"""The embedded warm: a whole plan read in this process, no Redis, no workers.

Same loop, same report and same exit codes as a warm through Celery, so a first
try on one machine shows exactly what a farm will see.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from prewarm.plan.model import Plan
from prewarm.site.settings import Settings
from prewarm.warm.batches import whole_batch
from prewarm.warm.job import JobInfo, JobState, final_state
from prewarm.warm.loop import WarmContext, warm_batch
from prewarm.warm.reader import DirectReader, Reader
from prewarm.warm.results import WarmResult
from prewarm.warm.throttle import TokenBucket, Unthrottled
from prewarm.warm.timeline import Sampler


def run_embedded(plan: Plan, settings: Settings, reader: Reader | None = None,
                 progress: Callable[[JobInfo], None] | None = None) -> JobInfo:
    """Warm a plan in this process: no server, same loop and same report as with workers.

    The whole plan is one batch, so the reader pool never drains between batches.
    """
    batch = whole_batch(plan, settings.granule)
    info = JobInfo(id=f"local-{uuid.uuid4().hex[:8]}", name=plan.job, gateway=",".join(settings.gateways(plan.gateways)),
                   state=JobState.RUNNING, created=time.time(), started=time.time(), priority=plan.priority,
                   start=plan.start, batches=1, bytes_planned=batch.bytes, files_planned=len(batch.closes),
                   meta_planned=len(batch.meta))

    sampler = Sampler(info.samples.append)

    def report(result: WarmResult) -> None:
        sampler(result)
        if progress is not None:
            info.counters = result.counters()
            progress(info)

    throttle = (TokenBucket(settings.throttle_bps, time.monotonic, time.sleep)
                if settings.throttle_bps else Unthrottled())
    ctx = WarmContext(reader=reader or DirectReader(settings.read_mode), roots=settings.allowed_roots(),
                      to_local=settings.path_map.to_local, throttle=throttle, in_flight=settings.in_flight,
                      progress=report)
    result = warm_batch(batch, ctx)
    sampler.flush()
    info.counters = result.counters()
    info.findings = sorted(result.findings.values(), key=lambda f: f.path)
    info.failed_ranges = len(result.failed)
    info.batches_done = 1
    info.finished = time.time()
    info.state = final_state(info.counters, len(info.findings))
    return info
