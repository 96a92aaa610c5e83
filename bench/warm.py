"""Warm engine benchmark through the gateway twin: throughput, small files, throttle, memory, broker overhead.

Why: latency, not bandwidth, limits a naive warmer. The engine must fill the link at
30 ms round trips (>= 90% of a 50 MB/s cap) in both modes, move >= 1,000 small
files a second, hold a set rate within 10%, stay under 150 MB RSS per worker whatever
the plan's size, and keep broker overhead a small share of warm time. Each figure is
a ratio measured within one run, against the same twin.

Scenarios (twin caches dropped before each; Redis and one Celery worker started
here and stopped by PID):
- bytes:    N big files read whole at `--rtt-ms`/`--mbps`, embedded then Celery;
- files:    10,000 files of 64 KiB at `--rtt-ms`, latency only (the 50 MB/s cap
            alone would hold 64 KiB files to 760 files/s), embedded then Celery;
- throttle: the big files through Celery with `prewarm throttle set` at `--throttle`;
- overhead: a job of single-stat batches (no transfer): per-task broker cost, then
            its share of the Celery bytes warm;
- fio:      the embedded warm at the default settings against fio replaying exactly
            the same reads (`replay`: an iolog v2 per psync job), run
            one after the other in this run: a 20,000-read plan (2,000 files, 16 KiB
            reads) and 10,000 files of 64 KiB through the twin at `--rtt-ms`; 100,000
            and 1,000,000 reads of 4 KiB over 1,000 page-cached files (tmpfs). Keys
            `fio_<case>` (fio's wall and CPU), `prewarm_<case>` (ours, with peak memory
            growth and time to first read) and `ratio_<case>` (ours / fio's); through the
            twin also `floor_<case>`: a bare `open()` of the plan's first file on a cold twin,
            timed to where its first read goes out, and the requests the twin charged for it
            (the time to first read no reader beats).

    .venv/bin/python bench/warm.py [--rtt-ms 30] [--mbps 50] [--big-mb 320] [--files 10000]
                                   [--throttle 20MB/s] [--json bench/out/warm.json] [--quick]
                                   [--only fio|engine]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from prewarm.errors import ServiceError
from prewarm.plan.access import Op
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.plan.rangetable import RangeTable
from prewarm.plan.records import FileInfo, MetaOp, PlannedRange
from prewarm.plan.units import parse_rate
from prewarm.site.settings import Settings
from prewarm.state import dispatch, keys, runner
from prewarm.state.client import connect
from prewarm.state.dedupe import forget_gateway
from prewarm.state.jobs import WarmJob
from prewarm.state.throttle import set_rate
from prewarm.testkit.readers import FirstRead
from prewarm.testkit.services import RedisServer, start_worker
from prewarm.twin.control import TwinHandle, fuse_missing, start_twin
from prewarm.twin.gateway import GiB, MiB, TwinConfig
from prewarm.warm.batches import LIST_DIR_MIN, Batch
from prewarm.warm.embedded import run_embedded
from prewarm.warm.job import JobInfo, JobState
from prewarm.warm.reader import site_reader

ROOT = Path(__file__).resolve().parents[1]
FIO_TWIN_JOBS = 128
"""fio's psync jobs through the twin: what the issue's tuned fio ran (one pread in flight each)."""
FIO_LOCAL_JOBS = 2
"""fio's psync jobs on page-cached files: one a core; more only add contention."""


STUDIO = "/studio/proj"
GATEWAY = "bench"
WORKER_CONCURRENCY = 4
WORKER_IN_FLIGHT = 32
EMBEDDED_IN_FLIGHT = 128
OVERHEAD_TASKS = 300
STALL_S = 300


