"""Celery workers that warm batches: `celery -A workers worker -Q prewarm.<gateway> -P threads`."""

from workers.app import app

__all__ = ["app"]
