"""Redis connections: workers ride out a restart, commands and the service answer at once."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from prewarm.errors import ServiceError

MAX_CONNECTIONS = 256
"""Per process. Every in-flight read may talk to Redis (claim, throttle): callers wait for a
connection beyond this rather than fail."""


def connect(url: str, ride_out_restarts: bool = True) -> redis.Redis[bytes]:
    """A Redis client.

    Workers and a waiting `prewarm warm` ride out a Redis restart (about 10 s of
    retries) instead of failing a batch. The service and a command's first check must
    answer at once: a hook stops waiting after 2 s, and a user should hear "Redis is
    not there" rather than wait (`ride_out_restarts=False`: under a second).
    """
    try:
        if not ride_out_restarts:
            return redis.Redis.from_url(
                url, socket_connect_timeout=1, socket_timeout=10, health_check_interval=10,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 2),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError])
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=60, socket_connect_timeout=2, socket_timeout=30,
            health_check_interval=10, retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 25),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    except ValueError as exc:
        raise ServiceError(f"bad Redis URL {url!r}: {exc}") from exc
    return redis.Redis(connection_pool=pool)


def ping(r: redis.Redis[bytes], url: str) -> None:
    try:
        r.ping()
    except redis.RedisError as exc:
        raise ServiceError(f"cannot reach Redis at {url}: {exc}") from exc


NO_AOF = ("Redis keeps no append-only file (appendonly no): if it restarts, every queued batch and every "
          "warm job's state is lost, and a waiting `prewarm warm` fails saying so. Run Redis with "
          "`--appendonly yes` (see README, Redis persistence)")
"""What workers and the service log at start when Redis would lose everything on a restart."""


def persistence_warning(r: redis.Redis[bytes]) -> str | None:
    """NO_AOF when this Redis keeps no append-only file, else None (also when it will not say)."""
    try:
        info = r.info("persistence")
    except redis.RedisError:
        return None
    return NO_AOF if str(info.get("aof_enabled", "1")) == "0" else None
