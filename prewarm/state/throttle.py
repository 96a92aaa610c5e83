"""One warm rate per gateway, shared by all its workers, changeable while warms run.

The bucket of `prewarm.warm.throttle` (GCRA) kept in Redis: one Lua call per read
reserves bytes against the gateway's theoretical arrival time, using Redis's clock
so that workers with skewed clocks agree. The rate is read from Redis on every
call, so `prewarm throttle set gw1 20MB/s` takes effect within one read.

Keys (`prewarm.state.keys`), per gateway: `rate`, bytes/s ("0" means unthrottled; absent:
the worker's default); `tat`, the theoretical arrival time in seconds (Redis clock),
which expires when idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from prewarm.state import keys
from prewarm.warm.throttle import BURST_SECONDS

_RESERVE = """
local rate = tonumber(redis.call('GET', KEYS[1]) or ARGV[2])
if rate == nil or rate <= 0 then return '0' end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
tat = tat + tonumber(ARGV[1]) / rate
redis.call('SET', KEYS[2], string.format('%.6f', tat), 'EX', 3600)
local wait = tat - tonumber(ARGV[3]) - now
if wait < 0 then wait = 0 end
return string.format('%.6f', wait)
"""


def set_rate(r: redis.Redis[bytes], gateway: str, rate_bps: int | None) -> None:
    """Change a gateway's warm rate for every worker, at once (None: unthrottled)."""
    r.set(keys.gateway(gateway, "rate"), 0 if rate_bps is None else int(rate_bps))


def get_rate(r: redis.Redis[bytes], gateway: str) -> int | None:
    """The gateway's rate if one was set, else None (0 means explicitly unthrottled)."""
    value = r.get(keys.gateway(gateway, "rate"))
    return None if value is None else int(value)


def throttled_gateways(r: redis.Redis[bytes]) -> set[str]:
    """Gateways whose rate was set (`prewarm throttle set`)."""
    return {keys.gateway_of(k) for k in r.scan_iter(keys.gateway_pattern("rate"))}


RATE_REFRESH_S = 0.5
"""How stale a worker's view of "this gateway is unthrottled" may be: saves a round trip per read."""


class RedisThrottle:
    def __init__(self, r: redis.Redis[bytes], gateway: str, default_bps: int | None,
                 sleep: Callable[[float], None] = time.sleep, burst_s: float = BURST_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._r = r
        self._gateway = gateway
        self._clock = clock
        self._checked = -RATE_REFRESH_S
        self._unthrottled = False
        self._script = r.register_script(_RESERVE)
        self._keys = [keys.gateway(gateway, "rate"), keys.gateway(gateway, "tat")]
        self._default = str(default_bps or 0)
        self._burst = str(burst_s)
        self._sleep = sleep

    def acquire(self, nbytes: int) -> None:
        now = self._clock()
        if now - self._checked >= RATE_REFRESH_S:
            rate = get_rate(self._r, self._gateway)
            self._unthrottled = rate == 0 or (rate is None and self._default == "0")
            self._checked = now
        if self._unthrottled:
            return
        wait = float(self._script(keys=self._keys, args=[nbytes, self._default, self._burst]))
        if wait > 0:
            self._sleep(wait)
