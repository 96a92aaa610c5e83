"""The eBPF recorder: a render's reads counted in kernel maps by `bpftrace`, written as JSON Lines.

strace stops the traced process twice per system call (19x on a loop of 4 KiB
`pread64`s); a bpftrace program on the syscall tracepoints runs in the kernel and
stops nothing. What it costs is a few hash-map operations per read, so reads are not
sent to user space one by one: each distinct read, `(device, inode, offset, length)`,
is kept once in a kernel map (the same tile read again costs a lookup), and the maps
are drained every `DRAIN_MS`. Reads keep their exact offsets, not only their 4 KiB
blocks: the texture planner matches reads to tile offsets. Opens, stats and listings
are rarer and are sent as events.

How the program knows what it reads, without following descriptors:

* Only the render's process tree: a map of tracked processes (`@t`, by pid: threads
  share theirs) starts with the wrapper's pid (the command waits on a pipe until the
  program is attached, so nothing is missed) and grows on `sched_process_fork` and
  shrinks on `sched_process_exit`. Other processes on the machine cost a map lookup
  per traced call and are not recorded. A process whose main thread exits while its
  other threads run on is no longer followed (rare: `pthread_exit` in `main`).
* A descriptor is looked up in the calling task's own descriptor table (kernel
  structures, through the kernel's BTF), once per descriptor and generation (see
  `_described`; the descriptor table shared by a child made with `CLONE_FILES` but
  not `CLONE_THREAD` is not followed across the two): the `struct file` gives the
  inode and the *file's real position*. So `dup`/`dup2`/`dup3`, descriptors inherited across fork,
  `close` and reuse of a number, `lseek` (any whence) and a `read`'s advance are what
  the kernel says they are, where the strace importer has to follow them from the log.
  `preadv2` with offset -1 reads at the position, as the man page says.
* Files are named by their inode, and the open events say which path each inode was
  opened as: `openat`/`openat2` send the name and the inode of the directory it is
  relative to (the `dirfd`'s, or the working directory's for `AT_FDCWD`), and user
  space joins it to that directory's path (learned when the directory was opened, or
  the command's starting directory) and resolves symlinks, as strace's `-y` does.
  A name longer than `STRLEN` bytes is cut by bpftrace: its path is read from
  `/proc/PID/fd/N` while the descriptor is open, else the file is counted unnamed.
* Files opened for writing, truncation or exclusive creation are the render's
  outputs and left out, as the strace importer leaves them out; `mmap` of a file is a
  read of the mapped region (the importer's rule, and `prewarm record` asks strace for
  `mmap` too, so both records hold the same blocks).

Memory: bpftrace 0.17 gives every map `MAP_KEYS` entries, preallocated by the kernel, so
the program's six maps are a fixed 152 MiB of kernel memory (measured from their `memlock`
in /proc/PID/fdinfo): the three read maps (a 32-byte key and an 8-byte first-seen time,
26 MiB each), the descriptor cache (30 MiB), each thread's call in flight (24 MiB) and the
tracked processes (20 MiB); so the program keeps no more maps than it needs (one map of
calls in flight for all calls, the drain epoch in `@t[0]`). A read map that fills within
one drain interval drops new reads; each refused insert is counted (`lost_runs`). User space keeps one path per
distinct file opened, at most `MAX_FILES` of them, and no reads: every drain is
written out at once. So the recorder's memory does not grow with the number of reads
or the length of the render, only with the number of distinct files, up to the cap.

Why three read maps: bpftrace's `print` and `clear` of a map are carried out by
user space after the kernel asks, so a map must not be written while it is printed.
Reads go to map `epoch % 3`; each drain flips the epoch and prints the map retired
one interval earlier, which no read has touched since.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import IO

import orjson

__all__ = ["RECORDERS", "EbpfRecorder", "EbpfStats", "EbpfUnavailable", "available", "program"]

RECORDERS = ("ebpf", "strace")
"""What `prewarm record --with` takes (here, not in `record`, so the CLI names them without loading the store)."""

DRAIN_MS = 500
"""How often the kernel's read maps are read out and emptied."""

