"""A bandwidth cap for warm reads, so warming does not starve live renders. Pure: clock and sleep are passed in.

The bucket is kept as a *theoretical arrival time* (GCRA): each acquisition moves
it forward by `n / rate` and waits until it is no more than `burst` seconds ahead
of now. Reserving under a lock and sleeping outside it lets many reader threads
share one bucket without serialising their sleeps, and a read larger than the burst
simply waits longer instead of never fitting. `throttle_redis` keeps the same
arithmetic in Redis so that all workers of a gateway share one rate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

BURST_SECONDS = 0.05
"""Credit an idle bucket may build up: short enough that the average holds within a few percent."""


class Throttle(Protocol):
    def acquire(self, nbytes: int) -> None:
        """Return when `nbytes` may be read."""


class Unthrottled:
    """No cap: warming may use the whole link."""

    def acquire(self, nbytes: int) -> None:
        return None


class TokenBucket:
    def __init__(self, rate_bps: float, clock: Callable[[], float], sleep: Callable[[float], None],
                 burst_s: float = BURST_SECONDS) -> None:
        if rate_bps <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate_bps)
        self.burst_s = burst_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat = 0.0

    def reserve(self, nbytes: int) -> float:
        """Take `nbytes` now and say how long the caller must wait before using them."""
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now) + nbytes / self.rate
            self._tat = tat
            return max(0.0, tat - self.burst_s - now)

    def acquire(self, nbytes: int) -> None:
        wait = self.reserve(nbytes)
        if wait > 0:
            self._sleep(wait)
