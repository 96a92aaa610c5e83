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
    """Turns progress calls (many a second) into at most one point a second; cheap when called often."""

    def __init__(self, emit: Callable[[Point], None], clock: Callable[[], float] = time.time) -> None:
        self.emit = emit
        self.clock = clock
        self.sec = int(clock())
        self.sent = 0
        self.last: Snapshot | None = None

    def __call__(self, result: Snapshot) -> None:
        self.last = result
        now = int(self.clock())
        if now != self.sec:
            self._emit(result, now)

    def flush(self) -> None:
        """The bytes of the last partial second (in flight is 0: the batch is over)."""
        if self.last is not None and self.last.bytes_done > self.sent:
            self.emit(Point(int(self.clock()), self.last.bytes_done - self.sent, 0))
            self.sent = self.last.bytes_done

    def _emit(self, result: Snapshot, now: int) -> None:
        self.emit(Point(self.sec, result.bytes_done - self.sent, result.in_flight))
        self.sent = result.bytes_done
        self.sec = now


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
