"""How many reads a warm keeps in flight, sized to the link from what it measures, as TCP sizes its window.

A gateway's round trip decides how many reads must be in flight to fill its link:
bandwidth x RTT / read size (the bandwidth-delay product, in reads). Too few and the
link idles (16 reads of 16 KiB at 30 ms move 8.7 MB/s whatever the link); too many
only queue at the gateway. Neither the bandwidth nor the round trip is known before
the warm starts, and both differ per site, so the window is measured, not configured:

- it starts at the configured `in_flight` and doubles every round (one
  window's worth of reads completed, at least `MIN_ROUND_S`) in which throughput grew
  by `GROWTH`; a round in which it did not is measured again at the same size, and
  after `FLAT_ROUNDS` such rounds in a row the search ends, like BBR's startup;
- then the window goes back to the size that gave the best
  throughput, and from then on every round it is `GAIN` x the recent best throughput
  x the lowest round trip seen / the mean read size (BBR's cwnd = 2 x BtlBw x RTprop),
  within [`FLOOR`, that size]: a link that slows (a throttle, a busier gateway) shrinks
  it, and it grows back as the link recovers.

Where the reader, not the link, is the limit (page-cached local files: round trips under
`QUICK_RTT_S`) the window falls to `FLOOR` for as long as they stay that quick: more threads
would only contend for the interpreter; and to one read where they are a copy of a few pages
(`CACHED_RTT_S`), too short for a second thread to overlap anything but the interpreter's
hand-over. That is decided from the round trip, not from throughput, because throughput can
still grow with threads on an idle machine with two cores, and every thread's measured round
trip then includes the others' time holding the interpreter, so the product above grows with
the window it sizes (1M page-cached reads: 64 threads, 9.8 s; 2 threads, 3.1 s; 1 thread, 1.8 s).
When reads that quick are followed by reads that cross the link (a worker's window outlives
its batches of one gateway: a batch the gateway's cache answered, then a cold one), the
search starts again: the quick rounds' round trip and throughput say nothing of the link.
Pure: the clock is passed in.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

FLOOR = 2
"""Reads in flight at least: where reads take microseconds (page-cached files) the product is below
one read, and two keep both the reader and the system call busy; each thread more only contends
for the interpreter's lock."""

CEILING = 256
"""Reads in flight at most unless `in_flight` asks for more: 2 x the product of 100 MB/s, 30 ms and
the 24 KiB a tile read averages is 250; each is a thread, and a gateway answers them all."""

GROWTH = 1.25
"""Throughput must grow this much in a round for the window to double again (BBR's startup test)."""

FLAT_ROUNDS = 3
"""Rounds in a row without that growth before the window stops doubling (BBR's full-pipe test): one
noisy round on a busy machine must not end the search at a quarter of the link."""

GAIN = 2.0
"""Reads in flight per read the measured product needs: headroom for jitter and hits, as BBR's cwnd gain."""

QUICK_RTT_S = 0.001
"""A round whose reads took less than this on average waited on no link (local or page-cached data)."""

CACHED_RTT_S = 20e-6
"""A round whose reads took less than this on average waited on nothing: small reads copied from the page
cache (a 4 KiB read on tmpfs: 1-4 us; a device or a network answers in tens of microseconds at best).
One thread then: a second's system call lasts less than handing it the interpreter (1M reads of 4 KiB
from tmpfs, idle machine: one thread 1.95 s of wall and CPU, two 3.2 s wall and 4.0 s CPU)."""

MIN_ROUND_S = 0.02
"""A round lasts at least this long: rounds of a few microseconds on local files would measure noise."""

RATE_ROUNDS = 10
"""The bandwidth is the best throughput of this many recent rounds (BBR's windowed max filter)."""


@dataclass(frozen=True, slots=True)
class LinkEstimate:
    """What the window measured, for the warm's report."""

    in_flight: int
    """The window when the estimate was taken (the last round's)."""
    max_in_flight: int
    rtt_s: float
    """Lowest mean read latency of a round: the link's round trip without queueing."""
    rate_bps: float
    """Best throughput of a round."""
    read_bytes: float
    """Mean read size."""

    @property
    def bdp_reads(self) -> float:
        """Bandwidth x RTT / read size: reads that must be in flight to fill the link."""
        return self.rate_bps * self.rtt_s / self.read_bytes if self.read_bytes else 0.0

    def to_json(self) -> dict[str, float]:
        return {"in_flight": self.in_flight, "max_in_flight": self.max_in_flight, "rtt_s": self.rtt_s,
                "rate_bps": self.rate_bps, "read_bytes": self.read_bytes, "bdp_reads": self.bdp_reads}


