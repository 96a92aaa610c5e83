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
- **timing**: calibrated, repeated, and allowed to say it cannot tell. Only the reads
  are timed, never the open (an open revalidates the file's attributes, which can cost a
  WAN round trip on a fully cached file). Each sample is read once (hit or miss) and then
  `REREADS` more times, a hit by construction: the slowest of those fastest re-reads
  (`WARM_QUANTILE`) is what a hit costs here on a bad read. What a miss costs is measured
  too, on known-cold reads (at least `MIN_COLD`): `cold_probes` picks ranges of the planned files that the plan
  leaves out, which nobody warmed; where a plan covers its files whole, the samples' own
  first reads that are far slower than any hit serve instead. A first read slower than
  the geometric middle of the two, and than half the fastest cold read, is a miss (a
  busy host slows a hit by a millisecond or two, not by half a WAN round trip). When fewer than `MIN_COLD` reads were
  `SEPARATION` x slower than a hit, or more than `AMBIGUOUS_SHARE` of the first reads
  fall near the threshold (from half of it to 1.5 x), the verdict is "cannot tell" (no percentage) rather than
  a guess that would drive a rewarm to churn. A verdict states its confidence: the 95%
  Wilson interval of the cached share over the judged samples.
Either way the probe read itself makes a cold sample warm: verifying changes the cache
by at most N samples (and timing by `COLD_PROBES` granules outside the plan).

The choosing and the judging are pure; the reads and the HTTP calls are passed in.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from prewarm.plan.ranges import ByteRange

SAMPLE_BYTES = 64 * 1024
"""Bytes read per sample: enough to land in one gateway granule, small enough to be cheap."""

ALIGN = 4096
"""Sample offsets are page aligned, as O_DIRECT on block-backed mounts requires."""

REREADS = 3
"""Re-reads of each sample after its first read; the fastest of them is the sample's hit time."""

WARM_QUANTILE = 0.9
"""A hit costs at most this quantile of the samples' hit times: one slowed read does not move it."""

SEPARATION = 4.0
"""A miss must cost at least this many times a hit for timing to tell them apart (a WAN round
trip is 2-80 ms, a hit from the gateway's page or disk cache well under a millisecond to a few)."""

COLD_PROBES = 8
"""Known-cold reads: ranges of planned files outside the plan, read once each."""

PROBE_UNIT = 1 << 20
PROBE_CLEARANCE = 8 << 20
"""Probes start on a MiB and stay 8 MiB from any planned byte: a gateway fetches whole granules
(the twin's default is 1 MiB) and its readahead after a sequential warm reaches up to 8 MiB."""

MIN_COLD = 2
"""Cold reads needed to know what a miss costs: one slow read alone may be a busy host."""

AMBIGUOUS_SHARE = 0.1
"""At most this share of first reads may lie near the threshold (half of it to 1.5 x)."""

Z95 = 1.96
"""The normal quantile of a two-sided 95% interval."""


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
class Timings:
    """What a verdict by timing measured: the hit cost, and the miss cost and threshold once it saw misses."""

    hit_ms: float
    probes: int
    """Reads outside the plan, expected cold: the miss cost's calibration."""
    cold_probes: int
    """Of them, those slower than a hit."""
    miss_ms: float | None = None
    threshold_ms: float | None = None
    separation: float | None = None
    """miss / hit."""

    def to_json(self) -> dict[str, Any]:
        """The first three always; the miss cost, threshold and separation once measured."""
        out: dict[str, Any] = {"hit_ms": self.hit_ms, "probes": self.probes, "cold_probes": self.cold_probes}
        if self.miss_ms is not None:
            out.update(miss_ms=self.miss_ms, threshold_ms=self.threshold_ms, separation=self.separation)
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
    undecided: str | None = None
    """Why the method could not tell hits from misses; then nothing is judged."""
    timings: Timings | None = None
    """How the timing method calibrated itself (None with the agent's counters)."""

    @property
    def judged(self) -> int:
        return 0 if self.undecided else self.samples - self.unreached

    @property
    def cached_pct(self) -> float | None:
        return 100.0 * self.cached / self.judged if self.judged else None

    @property
    def interval_pct(self) -> tuple[float, float] | None:
        """The cached share's 95% interval, in percent: what the sample size lets it claim."""
        if not self.judged:
            return None
        low, high = wilson(self.cached, self.judged)
        return 100.0 * low, 100.0 * high

    def to_json(self) -> dict[str, Any]:
        interval = self.interval_pct
        return {"method": self.method, "samples": self.samples, "judged": self.judged, "cached": self.cached,
                "cached_pct": None if self.cached_pct is None else round(self.cached_pct, 1),
                "confidence_95": None if interval is None else [round(interval[0], 1), round(interval[1], 1)],
                "undecided": self.undecided,
                "unreached": self.unreached, "cold": [[r.path, r.offset, r.length] for r in self.cold[:200]],
                **(self.timings.to_json() if self.timings is not None else {})}


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


