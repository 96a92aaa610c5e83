"""The Celery app: broker and result backend from `Settings.load()` (PREWARM_REDIS_URL or the config file).

Delivery is at-least-once on purpose: a batch is acknowledged after it ran
(`acks_late`), so a worker killed mid-batch loses nothing; the broker redelivers
after `visibility_timeout_s` and the job state records each batch once. One batch
prefetched per worker thread keeps the dispatch window honest (a batch sitting in
a busy worker's prefetch buffer cannot be picked up by an idle one).
"""

from __future__ import annotations

from celery import Celery

from prewarm.site.settings import Settings

DEFAULT_URL = "redis://127.0.0.1:6379/0"
"""Where a worker started without PREWARM_REDIS_URL or a config file looks for Redis."""

app = Celery("prewarm", include=["workers.tasks"])
settings = Settings.load()


def configure(new: Settings) -> None:
    """Point the app at `new.redis_url`; the CLI calls this before sending with `--redis URL`."""
    global settings
    settings = new
    url = new.redis_url or DEFAULT_URL
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
            "visibility_timeout": new.visibility_timeout_s,
            # kombu sweeps for unacknowledged messages every interval x throttle seconds (100 s by
            # default): sweep every half visibility timeout, up to 10 s, so redelivery follows it
            "unacked_restore_interval": max(1, min(10, new.visibility_timeout_s // 2)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": new.visibility_timeout_s},
        worker_hijack_root_logger=False,
    )


def current() -> Settings:
    """The settings in force (tasks read them at call time: `configure` may have replaced them)."""
    return settings


configure(settings)
