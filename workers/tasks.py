"""Thin tasks: plain JSON arguments (a job id, a batch index); the work is in `prewarm.engine`.

A batch that fails because Redis is away longer than the client's own retries is
retried by Celery (a new message): failing it would ack it and lose it, and
recording is idempotent, so running it again is always safe.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cache

import redis
from celery.signals import worker_ready

from prewarm.errors import ServiceError
from prewarm.state import keys, runner
from prewarm.state.client import connect
from prewarm.state.dispatch import task_id
from workers.app import DEFAULT_URL, app, current

log = logging.getLogger(__name__)


@cache
def _redis(url: str) -> redis.Redis:
    return connect(url)


def client() -> redis.Redis:
    return _redis(current().redis_url or DEFAULT_URL)


def send(gateway: str, job_id: str, index: int) -> None:
    """Put one batch on its gateway's queue (the dispatcher decides which batch and when)."""
    warm_batch.apply_async((job_id, index), queue=keys.queue_of(gateway), task_id=task_id(job_id, index))


def revoke(task_ids: list[str]) -> None:
    app.control.revoke(task_ids)


def sweep_forever() -> None:
    """Re-send batches nobody will finish (see `runner.refill_all`), every half visibility timeout."""
    while True:
        time.sleep(max(1, min(10, current().visibility_timeout_s // 2)))
        try:
            runner.refill_all(client(), current(), send)
        except redis.RedisError:
            log.warning("dispatch sweep: Redis unavailable, retrying", exc_info=True)


@worker_ready.connect
def _start_sweep(**_: object) -> None:
    threading.Thread(target=sweep_forever, name="prewarm-sweep", daemon=True).start()


@app.task(name="prewarm.warm_batch", autoretry_for=(redis.RedisError, ServiceError),
          retry_backoff=1, retry_backoff_max=30, max_retries=20)
def warm_batch(job_id: str, index: int) -> None:
    runner.run_batch(client(), current(), job_id, index, send)
