"""Wiring of the warm loop to its two homes: in-process (embedded) and Redis + Celery.

The loop (`prewarm.warm`) is the same in both; what differs is where batches come
from, where results go and what enforces the shared rate. This module owns that
wiring and the checks that guard it: a plan is refused here, before any job exists,
if it names paths outside the allowed roots or asks for absurd amounts of work.
Celery itself stays out: the task passes in how to send a batch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
import redis

from prewarm import dispatch_redis as dispatch
from prewarm.batches import make_batches, make_retry_batches, whole_batch
from prewarm.config import Settings
from prewarm.dedupe_redis import RedisDedupe
from prewarm.errors import ConfigError, PlanFileError
from prewarm.jobs import JobInfo, JobState, final_state
from prewarm.plan import Plan
from prewarm.reader import DirectReader, Reader
from prewarm.state_redis import WarmJob
from prewarm.throttle import TokenBucket, Unthrottled
from prewarm.throttle_redis import RedisThrottle
from prewarm.timeline import Sampler
from prewarm.warm import WarmContext, WarmResult, inside, warm_batch

MAX_PIECES = 20_000_000
"""Reads one plan may ask for (20 TB at 1 MiB): more is a corrupt or hostile plan, refused before any work."""


def check_plan(plan: Plan, settings: Settings, where: str, need_roots: bool = True) -> None:
    """Refuse a plan that reads outside the allowed roots or asks for an absurd number of reads.

    `need_roots=False` (a submitter without roots configured): the size checks still apply,
    the roots are then enforced by each worker against its own settings.
    """
    roots = settings.allowed_roots()
    if need_roots and not roots:
        raise ConfigError("roots", "no allowed studio roots: set `roots` or `path_map` in the config, "
                                   "or pass --local STUDIO=MOUNT")
    for i, r in enumerate(plan.ranges):
        if roots and not inside(r.path, roots):
            raise PlanFileError(f"{where}: ranges[{i}].path", f"{r.path!r} is outside the allowed roots {list(roots)}")
        info = plan.files.get(r.path)
        if info is not None and r.end > info.size:
            raise PlanFileError(f"{where}: ranges[{i}]", f"ends at {r.end}, beyond the file's planned size {info.size}")
    for i, m in enumerate(plan.metadata):
        if roots and not inside(m.path, roots):
            raise PlanFileError(f"{where}: metadata[{i}].path", f"{m.path!r} is outside the allowed roots {list(roots)}")
    count = len(plan.ranges) + sum(r.length for r in plan.ranges) // settings.granule
    if count > MAX_PIECES:
        raise PlanFileError(f"{where}: ranges", f"asks for about {count} reads (limit {MAX_PIECES})")


def gateways_of(plan: Plan, settings: Settings) -> tuple[str, ...]:
    """Every gateway node the render will read through: each has its own cache, so each is warmed."""
    return plan.gateways or (settings.queue,)


def queue_of(gateway: str) -> str:
    """One Celery queue per gateway node: gateways do not share caches."""
    return f"prewarm.{gateway}"


# embedded


def run_embedded(plan: Plan, settings: Settings, reader: Reader | None = None,
                 progress: Callable[[JobInfo], None] | None = None) -> JobInfo:
    """Warm a plan in this process: no server, same loop and same report as with workers.

    The whole plan is one batch, so the reader pool never drains between batches.
    """
    batch = whole_batch(plan, settings.granule)
    info = JobInfo(id=f"local-{uuid.uuid4().hex[:8]}", name=plan.job, gateway=",".join(gateways_of(plan, settings)),
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
    ctx = WarmContext(reader=reader or DirectReader(), roots=settings.allowed_roots(),
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


# with Redis and workers


def submit(r: redis.Redis, plan: Plan, settings: Settings, send: dispatch.Send, gw: str,
           retry_of: WarmJob | None = None) -> WarmJob:
    """Create a warm job of one gateway (or a retry of a partial one) and let the gateway's window take its batches."""
    if retry_of is not None:
        failed = retry_of.failed_ranges()
        if not failed:
            raise ConfigError("--retry", f"warm job {retry_of.id} has no failed ranges to retry")
        batches = make_retry_batches(failed, plan.files, settings.granule, settings.throttle_bps)
    else:
        batches = make_batches(plan, settings.granule, settings.throttle_bps)
    job = WarmJob.create(r, plan, batches, gw, settings.granule,
                         retry_of=None if retry_of is None else retry_of.id)
    dispatch.submit(r, job, gw, plan.start, time.time())
    refill(r, gw, settings, send)
    return job


def refill(r: redis.Redis, gateway: str, settings: Settings, send: dispatch.Send) -> int:
    """Top up the gateway's window; a batch unfinished after twice the visibility timeout is sent again."""
    return dispatch.refill(r, gateway, settings.dispatch_window, send, 2 * settings.visibility_timeout_s)


def refill_all(r: redis.Redis, settings: Settings, send: dispatch.Send) -> int:
    """Refill every gateway with work waiting or in flight: the sweep that re-sends batches lost
    when nothing else would trigger a refill (a sender killed between choosing and sending)."""
    gateways = {k.decode()[len("prewarm:gw:"):].rpartition(":")[0]
                for pattern in (dispatch.jobs_key("*"), dispatch.inflight_key("*")) for k in r.scan_iter(pattern)}
    return sum(refill(r, gw, settings, send) for gw in sorted(gateways))


def run_batch(r: redis.Redis, settings: Settings, job_id: str, index: int, send: dispatch.Send,
              reader: Reader | None = None) -> WarmResult | None:
    """What a worker does with one batch: warm it unless done or cancelled, record once, refill the window."""
    job = WarmJob(r, job_id)
    gateway = r.hget(job.key, "gateway")
    if gateway is None:
        return None
    gw = gateway.decode()
    result = None
    if not job.cancelled() and not job.batch_done(index):
        job.mark_running()
        sampler = Sampler(job.record_point)
        ctx = WarmContext(
            reader=reader or DirectReader(), roots=settings.allowed_roots(), to_local=settings.path_map.to_local,
            throttle=RedisThrottle(r, gw, settings.throttle_bps), in_flight=settings.in_flight,
            dedupe=RedisDedupe(r, gw, job_id, settings.granule, settings.dedupe_ttl_s),
            should_stop=job.cancelled, progress=sampler)
        result = warm_batch(job.batch(index), ctx)
        sampler.flush()
        job.complete_batch(index, result)
    dispatch.finished(r, gw, job_id, index)
    refill(r, gw, settings, send)
    return result


def cancel(r: redis.Redis, job_id: str, settings: Settings, revoke: Callable[[list[str]], None],
           send: dispatch.Send) -> bool:
    """Stop dispatch, revoke what is queued; running batches stop at their next poll."""
    job = WarmJob(r, job_id)
    gateway = r.hget(job.key, "gateway")
    if gateway is None:
        raise ConfigError(job_id, "no such warm job")
    changed = job.cancel()
    ids = dispatch.withdraw(r, gateway.decode(), job_id)
    if ids:
        revoke(ids)
    refill(r, gateway.decode(), settings, send)
    return changed
