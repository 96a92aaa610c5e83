"""Thin tasks: plain JSON arguments (a job id, a batch index); the work is in `prewarm.state.runner`.

A batch that fails because Redis is away longer than the client's own retries is
retried by Celery (a new message): failing it would ack it and lose it, and
recording is idempotent, so running it again is always safe.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cache
from typing import Any

import redis
from celery.signals import worker_ready

from prewarm.errors import ServiceError
from prewarm.farm.agent import Match, check_gateway
from prewarm.farm.restarts import RestartWatch
from prewarm.state import keys, runner
from prewarm.state.celery_app import DEFAULT_URL, CelerySender
from prewarm.state.client import connect, persistence_warning
from workers.app import app, settings

log = logging.getLogger(__name__)

sender = CelerySender(settings, app)
"""Refills from inside a worker go out through the worker's own app."""


@cache
def client() -> redis.Redis[bytes]:
    return connect(settings.redis_url or DEFAULT_URL)


def sweep_forever(watch: RestartWatch) -> None:
    """Re-send batches nobody will finish (see `runner.refill_all`), every half visibility timeout;
    and every `agent_poll_s`, look at the gateways' agents for a restart (`RestartWatch`)."""
    next_watch = 0.0
    while True:
        time.sleep(max(1, min(10, settings.visibility_timeout_s // 2)))
        try:
            runner.refill_all(client(), settings, sender.send)
            if watch.agents and time.monotonic() >= next_watch:
                next_watch = time.monotonic() + settings.agent_poll_s
                watch.poll(client())
        except redis.RedisError:
            log.warning("dispatch sweep: Redis unavailable, retrying", exc_info=True)


def _gateways(consumer: Any) -> list[str]:
    queues = getattr(getattr(consumer, "task_consumer", None), "queues", None) or []
    return sorted({gw for q in queues if (gw := keys.gateway_of_queue(str(q.name)))})


@worker_ready.connect
def _start_sweep(sender: Any = None, **_: object) -> None:
    """At start: say what would make this worker useless or unsafe, then sweep in the background."""
    warning = persistence_warning(client())
    if warning:
        log.warning("prewarm worker: %s", warning)
    if not settings.allowed_roots():
        log.warning("this worker has no allowed studio roots: every file will be refused. Set `roots` or "
                    "`path_map` in its settings file (PREWARM_CONFIG or /etc/prewarm/config.yaml)")
    gateways = _gateways(sender)
    for gw in gateways:
        for check in check_gateway(settings, gw):
            (log.error if check.match is Match.OTHER else log.info)("gateway %s: %s", gw, check.detail)
    threading.Thread(target=sweep_forever, args=(RestartWatch.of(settings, gateways),), name="prewarm-sweep",
                     daemon=True).start()


@app.task(name=keys.TASK, autoretry_for=(redis.RedisError, ServiceError),
          retry_backoff=1, retry_backoff_max=30, max_retries=20)
def warm_batch(job_id: str, index: int) -> None:
    runner.run_batch(client(), settings, job_id, index, sender.send)
