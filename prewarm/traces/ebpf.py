"""The eBPF recorder: a render's reads counted in kernel maps, written as JSON Lines.

strace stops the traced process twice per system call it follows (19x on a loop of 4 KiB
`pread64`s); an eBPF program runs inside the calls and stops nothing. The program
(`recorder.bpf.c`, beside this file) is compiled by clang when a record starts and loaded
by libbpf (`prewarm.traces.libbpf`): libbpf moves the kernel structure fields it reads to
this kernel's offsets from the kernel's BTF, so one source serves every kernel with BTF.

What it costs a render is what decides the design:

* Everything is seen at a call's entry, on the BTF-typed raw `sys_enter` tracepoint, which
  hands the program the call's registers. The `syscalls:sys_enter_pread64` tracepoint that
  bpftrace attaches to copies every call's arguments into a perf buffer first: with an EMPTY
  program there a pread loop ran 1.38x slower (2.0x on 8 threads), on the raw tracepoint
  1.12x; any `sys_exit` hook would put every call of the machine through the exit path too
  (about +50 ns a call). A read of a regular file returns `min(count, size - offset)` bytes,
  so its entry says what its exit would (a vectored read's length is its first 64 buffers').
* Reads are not sent to user space one by one: each distinct read, `(device, inode,
  offset, length)`, is kept once in a kernel hash map (the same tile read again costs a
  lookup) that user space empties every `DRAIN_MS`. Reads keep their exact offsets, not only
  their 4 KiB blocks: the texture planner matches reads to tile offsets. Opens, stats,
  listings and directory changes are rarer and go through a ring buffer, names whole (up to
  PATH_MAX).
* Only the render's process tree: an array by pid (`tracked`, pid_max entries: a lookup
  without a hash) holds a generation for each of the render's processes; it starts with the
  wrapper's pid (the command waits on a pipe until the program is attached, so nothing is
  missed), grows on `sched_process_fork` and shrinks on `sched_process_exit`. Other
  processes cost a lookup per traced call and are not recorded.
* A descriptor is looked up in the calling task's own descriptor table once per descriptor
  and generation: the `struct file` gives the inode and the *file's real position*. So
  `dup`/`dup2`/`dup3`, descriptors inherited across fork, `close` and reuse of a number,
  `lseek` (any whence) and a `read`'s advance are what the kernel says they are, where the
  strace importer has to follow them from the log. The generation changes when a call that
  may make a number name another file (close, dup2, dup3, close_range, exec) starts, so a
  cached descriptor is not taken for the file it named before (a thread that reads a
  descriptor while another closes it, a race in the render, may count against the closing
  file); the last descriptor each CPU used is kept beside the cache (a loop of reads of one
  file skips the hash), and so are the last 16,384 reads each CPU saw (a read made again
  skips the read map).
* Files are named by their inode. An open, stat or `chdir` sends its name and the inode of
  the directory it is relative to (the `dirfd`'s, or the working directory's for
  `AT_FDCWD`); user space joins it to that directory's path (learned when the directory was
  opened, or the command's starting directory), resolves symlinks as strace's `-y` does, and
  asks the file system what it names: its inode, or nothing (a failed call, left out).
* Files opened for writing, truncation or exclusive creation are the render's outputs and
  left out, as the strace importer leaves them out; `mmap` of a file is a read of the mapped
  region (the importer's rule, and `prewarm record` asks strace for `mmap` too, so both
  records hold the same blocks).

Memory: the kernel maps are fixed when the program loads (`kernel_bytes()` reads their size
back): distinct reads (`MAP_KEYS`), the descriptor cache (least recently used entries give
way), the per-CPU caches, the pid array and the event ring. A read map that
fills within one drain interval drops new reads; each refused insert is counted
(`lost_runs`), as are events a full ring refused (`lost_events`). User space keeps one path
per distinct file opened, at most `MAX_FILES` of them, and no reads: every drain is written
out at once. So the recorder's memory does not grow with the number of reads or the length
of the render, only with the number of distinct files, up to the cap.
"""

