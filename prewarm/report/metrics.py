"""Prometheus metrics of the warm jobs, read from Redis at scrape time.

Workers and the service keep no counters of their own: the job state in Redis is the
truth (it survives worker restarts and counts redelivered batches once), so a custom
collector turns it into metrics on each scrape. Any number of exporters (the service's
/api/v1/metrics, `prewarm metrics --port`) then agree with each other and with
`prewarm status`. No series carries a job id: a label per job is a new series per job,
unbounded over months of jobs, and Prometheus keeps each one. Jobs are aggregated per
gateway (a studio has a handful); the per-job detail is in `prewarm status` and the report.
"Recent" is the `JOBS` most recent jobs; "unfinished" those of them queued or running.

    prewarm_jobs{gateway,state}                            recent jobs in each state
    prewarm_gateway_planned_bytes{gateway}                 bytes the unfinished jobs plan
    prewarm_gateway_job_bytes{gateway,kind}                of those, done | skipped | failed
    prewarm_gateway_job_files{gateway,kind}                files, likewise
    prewarm_gateway_errors{gateway,kind}                   files with a finding (missing, denied, ...), recent jobs
    prewarm_gateway_rate_bytes_per_second{gateway}        over the last RATE_WINDOW_S complete seconds
    prewarm_gateway_reads_in_flight{gateway}               in the last complete second
    prewarm_gateway_queue_batches{gateway}                 batches waiting to be sent
    prewarm_gateway_inflight_batches{gateway}              batches sent and unfinished
    prewarm_gateway_throttle_bytes_per_second{gateway}     the shared rate (absent: worker default)

All are gauges: sums over a window of jobs go down when a job leaves it, which a counter
must never do.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prewarm.state import dispatch, throttle
from prewarm.state.jobs import WarmJob, recent
from prewarm.warm.job import JobInfo, JobState
from prewarm.warm.timeline import Point

JOBS = 50
"""Jobs exported per scrape, most recent first."""

RATE_WINDOW_S = 5
"""Seconds averaged for the current rate: one second alone is noisy with 0.5 s batches."""


@dataclass(frozen=True)
class JobSample:
    info: JobInfo
    rate_bps: float
    in_flight: int


@dataclass(frozen=True)
class GatewaySample:
    name: str
    queued_batches: int
    inflight_batches: int
    throttle_bps: float | None


def current(points: list[Point], now: float) -> tuple[float, int]:
    """(bytes/s over the last RATE_WINDOW_S complete seconds, reads in flight in the last complete second)."""
    last = int(now) - 1
    window = [p for p in points if last - RATE_WINDOW_S < p.t <= last]
    latest = next((p.in_flight for p in reversed(points) if p.t == last), 0)
    return sum(p.bytes for p in window) / RATE_WINDOW_S, latest


def families(jobs: list[JobSample], gateways: list[GatewaySample]) -> Iterator[Metric]:
    """The metric families of a snapshot, per gateway. Pure: the snapshot in, Prometheus families out."""
    gw, kinds = ["gateway"], ["gateway", "kind"]
    by_state = GaugeMetricFamily("prewarm_jobs", "Recent jobs in each state", labels=["gateway", "state"])
    planned = GaugeMetricFamily("prewarm_gateway_planned_bytes", "Bytes the unfinished jobs plan", labels=gw)
    by_bytes = GaugeMetricFamily("prewarm_gateway_job_bytes", "Bytes of the unfinished jobs by outcome", labels=kinds)
    by_files = GaugeMetricFamily("prewarm_gateway_job_files", "Files of the unfinished jobs by outcome", labels=kinds)
    errors = GaugeMetricFamily("prewarm_gateway_errors", "Files with a finding in recent jobs, by kind", labels=kinds)
    states: Counter[tuple[str, str]] = Counter()
    outcome: defaultdict[str, Counter[str]] = defaultdict(Counter)
    found: Counter[tuple[str, str]] = Counter()
    rate: defaultdict[str, float] = defaultdict(float)
    flying: Counter[str] = Counter()
    for j in jobs:
        i = j.info
        states[i.gateway, i.state.value] += 1
        found.update((i.gateway, f.kind.value) for f in i.findings)
        rate[i.gateway] += j.rate_bps
        flying[i.gateway] += j.in_flight
        if not i.state.final:
            o = outcome[i.gateway]
            o["planned"] += i.bytes_planned
            o["bytes_done"] += i.progress()[0]  # bytes read move during a batch, not only when it ends
            for kind in ("skipped", "failed"):
                o[f"bytes_{kind}"] += i.counters[f"bytes_{kind}"]
            for kind in ("done", "skipped", "failed"):
                o[f"files_{kind}"] += i.counters[f"files_{kind}"]
    names = sorted({g.name for g in gateways} | {j.info.gateway for j in jobs})
    for name in names:
        for s in JobState:
            by_state.add_metric([name, s.value], states[name, s.value])
        o = outcome[name]
        planned.add_metric([name], o["planned"])
        for kind in ("done", "skipped", "failed"):
            by_bytes.add_metric([name, kind], o[f"bytes_{kind}"])
            by_files.add_metric([name, kind], o[f"files_{kind}"])
    for (name, kind), n in sorted(found.items()):
        errors.add_metric([name, kind], n)
    yield from (by_state, planned, by_bytes, by_files, errors)
    yield from _gateway_families(names, {g.name: g for g in gateways}, rate, flying)


def _gateway_families(names: list[str], known: dict[str, GatewaySample], rate: dict[str, float],
                      flying: Counter[str]) -> Iterator[Metric]:
    gr = GaugeMetricFamily("prewarm_gateway_rate_bytes_per_second", "Bytes read per second", labels=["gateway"])
    gf = GaugeMetricFamily("prewarm_gateway_reads_in_flight", "Reads in flight", labels=["gateway"])
    gq = GaugeMetricFamily("prewarm_gateway_queue_batches", "Batches waiting to be sent", labels=["gateway"])
    gi = GaugeMetricFamily("prewarm_gateway_inflight_batches", "Batches sent, unfinished", labels=["gateway"])
    gt = GaugeMetricFamily("prewarm_gateway_throttle_bytes_per_second", "Shared rate; 0 = unthrottled",
                           labels=["gateway"])
    for name in names:
        gr.add_metric([name], rate.get(name, 0.0))
        gf.add_metric([name], flying[name])
        g = known.get(name)
        if g is not None:
            gq.add_metric([name], g.queued_batches)
            gi.add_metric([name], g.inflight_batches)
            if g.throttle_bps is not None:
                gt.add_metric([name], g.throttle_bps)
    yield from (gr, gf, gq, gi, gt)


def snapshot(r: redis.Redis[bytes], now: float | None = None) -> tuple[list[JobSample], list[GatewaySample]]:
    """Read what the families need from Redis: recent jobs, their last seconds, each gateway's queue."""
    now = time.time() if now is None else now
    jobs = []
    for info in recent(r, JOBS):
        job = WarmJob(r, info.id)
        full = job.info() or info
        points = job.points() if not info.state.final or (info.finished or 0) > now - RATE_WINDOW_S - 2 else []
        rate, flying = current(points, now)
        jobs.append(JobSample(full, rate, flying))
    gateways = []
    names = dispatch.busy_gateways(r) | throttle.throttled_gateways(r) | {j.info.gateway for j in jobs}
    for gw in sorted(names):
        queued, sent = dispatch.window(r, gw)
        shared = throttle.get_rate(r, gw)
        gateways.append(GatewaySample(gw, queued, sent, None if shared is None else float(shared)))
    return jobs, gateways


class RedisCollector(Collector):
    """A prometheus_client collector: one Redis snapshot per scrape."""

    def __init__(self, r: redis.Redis[bytes], clock: Callable[[], float] = time.time) -> None:
        self.r = r
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from families(*snapshot(self.r, self.clock()))

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not touch Redis."""
        return []