MAP_KEYS = 1 << 18
"""Entries per kernel map (bpftrace's BPFTRACE_MAP_KEYS_MAX): 262,144 distinct reads per
half second, more than the 200,000-pread loop of the bench makes in that time."""

STRLEN = 200
"""The longest name bpftrace copies from a call (its maximum)."""

MAX_FILES = 1 << 20
"""Distinct files user space names (about 200 bytes each): a render that opens more has
the reads of the rest counted as unnamed, and the recorder stays bounded."""

MAX_PENDING = 1 << 18
"""Drained reads user space holds until their file's open event is read (the ring of events and
the map drains are read in no fixed order), about 100 bytes each; beyond it they count as unnamed."""

PERF_PAGES = 256
"""Pages of bpftrace's event ring per CPU (1 MiB): room for bursts of opens and stats."""

_OUTPUT_FLAGS = 0o1 | 0o1000 | 0o200
"""O_WRONLY, O_TRUNC, O_EXCL: the strace importer's rule for a render's own output."""


class EbpfUnavailable(RuntimeError):
    """The machine cannot run the recorder (not root, no bpftrace, no BTF, no tracefs)."""


def _file(fd: str) -> str:
    """bpftrace statements that set `$f` to the caller's `struct file *` for descriptor `fd` (0 if none)."""
    return (f"$f = (struct file *)0; $fdt = curtask->files->fdt; "
            f"if ((uint64)({fd}) < (uint64)$fdt->max_fds) {{ $f = *kptr($fdt->fd + ({fd})); }}")


def _reads(dev: str, ino: str, off: str, n: str) -> str:
    """Statements adding the read of `n` bytes at `off` to the current epoch's map, once: the
    same read made again (a re-read tile) costs a lookup and no update. A new read that a
    full map refused is found missing right after, and counted in `@lost`."""
    out = ["$k = @t[0] % 3;"]
    for i in range(3):
        cond = "if" if i == 0 else "else if"
        out.append(f"{cond} ($k == {i}) {{ if (!@a{i}[{dev}, {ino}, {off}, {n}]) "
                   f"{{ @a{i}[{dev}, {ino}, {off}, {n}] = nsecs; "
                   f"if (!@a{i}[{dev}, {ino}, {off}, {n}]) {{ @lost = count(); }} }} }}")
    return " ".join(out)


_REG = "($f != 0 && ($f->f_inode->i_mode & 0xf000) == 0x8000)"
_DEV = "$f->f_inode->i_sb->s_dev"
_INO = "$f->f_inode->i_ino"
_BASE = ("$dfd = @n[tid].1; if ($dfd == 0xffffff9c) { $bd = curtask->fs->pwd.dentry->d_inode->i_sb->s_dev; "
         "$bi = curtask->fs->pwd.dentry->d_inode->i_ino; } else { " + _file("$dfd") +
         " if ($f != 0) { $bd = " + _DEV + "; $bi = " + _INO + "; } }")
"""Statements setting `$bd`/`$bi` to the device and inode the name of the call in flight (`$n`) is relative to: the
`dirfd`'s, or the working directory's for AT_FDCWD (-100, kept as its 32 bits: bpftrace 0.17
compares the `int` argument unsigned)."""