class Window:
    """The in-flight window of one warm (or of one worker's batches of a gateway); thread-safe."""

    def __init__(self, start: int, ceiling: int = CEILING, floor: int = FLOOR) -> None:
        self.floor = max(1, min(floor, start))
        self.ceiling = max(start, ceiling)
        self.size = max(1, start)
        self.largest = self.size
        self.growing = True
        self._lock = threading.Lock()
        self._start: float | None = None
        self._last = 0.0
        self._bytes = self._reads = 0
        self._latency = 0.0
        self.best_rate = 0.0
        self._best_size = self.size
        self._flat = 0
        self._rates: deque[float] = deque(maxlen=RATE_ROUNDS)
        self.min_rtt = math.inf
        self.read_bytes = 0.0
        self._quick = False
        """The last round's reads waited on no link (see `_round`)."""

    def observe(self, latency: float, nbytes: int, now: float, ops: int = 1) -> None:
        """`ops` operations done one after the other by one thread: `latency` seconds from the first's issue
        to the last's completion, `nbytes` read (0: an open, a stat or a listing), at `now`. "Read size"
        below is bytes per operation."""
        with self._lock:
            if self._start is None:
                self._start = now - latency
            self._last = now
            self._bytes += nbytes
            self._reads += ops
            self._latency += latency
            if self._reads >= self.size and now - self._start >= MIN_ROUND_S:
                self._round(now - self._start)
                self._start = now
                self._bytes = self._reads = 0
                self._latency = 0.0

    def _round(self, elapsed: float) -> None:
        rate = self._bytes / elapsed
        per_read = self._latency / self._reads
        if self._quick and per_read >= QUICK_RTT_S:
            self._search_again()
        self.min_rtt = min(self.min_rtt, per_read)
        mean = self._bytes / self._reads
        self.read_bytes = mean if not self.read_bytes else 0.875 * self.read_bytes + 0.125 * mean
        grew = rate >= max(self._rates, default=0.0) * GROWTH
        self._rates.append(rate)
        if self.growing and rate > self.best_rate:
            self._best_size = self.size  # only while searching: a noisy round later must not pin it down
        self.best_rate = max(self.best_rate, rate)
        self._flat = 0 if grew else self._flat + 1
        self._quick = per_read < QUICK_RTT_S
        if self._quick:
            self.size = 1 if per_read < CACHED_RTT_S else self.floor
            return
        if self.growing and self._flat < FLAT_ROUNDS and self.size < self.ceiling:
            if grew:  # a flat round is measured again at the same size: it may have been noise
                self.size = min(self.ceiling, self.size * 2)
                self.largest = max(self.largest, self.size)
            return
        self.growing = False
        want = math.ceil(GAIN * max(self._rates) * self.min_rtt / max(self.read_bytes, 1.0))
        self.size = max(self.floor, min(self._best_size, want))
        self.largest = max(self.largest, self.size)

    def _search_again(self) -> None:
        """Reads that waited on no link (a gateway's page cache) are followed by reads that cross it: what
        the quick rounds measured says nothing of the link (their round trips are microseconds, their
        throughput the memory's), and a worker's window outlives its batches of one gateway, so the
        search starts again from this round, as at a warm's start."""
        self.min_rtt = math.inf
        self.best_rate = 0.0
        self._rates.clear()
        self._flat = 0
        self._best_size = self.size
        self.growing = True

    def estimate(self) -> LinkEstimate | None:
        """The measured link; before a round has completed (a warm shorter than `MIN_ROUND_S`), what
        the reads so far measured; None before any read."""
        with self._lock:
            if not math.isinf(self.min_rtt):
                return LinkEstimate(self.size, self.largest, self.min_rtt, self.best_rate, self.read_bytes)
            if not self._reads or self._start is None:
                return None
            elapsed = max(self._last - self._start, 1e-9)
            return LinkEstimate(self.size, self.largest, self._latency / self._reads, self._bytes / elapsed,
                                self._bytes / self._reads)
