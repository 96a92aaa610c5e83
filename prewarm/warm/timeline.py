"""A warm's time series: bytes read and reads in flight, one point per second. Pure.

The report plots throughput and concurrency over time; counters alone only give the
average. Each running batch feeds a `Sampler` from the warm loop's progress calls and
emits at most one point a second: `(second, bytes read since the last point, reads in
flight now)`. Points of concurrent batches (several workers, several threads) are
summed per second where they are stored, so the sum of in-flight values is the
gateway's total concurrency and the sum of bytes its throughput.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prewarm.warm.results import Snapshot


@dataclass(frozen=True, slots=True)
class Point:
    t: int
    """Epoch second."""
    bytes: int
    in_flight: int


class Sampler:
    """Turns progress calls (many a second) into at most one point a second; cheap when called often.

    A point holds the bytes read *within* its second: the bytes read between two calls that
    straddle a second's end are shared out by time, as read at an even rate between them, so
    a read that took three seconds counts a third in each (not all three seconds' bytes in the
    second the last call before it fell in, which showed a rate three times the link's), and
    the first second holds only what was read after the warm started.
    """

    def __init__(self, emit: Callable[[Point], None], clock: Callable[[], float] = time.time) -> None:
        self.emit = emit
        self.clock = clock
        self.at = clock()
        """When the last progress call came (at first: when the batch started)."""
        self.done = 0
        """Bytes read by then."""
        self.sec = int(self.at)
        """The second being filled."""
        self.sent = 0
        self.last: Snapshot | None = None

    def __call__(self, result: Snapshot) -> None:
        self.last = result
        now = self.clock()
        if int(now) != self.sec:
            self._emit(result, now)
        self.at, self.done = now, result.bytes_done

    def flush(self) -> None:
        """The bytes of the last partial second (in flight is 0: the batch is over)."""
        if self.last is None:
            return
        now = self.clock()
        if int(now) != self.sec:
            self._emit(self.last, now)
        if self.last.bytes_done > self.sent:
            self.emit(Point(self.sec, self.last.bytes_done - self.sent, 0))
            self.sent = self.last.bytes_done

    def _emit(self, result: Snapshot, now: float) -> None:
        """Close each second from the one being filled up to `now`'s, sharing the bytes read since
        the last call by time; seconds that get no bytes are left out (`merged` fills them)."""
        rate = (result.bytes_done - self.done) / (now - self.at) if now > self.at else 0.0
        first = True
        while self.sec < int(now):
            end = self.sec + 1
            upto = min(self.done + round(rate * max(end - self.at, 0.0)), result.bytes_done)
            if first or upto > self.sent:
                self.emit(Point(self.sec, upto - self.sent, result.in_flight))
                self.sent = upto
            first = False
            self.sec = end


def merged(points: Iterable[Point]) -> list[Point]:
    """Points of concurrent batches summed per second, in time order, gaps filled with zeros."""
    by_sec: dict[int, list[int]] = {}
    for p in points:
        acc = by_sec.setdefault(p.t, [0, 0])
        acc[0] += p.bytes
        acc[1] += p.in_flight
    if not by_sec:
        return []
    lo, hi = min(by_sec), max(by_sec)
    return [Point(s, *by_sec.get(s, (0, 0))) for s in range(lo, hi + 1)]