def _described(body: str) -> str:
    """An action for a call on `args->fd` by the render's tree: `body` runs with `$fp`, `$ip`, `$d`,
    `$i` set to the descriptor's `struct file *`, its inode's address, device and inode number
    (`$ip` 0: not a regular file).

    Walking the descriptor table through BTF is ten kernel reads per call, most of the program's
    cost; so what a descriptor names is kept in `@fc`, keyed by (process, descriptor) and stamped
    with the process's generation (`@t[pid]`, the tree filter's value), and a call whose entry
    carries the current generation reads nothing. The generation changes (a new `nsecs`) on every
    `close`, `dup2`, `dup3`, `close_range` and `execve` the process makes, after the call, so a
    number that may now name another file is never taken from the cache: at worst a live
    descriptor is looked up again. A child starts with its own generation (and pid).
    """
    return ("{ $g = @t[pid]; if ($g != 0) { $fd = (uint64)args->fd; $fp = (uint64)0; $ip = (uint64)0; "
            "$d = (uint64)0; $i = (uint64)0; $c = @fc[pid, $fd]; "
            "if ($c.0 == $g) { $fp = $c.1; $ip = $c.2; $d = $c.3; $i = $c.4; } else { " + _file("$fd") +
            " if ($f != 0) { $in = $f->f_inode; $fp = (uint64)$f; if (($in->i_mode & 0xf000) == 0x8000) { "
            "$ip = (uint64)$in; $d = (uint64)$in->i_sb->s_dev; $i = (uint64)$in->i_ino; } "
            "@fc[pid, $fd] = ($g, $fp, $ip, $d, $i); } } "
            "if ($ip != 0) { " + body + " } } }")


def _sized(off: str) -> str:
    """A `read`/`pread64` of `args->count` bytes at `off`, recorded when it is made.

    A read of a regular file returns `min(count, size - offset)` bytes (a short read
    happens only at the end of the file), so the call's entry says everything its exit
    would: one probe per read instead of two, and no map of calls in flight. A read
    that then fails (EIO) is still recorded: it is what the render asked for.
    """
    return _described(f"$o = (uint64)({off}); $sz = (uint64)((struct inode *)$ip)->i_size; $n = (uint64)args->count; "
                      f"if ($o < $sz && $n > 0) {{ if ($o + $n > $sz) {{ $n = $sz - $o; }} "
                      f"{_reads('$d', '$i', '$o', '$n')} }}")


_POS = "((struct file *)$fp)->f_pos"
"""The descriptor's position (its open file's, shared by its dups and across fork)."""


