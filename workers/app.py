"""The worker's Celery app: `prewarm.state.celery_app.make_app` on the settings of this host."""

from __future__ import annotations

from prewarm.site.settings import Settings
from prewarm.state.celery_app import make_app

settings = Settings.load()
"""PREWARM_CONFIG or /etc/prewarm/config.yaml, then PREWARM_REDIS_URL: read once, when the worker starts."""

app = make_app(settings, include=("workers.tasks",))