@contextmanager
def services(work: Path, mount_big: Path, mount_small: Path) -> Iterator[tuple[str, int]]:
    """A redis-server and one Celery worker (threads pool), ours, stopped by PID: (url, worker pid)."""
    server = RedisServer(work)
    worker = None
    try:
        server.start()
        config = work / "worker.json"
        config.write_text(json.dumps({
            "path_map": [{"studio": f"{STUDIO}/big", "local": str(mount_big)},
                         {"studio": f"{STUDIO}/small", "local": str(mount_small)}],
            "roots": [STUDIO], "in_flight": WORKER_IN_FLIGHT}))
        worker = start_worker(config, keys.queue(GATEWAY), work / "worker.log", f"bench-{os.getpid()}",
                              WORKER_CONCURRENCY, server.url, loglevel="warning")
        r = connect(server.url)
        deadline = time.monotonic() + 60
        # ready when it consumes: a one-stat job goes through
        while not worker_replies(r, server.url):
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"celery worker did not start:\n{worker.log.read_text()[-2000:]}")
        yield server.url, worker.pid
    except ServiceError as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


def worker_replies(r: Any, url: str) -> bool:
    plan = Plan(job="ping", frames=(), ranges=(), metadata=(MetaOp(Op.STAT, f"{STUDIO}/big"),))
    job = submit_batches(r, url, plan, [Batch(0, meta=plan.metadata)])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        state = job.state()
        if state is not None and state.final:
            return True
        time.sleep(0.05)
    return False


def submit_batches(r: Any, url: str, plan: Plan, batches: list[Batch]) -> WarmJob:
    """What `runner.submit` does, with batches of our making (for the overhead measurement)."""
    from prewarm.state.celery_app import CelerySender

    job = WarmJob.create(r, plan, batches, GATEWAY, MiB)
    dispatch.submit(r, job, GATEWAY, None, time.time())
    dispatch.refill(r, GATEWAY, Settings().dispatch_window, CelerySender(Settings(redis_url=url)).send)
    return job


@dataclass
class RssSampler:
    """Peak resident memory of a process, sampled every 50 ms while a warm runs."""

    pid: int
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssSampler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        proc = psutil.Process(self.pid)
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_files(origin: Path, sub: str, count: int, size: int) -> Plan:
    """Sparse origin files read whole by the plan (the twin reads them like real data)."""
    folder = origin / sub
    folder.mkdir(parents=True)
    ranges, files = [], {}
    for i in range(count):
        local = folder / f"f{i:05d}.bin"
        with open(local, "wb") as fh:
            fh.truncate(size)
        studio = f"{STUDIO}/{sub}/f{i:05d}.bin"
        st = local.stat()
        ranges.append(PlannedRange(studio, 0, size))
        files[studio] = FileInfo(studio, size, st.st_mtime)
    return Plan(job=f"bench-{sub}", frames=(1,), ranges=tuple(ranges), files=files, gateways=(GATEWAY,))


def settings_for(mount_big: Path, mount_small: Path, **kw: Any) -> Settings:
    pm = PathMap((Prefix(f"{STUDIO}/big", (), str(mount_big)), Prefix(f"{STUDIO}/small", (), str(mount_small))))
    return Settings(path_map=pm, roots=(STUDIO,), **kw)


def timed_celery(r: Any, url: str, plan: Plan, settings: Settings) -> tuple[float, JobInfo]:
    from prewarm.state.celery_app import CelerySender

    send = CelerySender(settings).send
    t0 = time.monotonic()
    job = runner.submit(r, plan, settings, send, GATEWAY)
    while True:
        state = job.state()
        if state is not None and state.final:
            break
        if time.monotonic() - t0 > STALL_S:
            raise SystemExit(f"celery warm of {plan.job} still {state} after {STALL_S}s: see the worker log")
        time.sleep(0.005)
    wall = time.monotonic() - t0
    info = job.info()
    assert info is not None
    if info.state is not JobState.DONE:
        raise SystemExit(f"celery warm of {plan.job} ended {info.state.value}: {info.findings[:3]}")
    return wall, info


# fio replaying a warm's reads