def program() -> str:
    """The bpftrace program; `$1` is the pid of the wrapper that becomes the render, `$2` the recorder's.

    bpftrace runs BEGIN before it attaches the other probes, so a line printed there would let
    the render start while its first opens still go unseen (reads of a file whose open was missed
    cannot be named: a fast render's whole record was lost that way under load). Readiness is
    printed instead by the last probe attached, on a call the recorder makes until it fires.
    """
    read_enter = _described("@n[tid] = ($d, $i, (uint64)(OFF));")
    drains = []
    for i in range(3):
        cond = "if" if i == 0 else "else if"
        drains.append(f"{cond} ($k == {i}) {{ print(@a{i}); clear(@a{i}); }}")
    return "\n".join([
        # the render's tree: processes by pid (threads share theirs), the value the descriptor generation
        # (and @t[0], pid 0 making no calls, the drain epoch: see _reads); @fc's types before the probes read it
        "BEGIN { @t[$1] = nsecs; @t[0] = 0; "
        "@fc[pid, (uint64)0] = ((uint64)0, (uint64)0, (uint64)0, (uint64)0, (uint64)0); delete(@fc[pid, (uint64)0]); }",
        "tracepoint:sched:sched_process_fork /@t[pid]/ { @t[args->child_pid] = nsecs; }",
        "tracepoint:sched:sched_process_exit /@t[tid]/ { delete(@t[tid]); }",
        # calls after which a descriptor number may name another file: a new generation
        "tracepoint:syscalls:sys_exit_close, tracepoint:syscalls:sys_exit_dup2, tracepoint:syscalls:sys_exit_dup3, "
        "tracepoint:syscalls:sys_exit_close_range, tracepoint:syscalls:sys_exit_execve, "
        "tracepoint:syscalls:sys_exit_execveat /@t[pid]/ { @t[pid] = nsecs; }",
        # read and pread64, the calls renderers make: all at enter (see _sized)
        "tracepoint:syscalls:sys_enter_read " + _sized(_POS),
        "tracepoint:syscalls:sys_enter_pread64 " + _sized("args->pos"),
        # vectored reads: where at enter, how much at exit
        "tracepoint:syscalls:sys_enter_readv " + read_enter.replace("OFF", _POS),
        "tracepoint:syscalls:sys_enter_preadv " + read_enter.replace("OFF", "(args->pos_l | (args->pos_h << 32))"),
        "tracepoint:syscalls:sys_enter_preadv2 "
        + read_enter.replace("OFF", f"((int64)args->pos_l == -1 ? {_POS} : (args->pos_l | (args->pos_h << 32)))"),
        "tracepoint:syscalls:sys_exit_readv, tracepoint:syscalls:sys_exit_preadv, tracepoint:syscalls:sys_exit_preadv2 "
        f"{{ $x = @n[tid]; if ($x.1 != 0) {{ if (args->ret > 0) "
        f"{{ {_reads('$x.0', '$x.1', '$x.2', '(uint64)args->ret')} }} delete(@n[tid]); }} }}",
        # mmap of a file: a read of the mapped region
        "tracepoint:syscalls:sys_enter_mmap /args->fd < 0x80000000 && args->len > 0/ "
        + _described(_reads("$d", "$i", "(uint64)args->off", "(uint64)args->len")),
        # opens, stats, listings: named calls, sent as events
        # opens, stats, listings, chdir: named calls, sent as events; @n holds each thread's call in flight
        "tracepoint:syscalls:sys_enter_openat /@t[pid]/ "
        "{ @n[tid] = ((uint64)args->filename, (uint64)(args->dfd & 0xffffffff), (uint64)args->flags); }",
        "tracepoint:syscalls:sys_enter_openat2 /@t[pid]/ "
        "{ @n[tid] = ((uint64)args->filename, (uint64)(args->dfd & 0xffffffff), *(uint64 *)uptr(args->how)); }",
        "tracepoint:syscalls:sys_exit_openat, tracepoint:syscalls:sys_exit_openat2 /@t[pid]/ "
        f"{{ if (args->ret >= 0 && @n[tid].0 != 0) {{ $bd = (uint32)0; $bi = (uint64)0; {_BASE} "
        f"{_file('args->ret')} if ($f != 0) {{ printf(\"O %d %d %d %u %lu %u %lu %d %s\\n\", pid, args->ret, "
        f"$f->f_inode->i_mode & 0xf000, {_DEV}, {_INO}, $bd, $bi, @n[tid].2, str(uptr(@n[tid].0))); }} }} "
        "delete(@n[tid]); }",
        "tracepoint:syscalls:sys_enter_newfstatat, tracepoint:syscalls:sys_enter_statx /@t[pid]/ "
        "{ @n[tid] = ((uint64)args->filename, (uint64)(args->dfd & 0xffffffff), (uint64)0); }",
        "tracepoint:syscalls:sys_exit_newfstatat, tracepoint:syscalls:sys_exit_statx /@t[pid]/ "
        f"{{ if (args->ret == 0 && @n[tid].0 != 0) {{ $bd = (uint32)0; $bi = (uint64)0; {_BASE} "
        f"printf(\"S %d %u %lu %s\\n\", pid, $bd, $bi, str(uptr(@n[tid].0))); }} delete(@n[tid]); }}",
        "tracepoint:syscalls:sys_enter_getdents64 /@t[pid]/ { @n[tid] = ((uint64)args->fd, (uint64)1, (uint64)0); }",
        "tracepoint:syscalls:sys_exit_getdents64 /@t[pid]/ "
        f"{{ $n = @n[tid]; if (args->ret > 0 && $n.1 == 1) {{ {_file('$n.0')} if ($f != 0) "
        f"{{ printf(\"D %u %lu\\n\", {_DEV}, {_INO}); }} }} delete(@n[tid]); }}",
        # chdir: the new working directory is the old one joined to the name
        "tracepoint:syscalls:sys_enter_chdir /@t[pid]/ { @n[tid] = ((uint64)args->filename, "
        "(uint64)curtask->fs->pwd.dentry->d_inode->i_sb->s_dev, curtask->fs->pwd.dentry->d_inode->i_ino); }",
        "tracepoint:syscalls:sys_exit_chdir /@t[pid]/ { if (args->ret == 0 && @n[tid].0 != 0) { "
        "printf(\"C %d %lu %lu %u %lu %s\\n\", pid, @n[tid].1, @n[tid].2, "
        "curtask->fs->pwd.dentry->d_inode->i_sb->s_dev, curtask->fs->pwd.dentry->d_inode->i_ino, "
        "str(uptr(@n[tid].0))); } delete(@n[tid]); }",
        f"interval:ms:{DRAIN_MS} {{ @t[0] = @t[0] + 1; $k = (@t[0] + 1) % 3; {' '.join(drains)} clear(@fc); }}",
        # attached last (bpftrace attaches in this order, BEGIN before all): once it fires, every probe above is on
        'tracepoint:syscalls:sys_enter_getppid /pid == $2/ { printf("R %d %lu\\n", cpu, nsecs); }',
        "END { print(@a0); print(@a1); print(@a2); print(@lost); "
        "clear(@a0); clear(@a1); clear(@a2); clear(@lost); clear(@t); clear(@fc); clear(@n); }",
    ]) + "\n"


