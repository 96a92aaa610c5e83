"""Frame replay: scheduling over real files with recording calls, then against the real twin."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from prewarm.plan.access import Access, Op
from prewarm.testkit.replay import (
    ReplayIO,
    ReplayResult,
    group_frames,
    replay_frames,
    split_threads,
)
from tests.fixtures.twin import StartTwin

STUDIO = "/studio/proj"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "tex").mkdir(parents=True)
    for name in ("a.tx", "b.tx", "c.tx"):
        (root / "tex" / name).write_bytes(os.urandom(64 * 1024))
    return root


def mapper(root: Path) -> Callable[[str], str]:
    return lambda p: str(root) + p[len(STUDIO):]


class Recorder:
    """The real calls, recording which thread made each, with an optional hook before a read."""

    def __init__(self, before_read: Callable[[int, int], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int, Any]] = []
        self.fd_paths: dict[int, str] = {}
        self.before_read = before_read

    def _log(self, kind: str, arg: Any) -> None:
        with self.lock:
            self.calls.append((kind, threading.get_ident(), arg))

    def io(self) -> ReplayIO:
        def open_(path: str) -> int:
            fd = os.open(path, os.O_RDONLY)
            self.fd_paths[fd] = path
            self._log("open", path)
            return fd

        def pread(fd: int, n: int, off: int) -> bytes:
            if self.before_read:
                self.before_read(n, off)
            self._log("read", (os.path.basename(self.fd_paths[fd]), off))
            return os.pread(fd, n, off)

        def close(fd: int) -> None:
            self._log("close", self.fd_paths[fd])
            os.close(fd)

        def stat(path: str) -> os.stat_result:
            self._log("stat", path)
            return os.stat(path)

        def listdir(path: str) -> list[str]:
            self._log("listdir", path)
            return os.listdir(path)

        return ReplayIO(open=open_, pread=pread, close=close, stat=stat, listdir=listdir)


def acc(name: str, offset: int = 0, length: int = 100, frame: int = 1, tid: int | None = 1,
        op: Op = Op.READ) -> Access:
    return Access(path=f"{STUDIO}/tex/{name}", op=op, offset=offset, length=length, frame=frame, tid=tid)


def test_each_threads_reads_keep_their_order_and_threads_run_together(tree: Path) -> None:
    barrier = threading.Barrier(2, timeout=10)
    rec = Recorder(before_read=lambda n, off: barrier.wait() if off == 0 else None)
    frame = [acc("a.tx", 0, tid=1), acc("b.tx", 0, tid=2), acc("a.tx", 100, tid=1),
             acc("b.tx", 100, tid=2), acc("a.tx", 200, tid=1)]
    result = replay_frames([frame], mapper(tree), io=rec.io())
    # Both threads' first reads met at the barrier: they ran concurrently.
    reads = [c for c in rec.calls if c[0] == "read"]
    by_thread: dict[int, list[tuple[str, int]]] = {}
    for _, ident, arg in reads:
        by_thread.setdefault(ident, []).append(arg)
    assert sorted(by_thread.values()) == [[("a.tx", 0), ("a.tx", 100), ("a.tx", 200)], [("b.tx", 0), ("b.tx", 100)]]
    (f,) = result.frames
    assert (f.threads, f.reads, f.bytes_read, f.errors) == (2, 5, 500, 0)


def test_files_are_opened_once_per_frame_and_closed_at_its_end(tree: Path) -> None:
    rec = Recorder()
    frames = [[acc("a.tx", i * 10, frame=fr, tid=t) for i in range(3) for t in (1, 2, 3)] for fr in (1, 2)]
    replay_frames(frames, mapper(tree), io=rec.io())
    opens = [c for c in rec.calls if c[0] == "open"]
    closes = [c for c in rec.calls if c[0] == "close"]
    assert len(opens) == 2 and len(closes) == 2
    kinds = [c[0] for c in rec.calls]
    assert kinds.index("close") < len(kinds) - 1 - kinds[::-1].index("open")  # frame 1 closed before frame 2 opened


def test_nodes_frames_start_together(tree: Path) -> None:
    barrier = threading.Barrier(3, timeout=10)
    rec = Recorder(before_read=lambda n, off: barrier.wait() if off == 0 else None)
    frames = [[acc("abc"[i] + ".tx", 0, frame=i + 1), acc("abc"[i] + ".tx", 50, frame=i + 1)] for i in range(3)]
    result = replay_frames(frames, mapper(tree), nodes=3, io=rec.io())
    assert [f.frame for f in result.frames] == [1, 2, 3]
    assert result.nodes == 3 and result.bytes_read == 600


def test_one_node_runs_frames_one_after_another(tree: Path) -> None:
    rec = Recorder()
    frames = [[acc("a.tx", 0, frame=1), acc("a.tx", 10, frame=1)], [acc("b.tx", 0, frame=2)]]
    replay_frames(frames, mapper(tree), nodes=1, io=rec.io())
    assert [c[0] for c in rec.calls] == ["open", "read", "read", "close", "open", "read", "close"]


def test_stat_readdir_and_missing_files(tree: Path) -> None:
    rec = Recorder()
    frame = [Access(path=f"{STUDIO}/tex", op=Op.READDIR, frame=1), acc("a.tx", op=Op.STAT, length=0),
             acc("gone.tx", 0), acc("gone.tx", 100), acc("a.tx", 0, length=10)]
    (f,) = replay_frames([frame], mapper(tree), io=rec.io()).frames
    assert [c[0] for c in rec.calls] == ["listdir", "stat", "open", "read", "close"]
    assert (f.meta_ops, f.reads, f.bytes_read, f.errors) == (2, 3, 10, 2)
    assert list(f.failed) == [str(tree / "tex" / "gone.tx")]
    assert "No such file" in f.failed[str(tree / "tex" / "gone.tx")]


def test_read_wait_is_the_sum_of_read_call_times(tree: Path) -> None:
    now = [0.0]
    rec = Recorder(before_read=lambda n, off: now.__setitem__(0, now[0] + 0.25))
    frame = [acc("a.tx", i * 100) for i in range(4)]
    result = replay_frames([frame], mapper(tree), io=rec.io(), clock=lambda: now[0])
    (f,) = result.frames
    assert f.read_wait_s == pytest.approx(1.0) and f.wall_s == pytest.approx(1.0)
    assert result.read_wait_s == pytest.approx(1.0)


def test_grouping_by_frame_and_thread_keeps_recorded_order() -> None:
    stream = [acc("a.tx", 1, frame=2, tid=5), acc("a.tx", 2, frame=1, tid=7), acc("b.tx", 3, frame=None),
              acc("a.tx", 4, frame=2, tid=6), acc("a.tx", 5, frame=2, tid=5)]
    frames = group_frames(stream)
    assert [[a.offset for a in f] for f in frames] == [[2], [1, 4, 5], [3]]
    assert [[a.offset for a in t] for t in split_threads(frames[1])] == [[1, 5], [4]]


def test_rejects_zero_nodes(tree: Path) -> None:
    with pytest.raises(ValueError):
        replay_frames([], mapper(tree), nodes=0)


@pytest.mark.integration
def test_replay_through_the_twin_reads_exactly_the_recorded_ranges(gateway_twin: StartTwin, tree: Path) -> None:
    twin = gateway_twin(tree, rtt_ms=5, mbps=None, log_reads=True)
    def to_mount(p: str) -> str:
        return str(twin.mount) + p[len(STUDIO):]

    frames = [[acc("a.tx", 0, 4096, frame=1, tid=1), acc("b.tx", 8192, 1000, frame=1, tid=2),
               Access(path=f"{STUDIO}/tex", op=Op.READDIR, frame=1)],
              [acc("a.tx", 4096, 4096, frame=2, tid=1), acc("c.tx", 0, 88, frame=2, tid=1)]]
    cold = replay_frames(frames, to_mount, nodes=2)
    assert cold.errors == 0 and cold.bytes_read == 4096 + 1000 + 4096 + 88
    assert sorted(twin.reads()) == [("/tex/a.tx", 0, 4096), ("/tex/a.tx", 4096, 4096),
                                    ("/tex/b.tx", 8192, 1000), ("/tex/c.tx", 0, 88)]
    wan = twin.stats()["wan_bytes"]
    warm = replay_frames(frames, to_mount, nodes=2)
    assert warm.bytes_read == cold.bytes_read
    assert twin.stats()["wan_bytes"] == wan


def test_nodes_as_processes_give_the_same_results_in_input_order(tree: Path) -> None:
    frames = [[acc("abc"[i % 3] + ".tx", j * 1000, length=500 + i, frame=i + 1, tid=j % 2) for j in range(6)]
              + [acc("gone.tx", 0, frame=i + 1)] for i in range(5)]
    threaded = replay_frames(frames, mapper(tree), nodes=3)
    forked = replay_frames(frames, mapper(tree), nodes=3, processes=True)
    def key(r: ReplayResult) -> list[tuple[object, ...]]:
        return [(f.frame, f.threads, f.reads, f.bytes_read, f.errors, sorted(f.failed)) for f in r.frames]

    assert key(forked) == key(threaded)
    assert [f.frame for f in forked.frames] == [1, 2, 3, 4, 5] and forked.errors == 5
    assert all(f.read_wait_s > 0 and f.wall_s > 0 for f in forked.frames)


@pytest.mark.integration
def test_forked_nodes_read_exactly_the_recorded_ranges_through_the_twin(gateway_twin: StartTwin, tree: Path) -> None:
    twin = gateway_twin(tree, rtt_ms=5, mbps=None, log_reads=True)
    to_mount = mapper(twin.mount)
    frames = [[acc("a.tx", 0, 4096, frame=1, tid=1), acc("b.tx", 8192, 1000, frame=1, tid=2)],
              [acc("a.tx", 4096, 4096, frame=2, tid=1), acc("c.tx", 0, 88, frame=2, tid=1)]]
    result = replay_frames(frames, to_mount, nodes=2, processes=True)
    assert result.errors == 0 and result.bytes_read == 4096 + 1000 + 4096 + 88
    assert sorted(twin.reads()) == [("/tex/a.tx", 0, 4096), ("/tex/a.tx", 4096, 4096),
                                    ("/tex/b.tx", 8192, 1000), ("/tex/c.tx", 0, 88)]


def test_pacing_keeps_recorded_gaps_after_each_call_returns_and_never_counts_them_as_wait(tree: Path) -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(round(s, 6))
        now[0] += s

    def slow_pread(fd: int, n: int, off: int) -> bytes:
        now[0] += 0.005 if off == 200 else 0.0  # this read waits 5 ms longer than recorded
        return os.pread(fd, n, off)

    io = ReplayIO(pread=slow_pread, sleep=sleep)
    frame = [replace(acc("a.tx", off), t=t) for off, t in ((0, 10.0), (100, 10.020), (150, 10.0204), (200, 10.0208),
                                                         (300, 10.030))]
    (f,) = replay_frames([frame], mapper(tree), io=io, clock=lambda: now[0], pace=1.0).frames
    # 20 ms before the 2nd read; 0.4 + 0.4 ms owed but not slept; the read at 200 waited
    # 5 ms, which the renderer would not compute again: 9.2 ms before the last read.
    assert slept == [0.02, 0.0092]
    assert f.read_wait_s == pytest.approx(0.005) and f.reads == 5
    slept.clear()
    assert replay_frames([frame], mapper(tree), io=io, clock=lambda: now[0]).frames[0].reads == 5
    assert slept == []  # pace 0: back to back


def test_pacing_starts_a_frames_threads_as_staggered_as_recorded(tree: Path) -> None:
    slept: list[float] = []
    io = ReplayIO(sleep=slept.append)
    frame = [replace(acc("a.tx", 0, tid=1), t=10.0), replace(acc("b.tx", 0, tid=2), t=10.5)]
    assert replay_frames([frame], mapper(tree), io=io, pace=2.0).frames[0].reads == 2
    assert slept == [pytest.approx(1.0, abs=0.01)]


def test_pacing_ignores_accesses_without_time_stamps(tree: Path) -> None:
    slept: list[float] = []
    io = ReplayIO(sleep=slept.append)
    frame = [acc("a.tx", 0), replace(acc("a.tx", 100), t=5.0), acc("a.tx", 200)]
    assert replay_frames([frame], mapper(tree), io=io, pace=1.0).frames[0].reads == 3
    assert slept == []
