"""Replay recorded render frames against a mount and measure how long they wait on IO.

This is how a warm is judged: the same frames, replayed through a cold gateway and
through a warmed one, must wait less on reads. A frame's accesses keep their recorded
order within each thread (`Access.tid`), the frame's threads run concurrently, and
`nodes` frames run at once, as a farm whose render nodes each take the next frame:
the first `nodes` frames start together, which is the burst that fights for the link.

Files are opened once per frame (as a renderer's file cache does) and read with
`pread`; STAT and READDIR become `stat` and `listdir`. The filesystem calls are a
`ReplayIO` value, so the scheduling is tested with recording calls over real files.

A read's wait is the duration of its `pread` call and nothing else, but in one
Python process that duration also holds the wait for the interpreter lock after the
call returns: with 8 nodes of 5 threads in one process, all-hit frames on the twin
waited 3-4 times longer in total than with a process per node. `processes=True` runs
each render node as its own forked process, as render nodes are separate machines,
so a read only competes with its own frame's threads. What remains of the replay's
own cost is measured, not guessed: replaying frames a second time once everything
is cached gives the floor that a benchmark subtracts.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prewarm.plan.access import Access, Op


def _open_ro(path: str) -> int:
    return os.open(path, os.O_RDONLY)


@dataclass(frozen=True, slots=True)
class ReplayIO:
    """The calls a replay makes; the defaults are the real ones."""

    open: Callable[[str], int] = _open_ro
    pread: Callable[[int, int, int], bytes] = os.pread
    """`(fd, length, offset) -> bytes`, as `os.pread`."""
    close: Callable[[int], None] = os.close
    stat: Callable[[str], Any] = os.stat
    listdir: Callable[[str], list[str]] = os.listdir
    sleep: Callable[[float], None] = time.sleep
    """Only for pacing: the renderer's compute between two accesses."""


MIN_SLEEP_S = 0.001
"""Shorter gaps are owed, not slept: a sleep this short mostly measures the timer."""


class _Pacer:
    """Keeps one recorded thread's gaps between accesses: the renderer computing between reads.

    The gap before an access is its recorded time minus the previous one's, times
    `pace`, counted from when the previous call returned: a read that waits longer
    than recorded delays everything after it, as it would delay the renderer. The
    first gap is from the frame's first recorded access, so threads start staggered.
    """

    def __init__(self, pace: float, frame_t0: float | None, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:
        self._pace = pace
        self._prev_t = frame_t0
        self._clock = clock
        self._sleep = sleep
        self._due = clock()

    def before(self, a: Access) -> None:
        if not self._pace or a.t is None or self._prev_t is None:
            return
        self._due += max(0.0, a.t - self._prev_t) * self._pace
        self._prev_t = a.t
        lag = self._due - self._clock()
        if lag > MIN_SLEEP_S:
            self._sleep(lag)

    def after(self) -> None:
        self._due = max(self._due, self._clock())


@dataclass(slots=True)
class FrameResult:
    """What one frame cost. Wait times are sums over its threads, so they can exceed `wall_s`."""

    frame: int | None
    threads: int = 0
    reads: int = 0
    bytes_read: int = 0
    read_wait_s: float = 0.0
    """Sum of the durations of the frame's read calls: time the renderer sat waiting on data."""
    meta_ops: int = 0
    meta_wait_s: float = 0.0
    """Opens, stats and listings: each a WAN round trip on a cold gateway."""
    wall_s: float = 0.0
    started_s: float = 0.0
    """Start, in seconds after the replay began."""
    errors: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    """First error per mount path: a missing texture shows up here, not as a crash."""


@dataclass(slots=True)
class ReplayResult:
    frames: list[FrameResult]
    wall_s: float
    nodes: int

    @property
    def bytes_read(self) -> int:
        return sum(f.bytes_read for f in self.frames)

    @property
    def read_wait_s(self) -> float:
        return sum(f.read_wait_s for f in self.frames)

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.frames)


def group_frames(accesses: Iterable[Access]) -> list[list[Access]]:
    """Split a trace stream into frames, in frame order (accesses without a frame last), order kept."""
    frames: dict[int | None, list[Access]] = {}
    for a in accesses:
        frames.setdefault(a.frame, []).append(a)
    return [frames[k] for k in sorted(frames, key=lambda f: (f is None, f or 0))]


def split_threads(accesses: Sequence[Access]) -> list[list[Access]]:
    """One list per recorded thread, each in recorded order; threads in order of first appearance."""
    threads: dict[int | None, list[Access]] = {}
    for a in accesses:
        threads.setdefault(a.tid, []).append(a)
    return list(threads.values())


class _FrameFiles:
    """Descriptors opened once per frame and shared by its threads; one open per path even when racing."""

    def __init__(self, io: ReplayIO) -> None:
        self._io = io
        self._lock = threading.Lock()
        self._fds: dict[str, Future[int]] = {}

    def fd(self, path: str) -> int:
        with self._lock:
            fut = self._fds.get(path)
            owner = fut is None
            if fut is None:
                fut = self._fds[path] = Future()
        if owner:
            try:
                fut.set_result(self._io.open(path))
            except OSError as exc:
                fut.set_exception(exc)
        return fut.result()

    def close(self) -> None:
        for fut in self._fds.values():
            if fut.exception() is None:
                self._io.close(fut.result())


