"""Gather a warm job's report from Redis: the thin IO half of `prewarm.report`.

Shared by `prewarm report` and the service's report routes, so both show the same thing.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from prewarm.errors import ConfigError
from prewarm.report import build as report
from prewarm.state.jobs import WarmJob
from prewarm.warm.batches import Batch


def evaluation_key(job_id: str) -> str:
    return f"prewarm:job:{job_id}:evaluation"


def load(r: redis.Redis, job_id: str, throttle_bps: int | None = None) -> dict[str, Any]:
    """The report of job `job_id`; ConfigError (exit 2 / HTTP 404) when there is no such job."""
    job = WarmJob(r, job_id)
    info = job.info()
    if info is None:
        raise ConfigError(job_id, "no such warm job (expired or never created)")
    plan = job.plan()
    done = {int(x) for x in r.smembers(f"{job.key}:done")}
    batches = [Batch.from_json(json.loads(v)) for v in r.hvals(f"{job.key}:batches")]
    rate = r.get(f"prewarm:gw:{info.gateway}:rate")
    if rate is not None:
        throttle_bps = int(float(rate)) or None
    raw = r.get(evaluation_key(job_id))
    return report.build(info, plan, report.Progress.of(batches, done), job.failed_ranges(), job.points(),
                        throttle_bps, None if raw is None else json.loads(raw), now=time.time())