_WRAPPER = "import os, sys\nos.read(int(sys.argv[1]), 1)\nos.close(int(sys.argv[1]))\n" \
           "try:\n    os.execv(sys.argv[2], sys.argv[2:])\nexcept OSError as exc:\n" \
           "    print(f'prewarm record: {sys.argv[2]}: {exc.strerror}', file=sys.stderr)\n    os._exit(127)\n"
"""What the render starts as: it waits until the program is attached, then becomes the command
(same pid), so the program follows it from its first call."""

_READY_S = 120.0
"""How long bpftrace may take to compile and attach (seconds on a busy two-core machine)."""

_FLUSH_S = 10.0
"""How long the recorder waits for the rings to be read out after the render ends."""

_TRACEFS = "/sys/kernel/tracing"


@dataclass
class EbpfStats:
    """What the recorder saw and what it could not account for."""

    runs: int = 0
    """Distinct reads drained from the kernel."""
    lost_runs: int = 0
    """Reads a full kernel map could not take."""
    lost_events: int = 0
    """Opens, stats and listings bpftrace's ring dropped."""
    unnamed: int = 0
    """Runs and calls on files whose path could not be told."""
    files: int = 0
    """Distinct files named."""


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
    if shutil.which("bpftrace") is None:
        return "bpftrace is not installed (apt-get install bpftrace)"
    if not _has_caps():
        return "needs root or CAP_BPF and CAP_PERFMON"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "the kernel has no BTF (/sys/kernel/btf/vmlinux): descriptors cannot be looked up"
    return _tracefs()


def _end_with_parent() -> None:
    """In bpftrace's child before exec: SIGINT when `prewarm record` dies (killed with the node's
    task), so no program is left attached and no kernel maps left held."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, 2)  # PR_SET_PDEATHSIG, SIGINT


def kernel_dev(st_dev: int) -> int:
    """A user-space device number as the kernel's `s_dev` holds it (major << 20 | minor)."""
    return os.major(st_dev) << 20 | os.minor(st_dev)


_KEY = re.compile(r"\d+")


@dataclass
class _Names:
    """Paths of the inodes the render opened, and of the directories names are relative to."""

    keep: Callable[[str], bool] | None
    files: dict[tuple[int, int], str | None] = field(default_factory=dict)
    dirs: dict[tuple[int, int], str] = field(default_factory=dict)
    outputs: set[str] = field(default_factory=set)

    def kept(self, path: str) -> bool:
        return path not in self.outputs and (self.keep is None or self.keep(path))

    def base(self, pid: str, dev: int, ino: int) -> str | None:
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

    def full(self, pid: str, dev: int, ino: int, name: str) -> str | None:
        if name.startswith("/"):
            return name
        base = self.base(pid, dev, ino) if name else self.files.get((dev, ino)) or self.dirs.get((dev, ino))
        if base is None:
            return None
        return posixpath.join(base, name) if name else base