from __future__ import annotations

import ctypes
import os
import platform
import posixpath
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import orjson

from prewarm.traces.libbpf import Libbpf, LibbpfError, Loaded, Ring, library, load

__all__ = ["RECORDERS", "EbpfRecorder", "EbpfStats", "EbpfUnavailable", "available", "compile_program",
           "kernel_dev"]

RECORDERS = ("ebpf", "strace")
"""What `prewarm record --with` takes (here, not in `record`, so the CLI names them without loading the store)."""

SOURCE = Path(__file__).with_name("recorder.bpf.c")
"""The program, compiled at each record's start (about 0.1 s)."""

DRAIN_MS = 500
"""How often the kernel's read map is read out and emptied."""

MAP_KEYS = 1 << 18
"""Distinct reads the kernel map holds between drains: 262,144 per half second, more than the
200,000-pread loop of the bench makes in that time."""

FD_KEYS = 1 << 16
"""Descriptors cached (process, number): least recently used give way."""

RING_BYTES = 1 << 22
"""The event ring (4 MiB): opens, stats and listings between two reads of it (every 100 ms)."""

MAX_PIDS = 1 << 22
"""The most pids the tracked array is sized for (Linux's own limit; the array takes pid_max entries)."""

MAX_FILES = 1 << 20
"""Distinct files user space names (about 200 bytes each): a render that opens more has
the reads of the rest counted as unnamed, and the recorder stays bounded."""

MAX_PENDING = 1 << 18
"""Drained reads user space holds until their file's open event is read, about 100 bytes each;
beyond it they count as unnamed."""

_BATCH = 8192
"""Entries taken from the read map per system call when it is drained."""

_OUTPUT_FLAGS = 0o1 | 0o1000 | 0o200
"""O_WRONLY, O_TRUNC, O_EXCL: the strace importer's rule for a render's own output."""

_EVENT = struct.Struct("<IIQQQQQ")
"""`struct event`'s head in recorder.bpf.c: kind, pid, dev, ino, bdev, bino, flags; the name follows."""

_EV_OPEN, _EV_STAT, _EV_DIR, _EV_CHDIR = 1, 2, 3, 4

_ASM_HEADERS = "/usr/include/x86_64-linux-gnu"
"""Where Debian keeps `asm/types.h`, which the kernel's UAPI headers include (harmless where absent)."""

_HELPERS = "/usr/include/bpf/bpf_helpers.h"

_TRACEFS = "/sys/kernel/tracing"


class EbpfUnavailable(RuntimeError):
    """The machine cannot run the recorder (not root, no clang or libbpf, no BTF, no tracefs), or its
    program did not load."""


@dataclass
class EbpfStats:
    """What the recorder saw and what it could not account for."""

    runs: int = 0
    """Distinct reads drained from the kernel."""
    lost_runs: int = 0
    """Reads a full kernel map could not take."""
    lost_events: int = 0
    """Opens, stats and listings the full event ring could not take."""
    unnamed: int = 0
    """Runs and calls on files whose path could not be told."""
    files: int = 0
    """Distinct files named."""
    kernel_bytes: int = 0
    """The program's kernel maps, as the kernel charges them (fixed when it loads)."""