@dataclass(frozen=True)
class Layout:
    """A plan's reads in a tree: `files` files, `reads` reads of `size` bytes each, `stride` apart."""

    files: int
    reads: int
    size: int
    stride: int

    @property
    def file_bytes(self) -> int:
        return (self.reads - 1) * self.stride + self.size


def make_tree(origin: Path, layout: Layout, studio: str, gateways: tuple[str, ...] = ()) -> Plan:
    """Sparse files (holes read as zeros from the page cache) and the plan that reads them, built as columns."""
    origin.mkdir(parents=True, exist_ok=True)
    table = RangeTable()
    files: dict[str, FileInfo] = {}
    for i in range(layout.files):
        local = origin / f"d{i // 1000:03d}" / f"f{i:06d}.bin"
        local.parent.mkdir(exist_ok=True)
        with open(local, "wb") as fh:
            fh.truncate(layout.file_bytes)
        path = f"{studio}/{local.relative_to(origin)}"
        files[path] = FileInfo(path, layout.file_bytes, local.stat().st_mtime)
        for k in range(layout.reads):
            table.add(path, k * layout.stride, layout.size)
    return Plan(job=f"fio-{layout.files}x{layout.reads}", frames=(1,), ranges=table, files=files, gateways=gateways)


def iologs(plan: Plan, local_of: dict[str, Path], jobs: int, where: Path) -> list[Path]:
    """An iolog v2 per job: each file's reads, in plan order, in the log of job (file index mod jobs)."""
    where.mkdir(parents=True, exist_ok=True)
    logs = [where / f"shard{j:03d}.log" for j in range(jobs)]
    with ExitStack() as stack:
        outs = [stack.enter_context(open(p, "w")) for p in logs]
        for out in outs:
            out.write("fio version 2 iolog\n")
        current: dict[str, int] = {}
        table = plan.table
        for path, offset, length in table.spans():
            j = current.get(path)
            if j is None:
                j = current[path] = len(current) % jobs
                outs[j].write(f"{local_of[path]} add\n{local_of[path]} open\n")
            outs[j].write(f"{local_of[path]} read {offset} {length}\n")
        for path, j in current.items():
            outs[j].write(f"{local_of[path]} close\n")
    return logs


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float = 0.0
    first_read_s: float | None = None
    info: JobInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
                **({"peak_rss_growth_mb": round(self.peak_rss_mb, 1)} if self.peak_rss_mb else {}),
                **({"first_read_s": round(self.first_read_s, 4)} if self.first_read_s is not None else {})}


