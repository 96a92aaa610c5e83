"""Gather a warm job's report from Redis: the thin IO half of `prewarm.report`.

Shared by `prewarm report` and the service's report routes, so both show the same thing.
"""

from __future__ import annotations

import time

import redis

from prewarm.errors import ConfigError
from prewarm.report import build as report
from prewarm.report.model import Report
from prewarm.state.jobs import WarmJob
from prewarm.state.throttle import get_rate


def load(r: redis.Redis[bytes], job_id: str, throttle_bps: int | None = None) -> Report:
    """The report of job `job_id`; ConfigError (exit 2 / HTTP 404) when there is no such job."""
    job = WarmJob(r, job_id)
    info = job.info()
    if info is None:
        raise ConfigError(job_id, "no such warm job (expired or never created)")
    plan = job.plan()
    rate = get_rate(r, info.gateway)
    if rate is not None:
        throttle_bps = rate or None
    return report.build(info, plan, report.Progress.of(job.batches(), job.done()), job.failed_ranges(),
                        job.points(), throttle_bps, job.evaluation(), now=time.time())
