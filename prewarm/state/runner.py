"""What a submitter and a worker do with a warm job in Redis: create, dispatch, run a batch, cancel.

Celery stays out: sending a batch is passed in (`dispatch.Send`), so tests run the
same code with a sender that calls `run_batch` in-process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import redis

from prewarm.errors import ConfigError
from prewarm.plan.model import Plan
from prewarm.site.settings import Settings
from prewarm.state import dispatch
from prewarm.state.dedupe import RedisDedupe
from prewarm.state.jobs import WarmJob
from prewarm.state.throttle import RedisThrottle
from prewarm.warm.batches import MAX_META, MAX_READS, Batch, batch_bytes, iter_batches, make_retry_batches
from prewarm.warm.loop import WarmContext, execute_batch
from prewarm.warm.reader import Reader, site_reader
from prewarm.warm.results import WarmResult
from prewarm.warm.timeline import Sampler
from prewarm.warm.window import Window

_windows: dict[tuple[str, int], Window] = {}
"""One in-flight window per gateway (and floor) in this worker process: what one batch measured of
the link sizes the next, as in the embedded mode's one window per warm."""


def submit(r: redis.Redis[bytes], plan: Plan, settings: Settings, send: dispatch.Send, gw: str,
           retry_of: WarmJob | None = None) -> WarmJob:
    """Create a warm job of one gateway (or a retry of a partial one) and let the gateway's window take its batches."""
    batches: Iterable[Batch]
    if retry_of is not None:
        failed = retry_of.failed_ranges()
        if not failed:
            raise ConfigError("--retry", f"warm job {retry_of.id} has no failed ranges to retry")
        batches = make_retry_batches(failed, plan.files, settings.read_size, settings.throttle_bps)
    else:
        batches = iter_batches(plan.metadata, plan.table, plan.files, settings.read_size,
                               batch_bytes(settings.throttle_bps, settings.read_size), MAX_READS, MAX_META)
    job = WarmJob.create(r, plan, batches, gw, settings.read_size,
                         retry_of=None if retry_of is None else retry_of.id)
    dispatch.submit(r, job, gw, plan.start, time.time())
    refill(r, gw, settings, send)
    return job


def refill(r: redis.Redis[bytes], gateway: str, settings: Settings, send: dispatch.Send) -> int:
    """Top up the gateway's window; a batch unfinished after twice the visibility timeout is sent again."""
    return dispatch.refill(r, gateway, settings.dispatch_window, send, 2 * settings.visibility_timeout_s)


def refill_all(r: redis.Redis[bytes], settings: Settings, send: dispatch.Send) -> int:
    """Refill every gateway with work waiting or in flight: the sweep that re-sends batches lost
    when nothing else would trigger a refill (a sender killed between choosing and sending)."""
    return sum(refill(r, gw, settings, send) for gw in sorted(dispatch.busy_gateways(r)))


def run_batch(r: redis.Redis[bytes], settings: Settings, job_id: str, index: int, send: dispatch.Send,
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
        window = _windows.setdefault((gw, settings.in_flight), Window(settings.in_flight))
        ctx = WarmContext(
            reader=reader or site_reader(settings), in_flight=settings.in_flight,
            throttle=RedisThrottle(r, gw, settings.throttle_bps),
            dedupe=RedisDedupe(r, gw, job_id, settings.read_size, settings.dedupe_ttl_s),
            should_stop=job.cancelled, progress=sampler, window=window)
        result = execute_batch(job.batch(index), ctx)
        sampler.flush()
        job.complete_batch(index, result)
    dispatch.finished(r, gw, job_id, index)
    refill(r, gw, settings, send)
    return result


def cancel(r: redis.Redis[bytes], job_id: str, settings: Settings, revoke: Callable[[list[str]], None],
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