def run_fio(logs: list[Path], direct: bool, listed: list[Path]) -> Run:
    """fio's psync jobs (threads of one process) replaying the logs; wall and CPU of the whole fio.

    The folders prewarm lists before opening their files (`batches.LIST_DIR_MIN` or more of
    them) are listed first here too, 16 at once, inside fio's wall time: FUSE without
    parallel dirops serialises the LOOKUPs of one folder, and 1,000 files of one folder
    opened by fio alone cost 1,000 sequential round trips (73 s for 3,000 files at 30 ms),
    which would measure the twin's lookups, not the reads.
    """
    cmd = ["fio", "--thread", "--ioengine=psync", f"--direct={int(direct)}", "--output-format=json",
           "--group_reporting"]
    for i, log in enumerate(logs):
        cmd += [f"--name=s{i}", f"--read_iolog={log}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(os.listdir, listed))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"fio failed ({done.returncode}): {done.stderr[-2000:]}")
    data = json.loads(done.stdout[done.stdout.index("{"):])
    errors = sum(j.get("error", 0) for j in data["jobs"])
    if errors:
        raise SystemExit(f"fio jobs failed: {errors}")
    return Run(wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


@dataclass
class Peak:
    """Peak resident memory of this process above where it was, sampled every 20 ms."""

    base: int = 0
    peak: int = 0

    def __enter__(self) -> Peak:
        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_prewarm(plan: Plan, settings: Settings) -> Run:
    """An embedded warm at `settings`, its wall, its CPU (this process), peak memory and first read."""
    reader = FirstRead(site_reader(settings))
    before = resource.getrusage(resource.RUSAGE_SELF)
    with Peak() as peak:
        t0 = time.monotonic()
        info = run_embedded(plan, settings, reader=reader)
        wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    if info.state is not JobState.DONE:
        raise SystemExit(f"warm of {plan.job} ended {info.state.value}: {info.findings[:3]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Run(wall, cpu, (peak.peak - peak.base) / 1e6, None if reader.first is None else reader.first - t0, info)


def ratios(ours: Run, fio: Run) -> dict[str, float]:
    return {"wall": round(ours.wall_s / fio.wall_s, 3), "cpu": round(ours.cpu_s / fio.cpu_s, 3)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    missing = fuse_missing()
    if missing:
        raise SystemExit(f"the gateway twin needs FUSE: {missing}")
    work = Path(tempfile.mkdtemp(prefix="prewarm-bench-warm-"))
    twins: list[TwinHandle] = []
    out: dict[str, Any] = {"rtt_ms": args.rtt_ms, "mbps": args.mbps, "worker_concurrency": WORKER_CONCURRENCY,
                           "worker_in_flight": WORKER_IN_FLIGHT, "embedded_in_flight": EMBEDDED_IN_FLIGHT}
    try:
        origin = work / "origin"
        big_size = 16 * MiB
        big = make_files(origin, "big", max(1, args.big_mb * 10**6 // big_size), big_size)
        small = make_files(origin, "small", args.files, 64 * 1024)
        configs = {"big": TwinConfig(rtt_ms=args.rtt_ms, mbps=args.mbps, capacity=4 * GiB),
                   "small": TwinConfig(rtt_ms=args.rtt_ms, mbps=None, capacity=4 * GiB)}
        handles: dict[str, TwinHandle] = {}

        def fresh(kind: str) -> TwinHandle:
            """A newly mounted twin: cold gateway cache and cold kernel dentries and attributes."""
            old = handles.pop(kind, None)
            if old is not None:
                old.stop()
                twins.remove(old)
                shutil.rmtree(work / f"cache-{kind}", ignore_errors=True)
            handles[kind] = start_twin(origin / kind, work / f"mnt-{kind}", configs[kind],
                                       cache_dir=work / f"cache-{kind}", state_dir=work / "state")
            twins.append(handles[kind])
            return handles[kind]

        twin_big, twin_small = fresh("big"), fresh("small")
        base = settings_for(twin_big.mount, twin_small.mount)
        cap = args.mbps * 1e6

        def embedded(plan: Plan, kind: str) -> tuple[float, JobInfo, dict[str, Any]]:
            twin = fresh(kind)
            t0 = time.monotonic()
            info = run_embedded(plan, settings_for(twin_big.mount, twin_small.mount, in_flight=EMBEDDED_IN_FLIGHT))
            wall = time.monotonic() - t0
            if info.state is not JobState.DONE:
                raise SystemExit(f"embedded warm of {plan.job} ended {info.state.value}: {info.findings[:3]}")
            return wall, info, twin.stats()

        print(f"bytes: {big.bytes / 1e6:.0f} MB in {len(big.ranges)} files, embedded ...", file=sys.stderr)
        wall, info, st = embedded(big, "big")
        out["embedded_bytes"] = {"wall_s": round(wall, 3), "wan_bytes": st["wan_bytes"],
                                 "mb_s": round(st["wan_bytes"] / wall / 1e6, 2),
                                 "of_cap": round(st["wan_bytes"] / wall / cap, 3)}
        print(f"files: {len(small.ranges)} x 64 KiB, embedded ...", file=sys.stderr)
        wall, info, st = embedded(small, "small")
        out["embedded_files"] = {"wall_s": round(wall, 3), "files": info.counters["files_done"],
                                 "files_s": round(info.counters["files_done"] / wall, 1),
                                 "wan_bytes": st["wan_bytes"]}

        with services(work, twin_big.mount, twin_small.mount) as (url, worker_pid):
            r = connect(url)
            set_rate(r, GATEWAY, None)
            celery_settings = Settings(redis_url=url, granule=base.granule)
            with RssSampler(worker_pid) as rss:
                print("bytes: Celery ...", file=sys.stderr)
                twin = fresh("big")
                wall, info = timed_celery(r, url, big, celery_settings)
                st = twin.stats()
                out["celery_bytes"] = {"wall_s": round(wall, 3), "wan_bytes": st["wan_bytes"],
                                       "batches": info.batches, "mb_s": round(st["wan_bytes"] / wall / 1e6, 2),
                                       "of_cap": round(st["wan_bytes"] / wall / cap, 3)}
                print("files: Celery ...", file=sys.stderr)
                twin = fresh("small")
                wall_f, info_f = timed_celery(r, url, small, celery_settings)
                out["celery_files"] = {"wall_s": round(wall_f, 3), "files": info_f.counters["files_done"],
                                       "batches": info_f.batches,
                                       "files_s": round(info_f.counters["files_done"] / wall_f, 1),
                                       "wan_bytes": twin.stats()["wan_bytes"]}
                rate = parse_rate(args.throttle, "command line", "--throttle") or 0
                print(f"throttle: Celery at {args.throttle} ...", file=sys.stderr)
                twin = fresh("big")
                set_rate(r, GATEWAY, rate)
                # the same files again: forget they were warmed (the twin's cache was dropped)
                forget_gateway(r, GATEWAY)
                wall_t, _ = timed_celery(r, url, big, replace(celery_settings, throttle_bps=rate))
                got = twin.stats()["wan_bytes"] / wall_t
                out["throttle"] = {"set_mb_s": rate / 1e6, "got_mb_s": round(got / 1e6, 2),
                                   "ratio": round(got / rate, 3), "wall_s": round(wall_t, 3)}
                set_rate(r, GATEWAY, None)
            out["worker_peak_rss_mb"] = round(rss.peak / 1e6, 1)
            print("overhead: single-stat batches ...", file=sys.stderr)
            plan = Plan(job="overhead", frames=(), ranges=(), metadata=(MetaOp(Op.STAT, f"{STUDIO}/big"),))
            t0 = time.monotonic()
            job = submit_batches(r, url, plan, [Batch(i, meta=plan.metadata) for i in range(OVERHEAD_TASKS)])
            while not (job.state() or JobState.QUEUED).final:
                time.sleep(0.005)
            per_task = (time.monotonic() - t0) / OVERHEAD_TASKS
            cb = out["celery_bytes"]
            out["broker"] = {"per_task_ms": round(per_task * 1000, 2),
                             "tasks_s": round(1 / per_task, 1),
                             "bytes_warm_share": round(cb["batches"] * per_task / cb["wall_s"], 4),
                             "files_warm_share": round(out["celery_files"]["batches"] * per_task
                                                       / out["celery_files"]["wall_s"], 4)}
    finally:
        for t in twins:
            t.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


FIO_CASES = ("twin_plan", "twin_files", "local_100k", "local_1m")


def fio_cases(args: argparse.Namespace) -> dict[str, Any]:
    """The embedded warm at the default settings against fio replaying the same reads, case by case."""
    out: dict[str, Any] = {"fio_jobs_twin": FIO_TWIN_JOBS, "fio_jobs_local": FIO_LOCAL_JOBS}
    cases = {
        "twin_plan": (Layout(args.plan_files, 10, 16 * 1024, 32 * 1024), True),
        "twin_files": (Layout(args.files, 1, 64 * 1024, 64 * 1024), True),
        "local_100k": (Layout(1000, 100, 4096, 8192), False),
        "local_1m": (Layout(1000, 1000, 4096, 8192), False),
    }
    if args.quick:
        del cases["local_1m"]
    if args.cases:
        cases = {k: v for k, v in cases.items() if k in args.cases.split(",")}
    for name, (layout, twin) in cases.items():
        print(f"fio: {name}: {layout.files * layout.reads:,} reads over {layout.files:,} files ...", file=sys.stderr)
        out.update(fio_case(name, layout, twin, args))
    return out


class Tree:
    """A case's files: on tmpfs (page-cached), or behind a twin mounted anew for each run (cold)."""

    def __init__(self, work: Path, config: TwinConfig | None) -> None:
        self.work, self.config = work, config
        self.origin = work / "origin"
        self.handle: TwinHandle | None = None

    def fresh(self) -> Path:
        if self.config is None:
            return self.origin
        self.stop()
        self.handle = start_twin(self.origin, self.work / "mnt", self.config, cache_dir=self.work / "cache",
                                 state_dir=self.work / "state")
        return self.handle.mount

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.handle = None
            shutil.rmtree(self.work / "cache", ignore_errors=True)


def bare_first_read(tree: Tree, local: str, rtt_ms: float) -> dict[str, Any]:
    """The floor of the time to first read: a bare `open()` of the plan's first file on a cold twin
    (what `dd` or fio would do, no guard), timed to where its first read would be issued, with the
    requests the twin counted and the round trips it charged for them (its own request log)."""
    assert tree.handle is not None
    before = tree.handle.stats()["ops"]
    t0 = time.monotonic()
    fd = os.open(local, os.O_RDONLY | os.O_DIRECT)
    took = time.monotonic() - t0
    os.close(fd)
    after = tree.handle.stats()["ops"]
    asked = {op: {"requests": after[op]["requests"] - before[op]["requests"],
                  "wait_ms": round(after[op]["wait_ms"] - before[op]["wait_ms"], 1)}
             for op in after if after[op]["requests"] != before[op]["requests"]}
    return {"first_read_s": round(took, 4), "first_read_rtts": round(took / (rtt_ms / 1e3), 2), "twin_ops": asked}


def fio_case(name: str, layout: Layout, twin: bool, args: argparse.Namespace) -> dict[str, Any]:
    """fio, then prewarm at the default settings, on the same reads (each on a cold twin)."""
    work = Path(tempfile.mkdtemp(prefix="prewarm-bench-fio-", dir=None if twin else "/dev/shm"))
    config = TwinConfig(rtt_ms=args.rtt_ms, mbps=args.mbps if name == "twin_plan" else None,
                        capacity=4 * GiB) if twin else None
    tree = Tree(work, config)
    try:
        plan = make_tree(tree.origin, layout, STUDIO)
        base = tree.fresh()
        local_of = {p: base / os.path.relpath(p, STUDIO) for p in plan.files}
        per_dir = Counter(p.parent for p in local_of.values())
        listed = [d for d, n in per_dir.items() if n >= LIST_DIR_MIN]
        fio = run_fio(iologs(plan, local_of, FIO_TWIN_JOBS if twin else FIO_LOCAL_JOBS, work / "logs"), twin, listed)
        settings = Settings(path_map=PathMap((Prefix(STUDIO, (), str(tree.fresh())),)), roots=(STUDIO,))
        ours = run_prewarm(plan, settings)
        first_path = next(p for p, _, n in plan.table.spans() if n > 0)
        floor = bare_first_read(tree, str(tree.fresh() / os.path.relpath(first_path, STUDIO)), args.rtt_ms) \
            if twin else None
    finally:
        tree.stop()
        shutil.rmtree(work, ignore_errors=True)
    first = {"first_read_rtts": round(ours.first_read_s / (args.rtt_ms / 1e3), 2)} \
        if twin and ours.first_read_s is not None else {}
    return {f"fio_{name}": fio.to_json(),
            f"prewarm_{name}": {**ours.to_json(), "reads": len(plan.table), "in_flight": settings.in_flight,
                                "link": ours.info.link if ours.info is not None else None, **first},
            f"ratio_{name}": ratios(ours, fio), **({f"floor_{name}": floor} if floor is not None else {})}


def fio_table(res: dict[str, Any]) -> str:
    rows = [("case", "prewarm wall/CPU", "fio wall/CPU", "ratio wall/CPU", "first read (bare open)", "in flight")]
    for name in FIO_CASES:
        if f"ratio_{name}" not in res:
            continue
        ours, fio, ratio = res[f"prewarm_{name}"], res[f"fio_{name}"], res[f"ratio_{name}"]
        link = ours.get("link") or {}
        rows.append((name, f"{ours['wall_s']:.2f} s / {ours['cpu_s']:.2f} s",
                     f"{fio['wall_s']:.2f} s / {fio['cpu_s']:.2f} s", f"{ratio['wall']:.2f}x / {ratio['cpu']:.2f}x",
                     f"{ours.get('first_read_s', 0) * 1e3:.1f} ms" + (
                         f" ({res[f'floor_{name}']['first_read_s'] * 1e3:.1f} ms)" if f"floor_{name}" in res else ""),
                     f"{link.get('in_flight', '-')} "
                     f"(max {link.get('max_in_flight', '-')})"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def table(res: dict[str, Any]) -> str:
    rows = [
        ("link", f"{res['rtt_ms']} ms RTT, {res['mbps']} MB/s cap (files: latency only)", ""),
        ("embedded bytes", f"{res['embedded_bytes']['mb_s']} MB/s", f"{res['embedded_bytes']['of_cap']:.0%} of cap (>= 90%)"),
        ("celery bytes", f"{res['celery_bytes']['mb_s']} MB/s", f"{res['celery_bytes']['of_cap']:.0%} of cap (>= 90%)"),
        ("embedded files", f"{res['embedded_files']['files_s']} files/s", "(>= 1000)"),
        ("celery files", f"{res['celery_files']['files_s']} files/s", "(>= 1000)"),
        ("throttle", f"{res['throttle']['got_mb_s']} MB/s of {res['throttle']['set_mb_s']}",
         f"{res['throttle']['ratio']:.1%} of set (within 10%)"),
        ("worker peak RSS", f"{res['worker_peak_rss_mb']} MB", "(<= 150 MB)"),
        ("broker per task", f"{res['broker']['per_task_ms']} ms",
         f"share: bytes {res['broker']['bytes_warm_share']:.2%}, files {res['broker']['files_warm_share']:.2%} (< 5%)"),
    ]
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rtt-ms", type=float, default=30.0)
    p.add_argument("--mbps", type=float, default=50.0)
    p.add_argument("--big-mb", type=int, default=320, help="MB of big files for the bytes scenarios")
    p.add_argument("--files", type=int, default=10_000, help="64 KiB files for the files scenarios")
    p.add_argument("--throttle", default="20MB/s")
    p.add_argument("--plan-files", type=int, default=2000, help="files of the fio plan case (10 reads each)")
    p.add_argument("--only", choices=("engine", "fio"), help="only the engine scenarios, or only the fio comparison")
    p.add_argument("--cases", help=f"fio cases to run, comma-separated (default: all of {', '.join(FIO_CASES)})")
    p.add_argument("--quick", action="store_true", help="smaller plans (about a third of the time)")
    p.add_argument("--json", default=str(ROOT / "bench" / "out" / "warm.json"), metavar="FILE")
    args = p.parse_args(argv)
    if args.quick:
        args.big_mb, args.files, args.plan_files = 128, 3000, 600
    if fio_missing := shutil.which("fio") is None and args.only != "engine":
        raise SystemExit("fio is missing: run scripts/system-deps.sh (apt-get install fio)")
    res = run(args) if args.only != "fio" else {}
    if args.only != "engine" and not fio_missing:
        res.update(fio_cases(args))
    if args.only != "fio":
        print(table(res))
    if args.only != "engine":
        print(fio_table(res))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