def _has_caps() -> bool:
    """Root, or CAP_BPF (39) and CAP_PERFMON (38) in the effective set."""
    if os.geteuid() == 0:
        return True
    with suppress(OSError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
                return bool(eff >> 39 & 1 and eff >> 38 & 1)
    return False


def _tracefs() -> str | None:
    """Why tracefs is not there (after trying to mount it), or None when it is."""
    if os.path.isdir(f"{_TRACEFS}/events") or os.path.isdir("/sys/kernel/debug/tracing/events"):
        return None
    try:
        subprocess.run(["mount", "-t", "tracefs", "nodev", _TRACEFS], capture_output=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return f"tracefs is not mounted and could not be (mount -t tracefs nodev {_TRACEFS})"
    return None if os.path.isdir(f"{_TRACEFS}/events") else f"no syscall tracepoints under {_TRACEFS}"


def available() -> str | None:
    """Why this machine cannot record with eBPF, or None when it can."""
    if platform.machine() != "x86_64":
        return f"the recorder's program knows x86_64's system calls, not {platform.machine()}'s"
    if shutil.which("clang") is None or not os.path.exists(_HELPERS):
        return "clang and libbpf's headers are not installed (apt-get install clang libbpf-dev)"
    if library() is None:
        return "libbpf is not installed (apt-get install libbpf1)"
    if not _has_caps():
        return "needs root or CAP_BPF and CAP_PERFMON"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "the kernel has no BTF (/sys/kernel/btf/vmlinux): descriptors cannot be looked up"
    return _tracefs()


def compile_program(folder: str, floor: bool = False) -> str:
    """The program compiled into `folder`: its object's path. `floor` builds the same programs on the
    same tracepoints returning at once (`bench/capture.py`'s floor: what attaching them costs)."""
    out = os.path.join(folder, "recorder.bpf.o")
    argv = ["clang", "-O2", "-g", "-target", "bpf", "-Wall", "-Wno-unused-function", f"-I{_ASM_HEADERS}",
            *(["-DFLOOR"] if floor else []), "-c", str(SOURCE), "-o", out]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise EbpfUnavailable(f"clang could not compile the program: {exc}") from exc
    if done.returncode != 0:
        first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip()[:200])
        raise EbpfUnavailable(f"clang could not compile the program: {first[:300]}")
    return out


def _pid_max() -> int:
    with suppress(OSError, ValueError):
        return min(MAX_PIDS, int(Path("/proc/sys/kernel/pid_max").read_text()))
    return MAX_PIDS


def kernel_bytes(loaded: Loaded) -> int:
    """What the kernel charges for the program's maps (their `memlock` in /proc/self/fdinfo)."""
    total = 0
    for fd in loaded.map_fds():
        with suppress(OSError, ValueError), open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as fh:
            total += next((int(line.split()[1]) for line in fh if line.startswith("memlock:")), 0)
    return total


def kernel_dev(st_dev: int) -> int:
    """A user-space device number as the kernel's `s_dev` holds it (major << 20 | minor)."""
    return os.major(st_dev) << 20 | os.minor(st_dev)


@dataclass
class _Names:
    """Paths of the inodes the render opened, and of the directories names are relative to."""

    keep: Callable[[str], bool] | None
    files: dict[tuple[int, int], str | None] = field(default_factory=dict)
    dirs: dict[tuple[int, int], str] = field(default_factory=dict)
    outputs: set[str] = field(default_factory=set)

    def kept(self, path: str) -> bool:
        return path not in self.outputs and (self.keep is None or self.keep(path))

    def base(self, pid: int, dev: int, ino: int) -> str | None:
        """The directory a relative name is joined to: one the render opened, else its working directory."""
        known = self.dirs.get((dev, ino))
        if known is not None:
            return known
        with suppress(OSError):
            cwd = os.readlink(f"/proc/{pid}/cwd")
            st = os.stat(cwd)
            if (kernel_dev(st.st_dev), st.st_ino) == (dev, ino):
                self.dirs[(dev, ino)] = cwd
                return cwd
        return None

    def full(self, pid: int, dev: int, ino: int, name: str) -> str | None:
        if name.startswith("/"):
            return name
        base = self.base(pid, dev, ino) if name else self.files.get((dev, ino)) or self.dirs.get((dev, ino))
        if base is None:
            return None
        return posixpath.join(base, name) if name else base


_WRAPPER = "import os, sys\nos.read(int(sys.argv[1]), 1)\nos.close(int(sys.argv[1]))\n" \
           "try:\n    os.execv(sys.argv[2], sys.argv[2:])\nexcept OSError as exc:\n" \
           "    print(f'prewarm record: {sys.argv[2]}: {exc.strerror}', file=sys.stderr)\n    os._exit(127)\n"
"""What the render starts as: it waits until the program is attached and following it, then
becomes the command (same pid), so the program follows it from its first call."""

_POLL_MS = 100
"""How long the reader waits on the event ring before it looks at the clock for the next drain."""


class EbpfRecorder:
    """The program loaded for one render, what it sees turned into JSON Lines on `out`.

    `start(argv)` compiles and loads the program, then starts the render behind a wrapper that
    waits until the program follows it, and returns the render's process; `stop()` (once the
    render has exited) reads the last events and reads, detaches the program and returns what
    was seen. Killed, the process takes the program with it: nothing is pinned.
    """

    def __init__(self, out: IO[bytes], keep: Callable[[str], bool] | None, floor: bool = False) -> None:
        self.out = out
        self.names = _Names(keep)
        self.stats = EbpfStats()
        self.floor = floor
        self._loaded: Loaded | None = None
        self._ring: Ring | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pending: list[tuple[int, int, int, int, int]] = []
        self._keys = (ctypes.c_uint64 * (4 * _BATCH))()  # `struct rkey`: dev, ino, off, len
        self._values = (ctypes.c_uint64 * _BATCH)()
        self._clock = time.time() - time.monotonic()
        cwd = os.getcwd()
        st = os.stat(cwd)
        self.names.dirs[(kernel_dev(st.st_dev), st.st_ino)] = os.path.realpath(cwd)

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """The render, started once the program follows it; EbpfUnavailable (and nothing started) if it cannot be."""
        try:
            bpf = Libbpf()
            with tempfile.TemporaryDirectory(prefix="prewarm-ebpf-") as tmp:
                self._loaded = load(bpf, compile_program(tmp, self.floor),
                                    {"tracked": _pid_max(), "fds": FD_KEYS, "reads": MAP_KEYS, "events": RING_BYTES})
            self._ring = Ring(bpf, self._loaded.map_fd("events"), self._event)
        except LibbpfError as exc:
            self._close()
            raise EbpfUnavailable(f"the eBPF program could not load: {exc}") from exc
        self.stats.kernel_bytes = kernel_bytes(self._loaded)
        gate_r, gate_w = os.pipe()
        try:
            render = subprocess.Popen([sys.executable, "-c", _WRAPPER, str(gate_r), *argv], pass_fds=(gate_r,))
        finally:
            os.close(gate_r)
        try:
            self._loaded.update("tracked", ctypes.c_uint32(render.pid), ctypes.c_uint64(time.monotonic_ns()))
        except LibbpfError as exc:
            os.close(gate_w)  # closed without a byte: the wrapper exits before running anything
            render.wait()
            self._close()
            raise EbpfUnavailable(f"the eBPF program cannot follow the render: {exc}") from exc
        self._thread = threading.Thread(target=self._read, name="prewarm-ebpf", daemon=True)
        self._thread.start()
        os.write(gate_w, b"g")
        os.close(gate_w)
        return render

    def stop(self) -> EbpfStats:
        """Read what is left (the render has exited: all its events are in the ring), detach, write the last reads."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._ring is not None and self._loaded is not None:
            self._ring.consume()
            self._drain()
            for i, name in ((0, "lost_runs"), (1, "lost_events")):
                n = ctypes.c_uint64(0)
                if self._loaded.lookup("lost", ctypes.c_uint32(i), n):
                    setattr(self.stats, name, n.value)
        self._close()
        pending, self._pending = self._pending, []
        self._write_runs(pending, final=True)
        self.stats.files = sum(1 for p in self.names.files.values() if p is not None)
        return self.stats

    def _close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

    def _read(self) -> None:
        """Events as they come, the read map every DRAIN_MS, until `stop`."""
        assert self._ring is not None
        due = time.monotonic() + DRAIN_MS / 1e3
        while not self._stop.is_set():
            self._ring.poll(_POLL_MS)
            if time.monotonic() >= due:
                self._drain()
                due = time.monotonic() + DRAIN_MS / 1e3

    def _drain(self) -> None:
        """The read map emptied: its reads written (events read first, so their files are named)."""
        assert self._loaded is not None
        while True:
            n, end = self._loaded.drain("reads", self._keys, self._values, _BATCH)
            if n:
                keys = np.frombuffer(memoryview(self._keys), dtype=np.uint64, count=4 * n).reshape(n, 4).tolist()
                ns = np.frombuffer(memoryview(self._values), dtype=np.uint64, count=n).tolist()
                runs = [(t, k[0], k[1], k[2], k[3]) for t, k in zip(ns, keys, strict=True)]
                self.stats.runs += n
                self._write_runs(runs, final=False)
            if end:
                return

    def _event(self, data: bytes) -> None:
        """A call that names a path, sent at its entry: what it named is told from the file system
        now (a name that names nothing was a failed call, and is not recorded)."""
        kind, pid, dev, ino, bdev, bino, flags = _EVENT.unpack_from(data)
        name = data[_EVENT.size:].split(b"\0", 1)[0].decode(errors="surrogateescape")
        if kind == _EV_DIR:
            self._write(self.names.dirs.get((dev, ino)), "readdir")
            return
        path = self.names.full(pid, bdev, bino, name)
        if path is None:
            self.stats.unnamed += 1
            return
        real = None  # the path as strace's -y names it, symlinks resolved: only for what is kept
        if kind == _EV_OPEN and flags & _OUTPUT_FLAGS and len(self.names.outputs) < MAX_FILES:
            real = os.path.realpath(path)
            self.names.outputs.add(real)  # the render's own output, maybe not made yet
        try:
            st = os.stat(path)
        except (OSError, ValueError):  # the call failed (or the file is gone already): nothing was named
            return
        if kind == _EV_STAT:
            self._write(path, "stat")
            return
        key, real = (kernel_dev(st.st_dev), st.st_ino), real or os.path.realpath(path)
        if kind == _EV_CHDIR:
            if stat.S_ISDIR(st.st_mode):
                self.names.dirs[key] = real
        elif kind == _EV_OPEN and name:
            self._open(key, st.st_mode, real)

    def _write(self, path: str | None, op: str) -> None:
        if path is None:
            self.stats.unnamed += 1
        elif self.names.kept(path):
            self.out.write(orjson.dumps({"path": path, "op": op}, option=orjson.OPT_APPEND_NEWLINE))

    def _open(self, key: tuple[int, int], mode: int, path: str) -> None:
        """An open of `path` (symlinks resolved), the inode `key`."""
        if stat.S_ISDIR(mode):
            if len(self.names.dirs) < MAX_FILES:
                self.names.dirs[key] = path
            return
        if not stat.S_ISREG(mode):
            return
        kept = self.names.kept(path)
        if key in self.names.files or len(self.names.files) < MAX_FILES:
            self.names.files[key] = path if kept else None
        if kept:
            self.out.write(orjson.dumps({"path": path, "op": "open"}, option=orjson.OPT_APPEND_NEWLINE))

    def _write_runs(self, runs: list[tuple[int, int, int, int, int]], final: bool) -> None:
        """Reads as records in the order they were first made; reads of files not yet named
        wait for the end (their open may still be in the ring), at most `MAX_PENDING` of them."""
        runs.sort()
        dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        lines = []
        for ns, dev, ino, off, n in runs:
            path = self.names.files.get((dev, ino), "")
            if path == "":
                if final or len(self._pending) >= MAX_PENDING:
                    self.stats.unnamed += 1
                else:
                    self._pending.append((ns, dev, ino, off, n))
                continue
            if path is not None:
                lines.append(dumps({"path": path, "offset": off, "length": n,
                                    "t": round(ns / 1e9 + self._clock, 6)}, option=nl))
        self.out.write(b"".join(lines))