class _FrameRun:
    def __init__(self, result: FrameResult, io: ReplayIO, to_mount: Callable[[str], str],
                 clock: Callable[[], float], pace: float, frame_t0: float | None) -> None:
        self.result = result
        self._io = io
        self._to_mount = to_mount
        self._clock = clock
        self._pace = pace
        self._frame_t0 = frame_t0
        self._files = _FrameFiles(io)
        self._lock = threading.Lock()

    def run(self, threads: list[list[Access]]) -> None:
        try:
            if len(threads) == 1:
                self._thread(threads[0])
            else:
                workers = [threading.Thread(target=self._thread, args=(t,), name=f"replay-frame-{self.result.frame}")
                           for t in threads]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
        finally:
            self._files.close()

    def _thread(self, accesses: list[Access]) -> None:
        reads = nbytes = meta = errors = 0
        read_wait = meta_wait = 0.0
        failed: dict[str, str] = {}
        pacer = _Pacer(self._pace, self._frame_t0, self._clock, self._io.sleep)
        for a in accesses:
            if a.op is Op.READ and a.length <= 0:
                continue
            pacer.before(a)
            path = self._to_mount(a.path)
            is_read = a.op is Op.READ
            t0 = self._clock()
            try:
                if is_read:
                    fd = self._files.fd(path)
                    t0 = self._clock()  # the open is metadata, counted by the access that caused it
                    data = self._io.pread(fd, a.length, a.offset)
                    dt = self._clock() - t0  # the call alone: not even len() is timed
                    nbytes += len(data)
                else:
                    if a.op is Op.OPEN:
                        self._files.fd(path)
                    elif a.op is Op.STAT:
                        self._io.stat(path)
                    else:
                        self._io.listdir(path)
                    dt = self._clock() - t0
            except OSError as exc:
                dt = self._clock() - t0
                errors += 1
                failed.setdefault(path, f"{a.op.value}: {exc.strerror or exc}")
            pacer.after()
            if is_read:
                reads += 1
                read_wait += dt
            else:
                meta += 1
                meta_wait += dt
        with self._lock:
            r = self.result
            r.reads += reads
            r.bytes_read += nbytes
            r.read_wait_s += read_wait
            r.meta_ops += meta
            r.meta_wait_s += meta_wait
            r.errors += errors
            for p, msg in failed.items():
                r.failed.setdefault(p, msg)


def _run_frame(frame: list[Access], result: FrameResult, io: ReplayIO, to_mount: Callable[[str], str],
               clock: Callable[[], float], t_start: float, pace: float) -> FrameResult:
    threads = split_threads(frame)
    result.threads = len(threads)
    t0 = clock()
    result.started_s = t0 - t_start
    frame_t0 = min((a.t for a in frame if a.t is not None), default=None)
    _FrameRun(result, io, to_mount, clock, pace, frame_t0).run(threads)
    result.wall_s = clock() - t0
    return result


_Job = tuple[list[list[Access]], list[FrameResult], ReplayIO, Callable[[str], str], Callable[[], float], float, float]
_node_job: _Job | None = None
"""In a forked node process: the replay it belongs to, inherited at fork, never pickled."""


def _adopt(job: _Job) -> None:
    global _node_job
    _node_job = job


def _frame_in_node(i: int) -> FrameResult:
    assert _node_job is not None, "run only in a node process"
    frames, results, io, to_mount, clock, t_start, pace = _node_job
    return _run_frame(frames[i], results[i], io, to_mount, clock, t_start, pace)


def replay_frames(frames: Iterable[Sequence[Access]], to_mount: Callable[[str], str], *, nodes: int = 1,
                  io: ReplayIO | None = None, clock: Callable[[], float] = time.perf_counter,
                  processes: bool = False, pace: float = 0.0) -> ReplayResult:
    """Replay `frames` (each a list of one frame's accesses, studio paths) through `to_mount`.

    Results come back in input order whatever order the frames finished in. With
    `processes`, each node is a forked process (the clock must be one that processes
    share, as `perf_counter` is on Linux); `io` calls then run in those processes.
    `pace` 0 replays each thread's accesses back to back; 1 keeps the recorded gaps
    between them (`Access.t`), the renderer's compute, so reads arrive as spread out
    as they did and a 2-core bench box is not a farm of tight loops fighting for CPU.
    """
    if nodes < 1:
        raise ValueError("nodes must be at least 1")
    io = io or ReplayIO()
    frame_list = [list(f) for f in frames]
    results = [FrameResult(frame=f[0].frame if f else None) for f in frame_list]
    t_start = clock()
    if processes:
        job: _Job = (frame_list, results, io, to_mount, clock, t_start, pace)
        with multiprocessing.get_context("fork").Pool(nodes, initializer=_adopt, initargs=(job,)) as pool:
            results = pool.map(_frame_in_node, range(len(frame_list)), chunksize=1)
        return ReplayResult(frames=results, wall_s=clock() - t_start, nodes=nodes)
    with ThreadPoolExecutor(max_workers=nodes, thread_name_prefix="replay-node") as threads:
        for fut in [threads.submit(_run_frame, frame_list[i], results[i], io, to_mount, clock, t_start, pace)
                    for i in range(len(frame_list))]:
            fut.result()
    return ReplayResult(frames=results, wall_s=clock() - t_start, nodes=nodes)
