"""Proof of what is cached: sample a warm's planned ranges and ask whether the gateway holds them.

A "successful" warm can leave data uncached (the cache culled it, a gateway restarted,
another job evicted it), so this measures instead of trusting the job's counters.
Samples are spread systematically over the planned bytes (a random start, then every
total/N bytes), so the cached share is a share of *bytes* and has little variance.

Two ways to tell a hit from a miss, best first:
- **counters**: the gateway agent's `/api/v1/mountStats` (knfsd-cache-utils, or the
  twin's copy). Samples are read one at a time; a read during which `serverRead` did
  not move was served from the cache; `normalRead` not moving means the read never
  reached the gateway (answered by this host's page cache) and proves nothing. Other
  clients reading at the same moment can only make a hit look like a miss: the
  figure errs low, never high.
- **timing**: each sample is read with O_DIRECT and then read again; the second read is
  a hit by construction, so the median of second reads is the measured hit latency.
  A first read slower than `HIT_FACTOR` x that latency plus `MARGIN_S` was a miss.
Either way the probe read itself makes a cold sample warm: verifying changes the cache
by at most N samples.

The choosing and the judging are pure; the reads and the HTTP calls are passed in.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prewarm.plan.ranges import ByteRange

SAMPLE_BYTES = 64 * 1024
"""Bytes read per sample: enough to land in one gateway granule, small enough to be cheap."""

ALIGN = 4096
"""Sample offsets are page aligned, as O_DIRECT on block-backed mounts requires."""

HIT_FACTOR = 3.0
MARGIN_S = 0.002
"""A first read slower than HIT_FACTOR x the hit latency + MARGIN_S crossed the WAN (a WAN round
trip is 2-80 ms; a hit from the gateway's page or disk cache well under a millisecond to a few)."""


def choose(ranges: Sequence[ByteRange], n: int, granule: int, seed: int | None = None) -> list[ByteRange]:
    """Up to `n` samples spread evenly over the ranges' bytes, from a random start (systematic sampling).

    At most one sample per gateway granule: reading a cold sample makes the gateway fetch its
    whole granule, and a second sample there would then be counted as a hit.
    """
    total = sum(r.length for r in ranges)
    if total <= 0 or n <= 0:
        return []
    step = total / n
    pos = random.Random(seed).random() * step
    out: list[ByteRange] = []
    seen: set[tuple[str, int]] = set()
    acc = 0
    it = iter(ranges)
    r = next(it)
    while pos < total and len(out) < n:
        while pos >= acc + r.length:
            acc += r.length
            r = next(it)
        at = r.offset + int(pos - acc)
        off = max(r.offset, at - at % ALIGN)
        if (r.path, off // granule) not in seen:
            seen.add((r.path, off // granule))
            out.append(ByteRange(r.path, off, min(SAMPLE_BYTES, r.end - off, granule - off % granule)))
        pos += step
    return out


@dataclass
class Verdict:
    """How much of a warm the gateway holds now, and how that was measured."""

    method: str
    samples: int
    cached: int
    cold: list[ByteRange] = field(default_factory=list)
    unreached: int = 0
    """Samples that never reached the gateway (counters did not move at all): not judged."""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def judged(self) -> int:
        return self.samples - self.unreached

    @property
    def cached_pct(self) -> float | None:
        return 100.0 * self.cached / self.judged if self.judged else None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "samples": self.samples, "judged": self.judged, "cached": self.cached,
                "cached_pct": None if self.cached_pct is None else round(self.cached_pct, 1),
                "unreached": self.unreached, "cold": [[r.path, r.offset, r.length] for r in self.cold[:200]],
                **self.detail}


Read = Callable[[ByteRange], None]
"""Read one sample through the gateway mount (bypassing this host's page cache)."""

Counters = Callable[[], tuple[int, int]]
"""(normalRead, serverRead) bytes of the gateway's mounts, as the agent reports them."""


def by_counters(samples: Sequence[ByteRange], read: Read, counters: Counters) -> Verdict:
    cold: list[ByteRange] = []
    unreached = 0
    before = counters()
    for s in samples:
        read(s)
        after = counters()
        if after[0] == before[0]:
            unreached += 1
        elif after[1] != before[1]:
            cold.append(s)
        before = after
    return Verdict("counters", len(samples), len(samples) - unreached - len(cold), cold, unreached)


def by_timing(samples: Sequence[ByteRange], read: Read, clock: Callable[[], float] = time.perf_counter) -> Verdict:
    firsts, seconds = [], []
    for s in samples:
        t0 = clock()
        read(s)
        t1 = clock()
        read(s)
        firsts.append(t1 - t0)
        seconds.append(clock() - t1)
    if not samples:
        return Verdict("timing", 0, 0)
    return judge_times(samples, firsts, seconds)


def judge_times(samples: Sequence[ByteRange], firsts: Sequence[float], seconds: Sequence[float]) -> Verdict:
    """Classify first reads against the measured hit latency (the median second read)."""
    hit = statistics.median(seconds)
    threshold = hit * HIT_FACTOR + MARGIN_S
    cold = [s for s, t in zip(samples, firsts, strict=True) if t > threshold]
    misses = [t for t in firsts if t > threshold]
    return Verdict("timing", len(samples), len(samples) - len(cold), cold, detail={
        "hit_ms": round(hit * 1e3, 3), "threshold_ms": round(threshold * 1e3, 3),
        "miss_ms": round(statistics.median(misses) * 1e3, 3) if misses else None})
