"""prewarm's warm engine against fio replaying exactly the same reads, in the same run.

fio is the reference I/O engine: `psync` jobs (one `pread` at a time each, as prewarm's
reader threads issue them), one iolog v2 per job, each job replaying the reads of its
share of the plan's files in plan order. Its wall time and CPU are what the system calls
cost; prewarm's ratio to them is what its engine adds. Imported by `bench/warm.py`.
"""

from __future__ import annotations

import json
import resource
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from prewarm.plan.model import FileInfo, Plan, RangeTable
from prewarm.site.settings import Settings
from prewarm.warm.embedded import run_embedded
from prewarm.warm.job import JobInfo, JobState
from prewarm.warm.reader import OpenFile, Reader, site_reader


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


def run_fio(logs: list[Path], direct: bool) -> Run:
    """fio's psync jobs (threads of one process) replaying the logs; wall and CPU of the whole fio."""
    cmd = ["fio", "--thread", "--ioengine=psync", f"--direct={int(direct)}", "--output-format=json",
           "--group_reporting"]
    for i, log in enumerate(logs):
        cmd += [f"--name=s{i}", f"--read_iolog={log}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
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


class FirstRead:
    """The site's reader, noting when the first read is issued (time to first read after the start)."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.first: float | None = None
        self._lock = threading.Lock()

    def refusal(self, path: str) -> str | None:
        return self.inner.refusal(path)

    def stat(self, path: str) -> None:
        self.inner.stat(path)

    def listdir(self, path: str) -> int:
        return self.inner.listdir(path)

    def open(self, path: str) -> OpenFile:
        handle = self.inner.open(path)
        if self.first is not None:
            return handle
        outer = self

        class Noting:
            size, mtime, regular = handle.size, handle.mtime, handle.regular

            def read(self, offset: int, length: int) -> int:
                if outer.first is None:
                    with outer._lock:
                        outer.first = outer.first or time.monotonic()
                return handle.read(offset, length)

            def identity(self) -> tuple[int, float]:
                return handle.identity()

            def close(self) -> None:
                handle.close()

        return Noting()


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
