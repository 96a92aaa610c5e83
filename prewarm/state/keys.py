"""Names in Redis and Celery, in one place."""

from __future__ import annotations


def queue_of(gateway: str) -> str:
    """One Celery queue per gateway node: gateways do not share caches."""
    return f"prewarm.{gateway}"