class SampleFile(Protocol):
    def read(self, offset: int, length: int) -> int: ...

    def close(self) -> None: ...


Open = Callable[[str], SampleFile]
"""Open a planned file through the gateway mount, bypassing this host's page cache."""


def cold_probes(ranges: Sequence[ByteRange], sizes: Mapping[str, int], n: int,
                seed: int | None = None) -> list[ByteRange]:
    """Up to `n` reads of planned files at least `PROBE_CLEARANCE` from any planned byte:
    cold unless something other than this warm read them, which `judge_times` checks."""
    planned: dict[str, set[int]] = {}
    for r in ranges:
        planned.setdefault(r.path, set()).update(range(r.offset // PROBE_UNIT, (r.end - 1) // PROBE_UNIT + 1))
    free = [(path, u) for path, used in planned.items() for u in _clear_units(used, sizes.get(path, 0))]
    picked = random.Random(seed).sample(free, min(n, len(free)))
    return [ByteRange(path, u * PROBE_UNIT, min(SAMPLE_BYTES, sizes[path] - u * PROBE_UNIT))
            for path, u in sorted(picked)]


def _clear_units(used: set[int], size: int, most: int = 64) -> list[int]:
    """Units of a file with no planned byte within `PROBE_CLEARANCE`, at most `most` of them."""
    reach = PROBE_CLEARANCE // PROBE_UNIT
    out = []
    for u in range((size + PROBE_UNIT - 1) // PROBE_UNIT):
        if not any(v in used for v in range(u - reach, u + reach + 1)):
            out.append(u)
            if len(out) == most:
                break
    return out


def time_reads(ranges: Sequence[ByteRange], open_file: Open,
               clock: Callable[[], float] = time.perf_counter) -> list[tuple[float, float]]:
    """(first read, fastest of `REREADS` re-reads) per range, in seconds; the open is not timed."""
    out = []
    for r in ranges:
        f = open_file(r.path)
        try:
            times = []
            for _ in range(1 + REREADS):
                t0 = clock()
                f.read(r.offset, r.length)
                times.append(clock() - t0)
        finally:
            f.close()
        out.append((times[0], min(times[1:])))
    return out


def by_timing(samples: Sequence[ByteRange], probes: Sequence[ByteRange], open_file: Open,
              clock: Callable[[], float] = time.perf_counter) -> Verdict:
    if not samples:
        return Verdict("timing", 0, 0)
    return judge_times(samples, time_reads(samples, open_file, clock), time_reads(probes, open_file, clock))


def judge_times(samples: Sequence[ByteRange], times: Sequence[tuple[float, float]],
                probe_times: Sequence[tuple[float, float]] = ()) -> Verdict:
    """Classify first reads against a calibrated hit cost and miss cost, or say it cannot tell."""
    warm = _quantile([w for _, w in (*times, *probe_times)], WARM_QUANTILE)
    cold_probe_firsts = [f for f, _ in probe_times if f >= SEPARATION * warm]
    slow_firsts = [f for f, _ in times if f >= SEPARATION * warm]
    cold_seen = cold_probe_firsts if len(cold_probe_firsts) >= MIN_COLD else slow_firsts
    timings = Timings(_ms(warm), len(probe_times), len(cold_probe_firsts))
    if len(cold_seen) < MIN_COLD:
        why = f"fewer than {MIN_COLD} reads were slower than a hit" + (
            ": the probes outside the plan were cached too" if probe_times else
            ", and the plan leaves no range of its files to probe")
        return Verdict("timing", len(samples), 0, undecided=f"cannot tell: {why}; use --agent", timings=timings)
    cold = statistics.median(cold_seen)
    threshold = max((warm * cold) ** 0.5, min(cold_seen) / 2)
    near = sum(1 for f, _ in times if threshold / 2 < f < threshold * 1.5)
    timings = replace(timings, miss_ms=_ms(cold), threshold_ms=_ms(threshold),
                      separation=round(cold / warm, 1) if warm else None)
    if near > AMBIGUOUS_SHARE * len(times):
        return Verdict("timing", len(samples), 0, undecided=(
            f"cannot tell: {near} of {len(times)} first reads lie near the {_ms(threshold)} ms threshold "
            "(a busy host or link); use --agent"), timings=timings)
    cold_samples = [s for s, (f, _) in zip(samples, times, strict=True) if f > threshold]
    return Verdict("timing", len(samples), len(samples) - len(cold_samples), cold_samples, timings=timings)


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a share k/n: honest at 0/n and n/n, where the plain one collapses."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
