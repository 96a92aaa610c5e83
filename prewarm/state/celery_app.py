"""The Celery app, built from settings: for the workers (`workers/`) and for every sender.

Delivery is at-least-once on purpose: a batch is acknowledged after it ran
(`acks_late`), so a worker killed mid-batch loses nothing; the broker redelivers
after `visibility_timeout_s` and the job state records each batch once. One batch
prefetched per worker thread keeps the dispatch window honest (a batch sitting in
a busy worker's prefetch buffer cannot be picked up by an idle one).

A sender (`prewarm warm`, the service, a watch folder, a bench) builds its own app
for its own Redis URL and sends by task name: nobody reconfigures a module-global
app, and the product never imports the worker package.
"""

from __future__ import annotations

from collections.abc import Iterable

import kombu.exceptions
import redis
from celery import Celery

from prewarm.site.settings import Settings
from prewarm.state import keys

DEFAULT_URL = "redis://127.0.0.1:6379/0"
"""Where a worker or sender with no PREWARM_REDIS_URL and no config file looks for Redis."""


def make_app(settings: Settings, include: tuple[str, ...] = ()) -> Celery:
    """A Celery app on `settings.redis_url`, configured as the warm protocol needs."""
    url = settings.redis_url or DEFAULT_URL
    app = Celery("prewarm", include=list(include))
    app.conf.update(
        broker_url=url,
        result_backend=url,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # kombu sweeps for unacknowledged messages every interval x throttle seconds (100 s by
            # default): sweep every half visibility timeout, up to 10 s, so redelivery follows it
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 2)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        worker_hijack_root_logger=False,
        # a worker started with no -Q serves the default gateway, where plans that name none go
        task_default_queue=keys.queue(settings.queue),
    )
    return app


CONSUMERS_TIMEOUT_S = 1.0
"""How long to wait for workers to say which queues they consume: a live worker answers in milliseconds."""


def consumers(app: Celery, timeout: float = CONSUMERS_TIMEOUT_S) -> dict[str, set[str]]:
    """Queue name -> the workers consuming it now, as they answer a broadcast (empty: nobody answered)."""
    answers = app.control.inspect(timeout=timeout).active_queues() or {}
    out: dict[str, set[str]] = {}
    for worker, queues in answers.items():
        for q in queues or ():
            out.setdefault(str(q.get("name")), set()).add(str(worker))
    return out


class CelerySender:
    """`send` and `revoke` for `prewarm.state.dispatch` over a Celery app of these settings."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.app = app or make_app(settings)

    def send(self, gateway: str, job_id: str, index: int) -> None:
        """Put one batch on its gateway's queue (the dispatcher decides which batch and when)."""
        self.app.send_task(keys.TASK, (job_id, index), queue=keys.queue(gateway),
                           task_id=keys.task_id(job_id, index))

    def revoke(self, task_ids: list[str]) -> None:
        self.app.control.revoke(task_ids)

    def unserved(self, gateways: Iterable[str]) -> list[str]:
        """The queues of `gateways` that no worker consumes right now; none when the broker does not
        answer (a warning must not fail the warm it is about: the warm itself says what is wrong)."""
        try:
            served = consumers(self.app)
        except (OSError, redis.RedisError, kombu.exceptions.KombuError):
            return []
        return sorted({keys.queue(g) for g in gateways} - set(served))
