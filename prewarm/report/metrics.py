"""Prometheus metrics of the warm jobs, read from Redis at scrape time.

Workers and the service keep no counters of their own: the job state in Redis is the
truth (it survives worker restarts and counts redelivered batches once), so a custom
collector turns it into metrics on each scrape. Any number of exporters (the service's
/api/v1/metrics, `prewarm metrics --port`) then agree with each other and with
`prewarm status`. Per-job series are kept to the `JOBS` most recent jobs so label
cardinality stays bounded; per-gateway totals cover the same jobs.

    prewarm_job_bytes_total{job,name,gateway,kind}     done | skipped | failed
    prewarm_job_files_total{job,name,gateway,kind}     done | skipped | failed
    prewarm_job_planned_bytes{job,name,gateway}
    prewarm_job_state{job,name,gateway,state}          1 for the job's current state
    prewarm_job_rate_bytes_per_second{job,name,gateway}  over the last RATE_WINDOW_S complete seconds
    prewarm_job_reads_in_flight{job,name,gateway}      in the last complete second
    prewarm_job_errors_total{job,name,gateway,kind}    files by finding kind (missing, denied, ...)
    prewarm_gateway_bytes_total{gateway}               bytes read, recent jobs
    prewarm_gateway_rate_bytes_per_second{gateway}
    prewarm_gateway_reads_in_flight{gateway}
    prewarm_gateway_queue_batches{gateway}             batches waiting to be sent
    prewarm_gateway_inflight_batches{gateway}          batches sent and unfinished
    prewarm_gateway_throttle_bytes_per_second{gateway} the shared rate (absent: worker default)
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
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
    """The metric families of a snapshot. Pure: the snapshot in, Prometheus families out."""
    labels = ["job", "name", "gateway"]
    by_bytes = CounterMetricFamily("prewarm_job_bytes", "Bytes of the plan by outcome", labels=[*labels, "kind"])
    by_files = CounterMetricFamily("prewarm_job_files", "Files of the plan by outcome", labels=[*labels, "kind"])
    planned = GaugeMetricFamily("prewarm_job_planned_bytes", "Bytes the plan asks for", labels=labels)
    state = GaugeMetricFamily("prewarm_job_state", "1 for the job's current state", labels=[*labels, "state"])
    rate = GaugeMetricFamily("prewarm_job_rate_bytes_per_second", "Bytes read per second, recent", labels=labels)
    flying = GaugeMetricFamily("prewarm_job_reads_in_flight", "Reads in flight, last second", labels=labels)
    errors = CounterMetricFamily("prewarm_job_errors", "Files with a finding, by kind", labels=[*labels, "kind"])
    gw_bytes: Counter[str] = Counter()
    gw_rate: defaultdict[str, float] = defaultdict(float)
    gw_flying: Counter[str] = Counter()
    for j in jobs:
        i = j.info
        lv = [i.id, i.name, i.gateway]
        read = i.progress()[0]  # bytes read move during a batch, not only when it ends
        for kind in ("done", "skipped", "failed"):
            by_bytes.add_metric([*lv, kind], read if kind == "done" else i.counters[f"bytes_{kind}"])
            by_files.add_metric([*lv, kind], i.counters[f"files_{kind}"])
        planned.add_metric(lv, i.bytes_planned)
        for s in JobState:
            state.add_metric([*lv, s.value], 1.0 if i.state is s else 0.0)
        rate.add_metric(lv, j.rate_bps)
        flying.add_metric(lv, j.in_flight)
        for kind, n in sorted(Counter(f.kind.value for f in i.findings).items()):
            errors.add_metric([*lv, kind], n)
        gw_bytes[i.gateway] += read
        gw_rate[i.gateway] += j.rate_bps
        gw_flying[i.gateway] += j.in_flight
    yield from (by_bytes, by_files, planned, state, rate, flying, errors)
    gb = CounterMetricFamily("prewarm_gateway_bytes", "Bytes read for recent jobs", labels=["gateway"])
    gr = GaugeMetricFamily("prewarm_gateway_rate_bytes_per_second", "Bytes read per second", labels=["gateway"])
    gf = GaugeMetricFamily("prewarm_gateway_reads_in_flight", "Reads in flight", labels=["gateway"])
    gq = GaugeMetricFamily("prewarm_gateway_queue_batches", "Batches waiting to be sent", labels=["gateway"])
    gi = GaugeMetricFamily("prewarm_gateway_inflight_batches", "Batches sent, unfinished", labels=["gateway"])
    gt = GaugeMetricFamily("prewarm_gateway_throttle_bytes_per_second", "Shared rate; 0 = unthrottled",
                           labels=["gateway"])
    names = sorted({g.name for g in gateways} | set(gw_bytes))
    known = {g.name: g for g in gateways}
    for name in names:
        gb.add_metric([name], gw_bytes[name])
        gr.add_metric([name], gw_rate[name])
        gf.add_metric([name], gw_flying[name])
        g = known.get(name)
        if g is not None:
            gq.add_metric([name], g.queued_batches)
            gi.add_metric([name], g.inflight_batches)
            if g.throttle_bps is not None:
                gt.add_metric([name], g.throttle_bps)
    yield from (gb, gr, gf, gq, gi, gt)


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
