"""The WAN link between the gateway and the studio filer: latency plus one shared pipe.

A miss first waits one round trip (request out, first byte back), then its bytes
occupy the link for `nbytes / bandwidth` seconds. The link carries one transfer at a
time, so concurrent misses overlap their latency but queue for bandwidth: this is what
makes one reader reach only part of the cap (it pays a round trip per request) and
many readers reach the cap, the behaviour a warmer must be designed against.

The model is a time reservation made under a lock: no token bucket thread, no
sleeping while holding the lock. Clock and sleep are injected so tests run the
arithmetic on a fake clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MB = 1_000_000
"""`mbps` is in MB/s of 10**6 bytes, as link speeds are quoted."""


class Link:
    """One WAN link shared by every fetch of a gateway."""

    def __init__(self, rtt_s: float, bytes_per_s: float | None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """`bytes_per_s=None` is an unlimited link (latency only)."""
        if rtt_s < 0:
            raise ValueError("rtt_s must not be negative")
        if bytes_per_s is not None and bytes_per_s <= 0:
            raise ValueError("bytes_per_s must be positive or None")
        self.rtt_s = rtt_s
        self.bytes_per_s = bytes_per_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._free_at = float("-inf")

    def reserve(self, nbytes: int) -> float:
        """Book the link for a fetch issued now; return when its last byte arrives.

        The data can start no earlier than one round trip from now and no earlier
        than the end of the transfer booked before it.
        """
        with self._lock:
            now = self._clock()
            start = max(now + self.rtt_s, self._free_at)
            busy = nbytes / self.bytes_per_s if self.bytes_per_s else 0.0
            done = start + busy
            if busy:
                self._free_at = done
            return done

    def transfer(self, nbytes: int) -> float:
        """Block for as long as fetching `nbytes` takes on this link; return the seconds waited."""
        delay = self.reserve(nbytes) - self._clock()
        if delay > 0:
            self._sleep(delay)
        return max(delay, 0.0)

    def round_trip(self) -> float:
        """A metadata call: latency only, its few bytes do not compete for bandwidth."""
        if self.rtt_s > 0:
            self._sleep(self.rtt_s)
        return self.rtt_s