class EbpfRecorder:
    """bpftrace running the program for one render, its output turned into JSON Lines on `out`.

    `start(argv)` launches bpftrace, then the render behind a wrapper that waits until the
    program is attached, and returns the render's process; `stop()` ends bpftrace once the
    render has exited, writes the last drain and returns what was seen.
    """

    def __init__(self, out: IO[bytes], keep: Callable[[str], bool] | None) -> None:
        self.out = out
        self.names = _Names(keep)
        self.stats = EbpfStats()
        self._proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self._marks: dict[int, int] = {}
        self._marked = threading.Condition()
        self._errors: list[str] = []
        self._pending: list[tuple[int, int, int, int, int]] = []
        self._clock = time.time() - time.monotonic()
        cwd = os.getcwd()
        st = os.stat(cwd)
        self.names.dirs[(kernel_dev(st.st_dev), st.st_ino)] = os.path.realpath(cwd)

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """The render, started once the program is attached; EbpfUnavailable (and nothing started) if it cannot be."""
        gate_r, gate_w = os.pipe()
        render = subprocess.Popen([sys.executable, "-c", _WRAPPER, str(gate_r), *argv], pass_fds=(gate_r,))
        os.close(gate_r)
        env = {**os.environ, "BPFTRACE_STRLEN": str(STRLEN), "BPFTRACE_MAP_KEYS_MAX": str(MAP_KEYS),
               "BPFTRACE_PERF_RB_PAGES": str(PERF_PAGES)}
        try:
            self._proc = subprocess.Popen(["bpftrace", "--no-warnings", "-f", "json", "-B", "line", "-e", program(),
                                           str(render.pid), str(os.getpid())], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, env=env, preexec_fn=_end_with_parent)
        except OSError as exc:
            self._abandon(render, gate_w)
            raise EbpfUnavailable(f"bpftrace did not start: {exc.strerror}") from exc
        self._threads = [threading.Thread(target=self._read_errors, daemon=True),
                         threading.Thread(target=self._read, daemon=True)]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + _READY_S
        while not self._mark(None, 0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._abandon(render, gate_w)
                self._end_bpftrace()
                raise EbpfUnavailable(f"bpftrace could not load its program: {self._why()}")
        os.write(gate_w, b"g")
        os.close(gate_w)
        return render

    def _abandon(self, render: subprocess.Popen[bytes], gate_w: int) -> None:
        """The wrapper ended before it ran anything: closing the gate without a byte makes it exit."""
        os.close(gate_w)
        render.kill()
        render.wait()

    def _why(self) -> str:
        errors = [e for e in self._errors if "RLIMIT_MEMLOCK" not in e and e.strip()]
        first = next((e for e in errors if "ERROR" in e or "error" in e), errors[0] if errors else "no reason given")
        return first.strip()[:300]

    def _read_errors(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            if len(self._errors) < 50:
                self._errors.append(raw.decode(errors="replace"))

    def _end_bpftrace(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(2)  # SIGINT: bpftrace runs END, which prints the last maps
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in self._threads:
            t.join(timeout=60)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    def _mark(self, cpu: int | None, wait_s: float) -> bool:
        """Make the call the last-attached probe answers (on `cpu`, or where this thread runs) and
        wait up to `wait_s` for its line: True once it is read."""
        since = time.monotonic_ns()  # bpftrace's nsecs is the same clock
        if cpu is None:
            os.getppid()
        else:
            allowed = os.sched_getaffinity(0)
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:  # a CPU this process may not run on: its ring cannot be marked from here
                return True
            try:
                os.getppid()
            finally:
                os.sched_setaffinity(0, allowed)
        with self._marked:
            return self._marked.wait_for(lambda: self._marks.get(-1 if cpu is None else cpu, -1) >= since, wait_s)

    def _flush(self) -> None:
        """Every event the render caused read before bpftrace is stopped. Events go to one ring per
        CPU, read when the kernel wakes bpftrace, and bpftrace 0.17 may leave a ring unread when it
        is interrupted: a fast render's opens were lost that way, and with them the names of all its
        reads. A mark made on a CPU and read back means everything before it on that CPU's ring was."""
        cpus = sorted(os.sched_getaffinity(0))
        deadline = time.monotonic() + _FLUSH_S
        while cpus and time.monotonic() < deadline and self._proc is not None and self._proc.poll() is None:
            cpus = [c for c in cpus if not self._mark(c, 0.2)]

    def stop(self) -> EbpfStats:
        """End bpftrace (the render has exited), write the last reads; the stats of the record."""
        self._flush()
        self._end_bpftrace()
        pending, self._pending = self._pending, []
        self._write_runs(pending, final=True)
        self.stats.files = sum(1 for p in self.names.files.values() if p is not None)
        return self.stats

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            try:
                msg = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            kind = msg.get("type")
            data = msg.get("data")
            if kind == "printf" and isinstance(data, str):
                for line in data.splitlines():
                    self._event(line)
            elif kind == "map" and isinstance(data, dict):
                self._map(data)
            elif kind == "lost_events" and isinstance(data, dict):
                self.stats.lost_events += int(data.get("events", 0))

    def _event(self, line: str) -> None:
        kind = line[:1]
        if kind == "R":
            with self._marked:
                cpu, ns = (int(x) for x in line.split()[1:3])
                self._marks[cpu] = self._marks[-1] = ns
                self._marked.notify_all()
        elif kind == "O":
            self._open(line.split(" ", 9)[1:])
        elif kind == "S":
            pid, dev, ino, name = (line.split(" ", 4) + [""])[1:5]
            self._named(pid, int(dev), int(ino), name, "stat")
        elif kind == "D":
            _, dev, ino = line.split(" ")
            path = self.names.dirs.get((int(dev), int(ino)))
            self._write(path, "readdir")
        elif kind == "C":
            pid, odev, oino, ndev, nino, name = (line.split(" ", 6) + [""])[1:7]
            path = self.names.full(pid, int(odev), int(oino), name)
            if path is not None:
                self.names.dirs[(int(ndev), int(nino))] = os.path.realpath(path)

    def _named(self, pid: str, dev: int, ino: int, name: str, op: str) -> None:
        self._write(self.names.full(pid, dev, ino, name), op)

    def _write(self, path: str | None, op: str) -> None:
        if path is None:
            self.stats.unnamed += 1
        elif self.names.kept(path):
            self.out.write(orjson.dumps({"path": path, "op": op}, option=orjson.OPT_APPEND_NEWLINE))

    def _open(self, fields: list[str]) -> None:
        pid, fd, mode, dev, ino, bdev, bino, flags, name = (fields + [""] * 9)[:9]
        if len(name.encode()) >= STRLEN - 1:  # cut by bpftrace: the descriptor may still say
            try:
                path: str | None = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                path = None
        else:
            path = self.names.full(pid, int(bdev), int(bino), name)
        if path is None:
            self.stats.unnamed += 1
            return
        path = os.path.realpath(path)  # strace's -y names the file as the kernel does: symlinks resolved
        key = (int(dev), int(ino))
        if int(mode) == 0x4000:
            if len(self.names.dirs) < MAX_FILES:
                self.names.dirs[key] = path
            return
        if int(mode) != 0x8000:
            return
        if int(flags) & _OUTPUT_FLAGS and len(self.names.outputs) < MAX_FILES:
            self.names.outputs.add(path)
        kept = self.names.kept(path)
        if key in self.names.files or len(self.names.files) < MAX_FILES:
            self.names.files[key] = path if kept else None
        if kept:
            self.out.write(orjson.dumps({"path": path, "op": "open"}, option=orjson.OPT_APPEND_NEWLINE))

    def _map(self, data: dict[str, object]) -> None:
        for name, value in data.items():
            if isinstance(value, dict):
                runs = []
                for key, ns in value.items():
                    k = [int(x) for x in _KEY.findall(key)]
                    if len(k) == 4 and isinstance(ns, int):
                        runs.append((ns, k[0], k[1], k[2], k[3]))
                self.stats.runs += len(runs)
                self._write_runs(runs, final=False)
            elif isinstance(value, int) and name == "@lost":
                self.stats.lost_runs += value

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

