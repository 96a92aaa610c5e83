"""Reads `strace -f -tt [-T] -y` output into `Access` records. Pure: lines in, records out.

What a call read is not always written on its line, so the parser keeps state:

* `read`/`readv` carry no offset: they read at the descriptor's position, which
  `openat` sets to 0, `lseek` sets to its *return value* (whatever the whence), and
  every `read` advances by what it returned. `pread64`/`preadv`/`preadv2` carry their
  offset and leave the position alone (except `preadv2(..., -1, ...)`, which reads
  at the position and moves it, as the man page says).
* Positions are keyed by the descriptor *and its path* (`3</p/a.exr`), not by pid.
  strace's pid column is the thread id, and the threads of a renderer share one fd
  table: thread A opens and seeks, thread B reads. Keying by pid would lose the seek;
  keying by fd alone would mix a closed descriptor's position with the next file that
  reuses the number (`close` is usually not traced). The cost: two *processes* reading
  the same file through the same fd number would share a position. Renderers read
  through threads, so this is the right trade.
* A descriptor whose `openat` is not in the trace (attached late, `dup`) starts at 0:
  most files are read from their start, and the first `lseek` corrects it anyway.
* Interleaved threads split a call into `name(args <unfinished ...>` and
  `<... name resumed>rest`; the two halves are joined by pid, and the record takes
  the start's time. Without `-o`, strace drops the `[pid N]` prefix once only one
  thread is left, so an unprefixed resumed line also matches the one pending call of
  that name. A resumed line with no start is counted (`unmatched_resumed`), not an error.
* `mmap` of a file is recorded as a read of the whole mapped region. Reads through a
  mapping are invisible to strace; mapping a file almost always means reading it, and
  warming too much is cheaper than a render stalling on the WAN.
* A file the process creates, truncates or opens write-only is an output: its opens,
  reads and stats are left out, since they touch what the render wrote, not what the
  filer holds.
* `t` is the call's start in seconds since midnight with `-t`/`-tt` (strace does not
  log the date) and epoch seconds with `-ttt`; `tid` is the pid column.
* Failed calls (`= -1 ENOENT ...`, `= ? ERESTARTSYS`) are counted; lines that cannot
  be understood are counted and skipped. Neither is fatal: a trace is evidence.

Only absolute `-y` paths reach records: pipes, sockets and descriptors without an
annotation are ignored. strace escapes `<`, `>`, quotes and non-ASCII bytes in paths
(`a\\76b`, `\\303\\251`), so a path never contains a bare `>` and is decoded before use.

Speed: a render frame logs hundreds of thousands of calls. Records leave as plain tuples
(`Rec`), never as one object per call, in batches of at most `RUN` lines; the time stamp
and pid stay text until a reader asks for them. The lines `strace -f -tt [-T] -y -o`
writes (`prewarm record`'s own) take a fast path for the calls that make up almost all
of a render's log (`read`, `pread64`, `lseek`, and their split halves): index arithmetic
on the line as read, nothing sliced that is not kept, one dict lookup for the descriptor.
Every other line, or one the fast path is not sure of, goes through the general parser
below, which is the reference: a test feeds every fixture through both. Per-path work
(unescaping, path mapping, filtering) is done once per distinct path.

`make setup` compiles this module with mypyc (about 4x), so the hot path is written for
the compiler: characters compared as `s[i] == "x"` and `str.find` with bounds (both C
calls once compiled), not `startswith(prefix, start)` or `dict.pop(key, default)`
(which stay Python method calls), and module constants `Final`.
"""

from __future__ import annotations

import itertools
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from prewarm.plan.access import Access, Op
from prewarm.traces.counters import ImportStats, Rec, Records, Resolve, accesses

_UNFINISHED: Final = " <unfinished ...>"
_UNFINISHED_LINE: Final = _UNFINISHED + "\n"
_READ: Final = Op.READ
_OUTPUT: Final = "\0output"
"""Cached in place of a resolved path for files the process writes: dropped, not counted as filtered."""

Found = tuple[str, Op, int, int]
"""What a handled call touched: (raw path as strace printed it, op, offset, length)."""

_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"v": b"\v", b"f": b"\f"}


def _unescape_byte(m: re.Match[bytes]) -> bytes:
    code = m.group(1)
    if code[:1] == b"x":
        return bytes([int(code[1:], 16)])
    if code[:1].isdigit():
        return bytes([int(code, 8) & 0xFF])
    return _SIMPLE_ESCAPES.get(code, code)


def unescape(raw: str) -> str:
    """A path as strace printed it (C escapes, octal for non-ASCII bytes) as the real path."""
    if "\\" not in raw:
        return raw
    data = _ESCAPE.sub(_unescape_byte, raw.encode("utf-8", "surrogateescape"))
    return data.decode("utf-8", "surrogateescape")


def _quoted(s: str, i: int) -> str | None:
    """The C string literal starting at `s[i]`, still escaped (an escaped quote does not end it)."""
    if s[i:i + 1] != '"':
        return None
    j = i + 1
    while True:
        q = s.find('"', j)
        if q < 0:
            return None
        k = q - 1
        while s[k] == "\\":
            k -= 1
        if (q - 1 - k) % 2 == 0:
            return s[i + 1:q]
        j = q + 1


def _fd(args: str) -> tuple[str, str] | None:
    """(position key, raw path) of the `-y` descriptor that is the first argument.

    The key is the argument text itself (`3</p/a.exr`): one string, so one dict lookup.
    """
    lt = args.find("<")
    if lt <= 0 or args[lt + 1:lt + 2] != "/" or not args[:lt].isdigit():
        return None
    gt = args.find(">", lt)
    if gt < 0:
        return None
    return args[:gt], args[lt + 1:gt]


def _at_path(args: str) -> str | None:
    """The path an `*at` call names: `dirfd<dir>, "name", ...`, joined to the dir if relative."""
    comma = args.find(", ")
    lt = args.find("<")
    directory = None
    if 0 <= lt < comma:
        gt = args.find(">", lt)
        directory = args[lt + 1:gt]
        comma = args.find(", ", gt)
    if comma < 0:
        return None
    name = _quoted(args, comma + 2)
    if name is None:
        return None
    if name.startswith("/"):
        return name
    if directory is None or not directory.startswith("/"):
        return None
    return posixpath.normpath(posixpath.join(directory, name)) if name else directory


def _int_ret(ret: str) -> int:
    """The return value before any `-T` time (`4096 <0.000023>`)."""
    sp = ret.find(" ")
    return int(ret if sp < 0 else ret[:sp])


def _offset(text: str) -> int:
    """A file offset a call names; ValueError (the line is counted as skipped) for a negative
    one: the kernel refuses it with EINVAL, so a line that shows it read there is not a trace
    of a read, and a negative offset must never reach a plan."""
    offset = int(text, 0)
    if offset < 0:
        raise ValueError(f"negative offset {offset}")
    return offset


class _Descriptor:
    """A descriptor as the trace names it (`3</p/a.exr`): where it reads next, and (for the
    fast path) the path to record for it, `""` until resolved. One object, so that a line
    costs one dict lookup, not one for the position and one for the path."""

    __slots__ = ("path", "pos")

    def __init__(self) -> None:
        self.pos = 0
        self.path: str | None = ""


class _Calls:
    """Per-call handlers and the descriptor positions they share.

    Each handler takes the argument text (without the call's parentheses) and the
    return text, and returns what the call touched or None.
    """

    __slots__ = ("fds", "outputs", "table")

    def __init__(self) -> None:
        self.fds: dict[str, _Descriptor] = {}
        self.outputs: set[str] = set()
        """Paths the traced process creates, truncates or only writes: what it then
        reads or stats there is its own output, not something to fetch from the filer."""
        self.table: dict[str, Callable[[str, str], Found | None]] = {
            "read": self.read, "readv": self.read,
            "pread64": self.pread, "preadv": self.pread, "preadv2": self.preadv2,
            "lseek": self.lseek,
            "open": self.open, "openat": self.open, "openat2": self.open,
            "newfstatat": self.stat_at, "fstatat64": self.stat_at, "statx": self.stat_at,
            "stat": self.stat, "lstat": self.stat, "stat64": self.stat, "lstat64": self.stat,
            "fstat": self.fstat, "fstat64": self.fstat,
            "getdents64": self.getdents, "getdents": self.getdents,
            "mmap": self.mmap,
        }

    def at(self, key: str) -> _Descriptor:
        """The descriptor `key` names, at position 0 if the trace has not opened it."""
        d = self.fds.get(key)
        if d is None:
            d = self.fds[key] = _Descriptor()
        return d

    def read(self, args: str, ret: str) -> Found | None:
        fd = _fd(args)
        if fd is None:
            return None
        n = _int_ret(ret)
        d = self.at(fd[0])
        pos = d.pos
        d.pos = pos + n
        return (fd[1], Op.READ, pos, n) if n > 0 else None

    def pread(self, args: str, ret: str) -> Found | None:
        fd = _fd(args)
        if fd is None:
            return None
        n = _int_ret(ret)
        return (fd[1], Op.READ, _offset(args[args.rfind(", ") + 2:]), n) if n > 0 else None

    def preadv2(self, args: str, ret: str) -> Found | None:
        fd = _fd(args)
        if fd is None:
            return None
        text = args.rsplit(", ", 2)[1]
        if text == "-1":
            return self.read(args, ret)
        n = _int_ret(ret)
        return (fd[1], Op.READ, _offset(text), n) if n > 0 else None

    def lseek(self, args: str, ret: str) -> Found | None:
        fd = _fd(args)
        if fd is not None:
            self.at(fd[0]).pos = _int_ret(ret)
        return None

    def open(self, args: str, ret: str) -> Found | None:
        """The result's `-y` annotation is the canonical path (symlinks resolved), and
        the one later calls on the descriptor show: prefer it to the argument."""
        lt = ret.find("<")
        if lt > 0 and ret[lt + 1:lt + 2] == "/":
            gt = ret.find(">", lt)
            path: str | None = ret[lt + 1:gt]
            self.at(ret[:gt]).pos = 0
        elif args.startswith('"'):
            name = _quoted(args, 0)
            path = name if name is not None and name.startswith("/") else None
        else:
            path = _at_path(args)
        if path is None:
            return None
        flags = args[args.rfind('"') + 1:]
        if "O_WRONLY" in flags or "O_TRUNC" in flags or "O_EXCL" in flags:
            self.outputs.add(path)
            return None
        return path, Op.OPEN, 0, 0

    def stat_at(self, args: str, ret: str) -> Found | None:
        path = _at_path(args)
        return (path, Op.STAT, 0, _stat_size(args)) if path is not None else None

    def stat(self, args: str, ret: str) -> Found | None:
        name = _quoted(args, 0)
        return (name, Op.STAT, 0, _stat_size(args)) if name is not None and name.startswith("/") else None

    def fstat(self, args: str, ret: str) -> Found | None:
        fd = _fd(args)
        return (fd[1], Op.STAT, 0, _stat_size(args)) if fd is not None else None

    def getdents(self, args: str, ret: str) -> Found | None:
        """The call that returns 0 only marks the end of a listing already recorded."""
        fd = _fd(args)
        return (fd[1], Op.READDIR, 0, 0) if fd is not None and _int_ret(ret) > 0 else None

    def mmap(self, args: str, ret: str) -> Found | None:
        parts = args.split(", ", 4)  # addr, length, prot, flags, "fd<path>, offset"
        if len(parts) < 5:
            return None
        fd = _fd(parts[4])
        if fd is None:
            return None
        length = int(parts[1])
        offset = _offset(parts[4][len(fd[0]) + 3:])
        return (fd[1], Op.READ, offset, length) if length > 0 else None


def _stat_size(args: str) -> int:
    """The size a stat call returned for a regular file (`{st_mode=S_IFREG|0644, st_size=5, ...}`,
    statx's `stx_size=`), 0 when it shows none: a plan from raw traces tells from it that a file
    changed since it was traced. The structure is the call's last braces, after any path."""
    brace = args.rfind("{")
    if brace < 0 or args.find("S_IFREG", brace) < 0:
        return 0
    at = args.find("_size=", brace)
    if at < 0:
        return 0
    i = end = at + 6
    while end < len(args) and args[end].isdigit():
        end += 1
    return int(args[i:end]) if end > i else 0


def _is_noise(body: str) -> bool:
    """Lines strace writes that are not calls: signals, exits, attach notices, calls we skip."""
    if body.startswith(("---", "+++", "strace: ")):
        return True
    paren = body.find("(")
    return paren > 0 and body[:paren].isidentifier()


def _is_fd(key: str) -> bool:
    """Whether a first argument is a `-y` descriptor of a file: `3</p/a.exr`."""
    lt = key.find("<")
    return lt > 0 and key[lt + 1:lt + 2] == "/" and key[:lt].isdigit()


_READ_CALL: Final = 4
_LSEEK: Final = 5
_PREAD64: Final = 7
"""The calls the fast path takes, by the length of their names."""


def _hot_call(text: str, b: int) -> int:
    """`_READ_CALL`, `_LSEEK` or `_PREAD64` if that call is named at `text[b:]`, its `(`
    that many characters on; else 0. Compared a character at a time: compiled, that is a
    few machine instructions, where slicing the name out is an object made and freed."""
    if b + 8 > len(text):
        return 0
    if text[b] == "r":
        return _READ_CALL if text[b + 1] == "e" and text[b + 2] == "a" and text[b + 3] == "d" and text[b + 4] == "(" \
            else 0
    if text[b] == "l":
        return _LSEEK if (text[b + 1] == "s" and text[b + 2] == "e" and text[b + 3] == "e" and text[b + 4] == "k"
                          and text[b + 5] == "(") else 0
    if text[b] == "p":
        return _PREAD64 if (text[b + 1] == "r" and text[b + 2] == "e" and text[b + 3] == "a" and text[b + 4] == "d"
                            and text[b + 5] == "6" and text[b + 6] == "4" and text[b + 7] == "(") else 0
    return 0


def _number(s: str, i: int, j: int) -> int:
    """The decimal number `s[i:j]`, or -1 if that is empty or not all ASCII digits: read in
    place, without the slice and the `int()` of it (compiled, a loop of a few instructions)."""
    if i >= j:
        return -1
    value = 0
    while i < j:
        digit = ord(s[i]) - 48
        if digit < 0 or digit > 9:
            return -1
        value = value * 10 + digit
        i += 1
    return value


Pending = dict[str | None, str]
"""Unfinished calls by pid: `STAMP name(args`, the line from its time stamp (empty if it has
none) up to `<unfinished ...>`. One string, sliced once from the line: a tuple of three
would be three more objects for each of the calls a busy render splits."""


def _call_name(start: str) -> str:
    """The call name of a pending start."""
    sp = start.find(" ")
    return start[sp + 1:start.find("(", sp)]


class _Parser:
    """One log's parse state: split calls waiting for their end, and resolved paths."""

    __slots__ = ("calls", "fds", "frame", "n", "outputs", "paths", "pending", "resolve", "stats", "table", "where")

    def __init__(self, stats: ImportStats, frame: int | None, resolve: Resolve | None, where: str) -> None:
        self.calls = _Calls()
        self.table = self.calls.table
        self.outputs = self.calls.outputs
        self.pending: Pending = {}
        self.paths: dict[str, str | None] = {}
        self.fds = self.calls.fds
        self.stats, self.frame, self.resolve, self.where = stats, frame, resolve, where
        self.n = 0

    def feed(self, lines: list[str], fast: bool = True) -> Records:
        """The records a run of lines completes. `fast=False` sends every line through the
        general parser (the reference the fast path is tested against)."""
        out: Records = []
        n = self.n
        for line in lines:
            n += 1
            if not fast or not self._fast(line, n, out):
                self._general(self.line(line, n), out)
        self.n = n
        return out

    @staticmethod
    def _general(rec: Rec | None, out: Records) -> None:
        if rec is not None:
            out.append(rec)

    def _fast(self, line: str, n: int, out: Records) -> bool:
        """A `PID  STAMP call` line, by index arithmetic on the line as read (no split, no
        strip, nothing sliced that is not kept). False, with nothing changed, hands the line
        to the general parser: no pid column, no stamp, `[pid N]`, torn or odd text."""
        sp = line.find(" ")
        pid = line[:sp]
        if sp <= 0 or not pid.isdigit():
            return False
        st = sp + 1
        while st < len(line) and line[st] == " ":
            st += 1
        se = line.find(" ", st)
        if se < 0 or not line[st].isdigit():
            return False
        b = se + 1
        if b < len(line) and line[b] == "<" and line[b + 1:b + 5] == "... ":
            self._resumed(line, b, pid, n, out)
        elif line.endswith(_UNFINISHED) or line.endswith(_UNFINISHED_LINE):  # lines come with or without "\n"
            self.pending[pid] = line[st:line.rfind(_UNFINISHED)]
        else:
            return self._hot(line, b, st, se, pid, out)
        return True

    def _resumed(self, line: str, b: int, pid: str, n: int, out: Records) -> None:
        """`<... name resumed>rest`: joined to its start, the whole call is handled as if
        strace had written it on one line, with the start's stamp."""
        r = line.find(" resumed>", b)
        start = self.pending.get(pid) if r >= 0 else None
        if start is not None:
            del self.pending[pid]  # not pop(pid, None): mypyc compiles get and del, not pop's default
        if start is None or _call_name(start) != line[b + 5:r]:
            self.stats.unmatched_resumed += 1
            return
        call = start + line[r + 9:]
        ss = start.find(" ")
        if not self._hot(call, ss + 1, 0, ss, pid, out):
            self._general(self._call(call[ss + 1:].rstrip(), pid, call[:ss] or None, n), out)

    def _hot(self, text: str, b: int, st: int, se: int, pid: str, out: Records) -> bool:
        """read/pread64/lseek of a file descriptor, the call at `text[b:]` and its stamp at
        `text[st:se]` (sliced only for a record); False (nothing changed) for any other
        call, a descriptor that is not a file, `)   = 4` padding, `= ?` or odd or torn
        text: the general parser decides those."""
        call = _hot_call(text, b)
        paren = b + call
        eq = text.rfind(" = ")
        gt = text.find(">", paren)
        if call == 0 or eq <= gt or gt < 0 or text[eq - 1] != ")" or eq + 3 >= len(text):
            return False
        key = text[paren + 1:gt]
        fd = self.fds.get(key)
        if fd is None:
            if not _is_fd(key):
                return False
            fd = self.fds[key] = _Descriptor()
        if fd.path == "":
            fd.path = self._fd_path(key)
        if text[eq + 3] == "-":  # `= -1 ENOENT (...)`: as the general parser, any return that starts so
            self.stats.failed_calls += 1
            return True
        end = text.find(" ", eq + 3)
        got = _number(text, eq + 3, end if end >= 0 else len(text) - (text[len(text) - 1] == "\n"))
        if got < 0:
            return False
        if call == _LSEEK:
            fd.pos = got
            return True
        if call == _PREAD64:
            off = _number(text, text.rfind(", ", gt, eq) + 2, eq - 1)
            if off < 0:
                return False
        else:
            off = fd.pos
            fd.pos = off + got
        path = fd.path
        if got > 0 and path != _OUTPUT:
            if path is None:
                self.stats.filtered += 1
            else:
                out.append((path, _READ, off, got, self.frame, text[st:se] or None, None, None, pid))
        return True

    def _fd_path(self, key: str) -> str | None:
        """The resolved path of a descriptor text `_is_fd` accepted (None: filtered out)."""
        self.stats.check_paths(self.where, len(self.fds))
        raw = key[key.find("<") + 1:]
        return _OUTPUT if raw in self.outputs else self._resolved(raw)

    def line(self, line: str, n: int) -> Rec | None:
        """The access line `n` completes, if any. Peels `[pid N]`, the pid column and the stamp."""
        line = line.rstrip()
        if not line:
            return None
        pid: str | None = None
        body = line
        try:
            if line.startswith("[pid "):  # strace -f writing to stderr
                close = line.find("]")
                pid = str(int(line[5:close]))
                body = line[close + 1:].lstrip()
            sp = body.find(" ")
            if sp > 0 and body[:sp].isdigit():  # the pid column of `strace -f -o`
                pid = body[:sp]
                body = body[sp:].lstrip()
                sp = body.find(" ")
        except ValueError:
            self.stats.skip(self.where, n)
            return None
        stamp = None
        if sp > 0 and body[0].isdigit():
            stamp = body[:sp]
            body = body[sp + 1:]
        if body.startswith("<... "):
            start = self._start_of(body, pid)
            if start is None:
                self.stats.unmatched_resumed += 1
                return None
            sp = start.find(" ")
            body = start[sp + 1:] + body[body.find(" resumed>") + 9:]
            stamp = start[:sp] or None
        elif body.endswith(_UNFINISHED):
            self.pending[pid] = f"{stamp or ''} {body[:-len(_UNFINISHED)]}"
            return None
        return self._call(body, pid, stamp, n)

    def _start_of(self, body: str, pid: str | None) -> str | None:
        """The unfinished start of the call a `<... name resumed>` line ends.

        An unprefixed resumed line may end a call that started while strace still wrote
        `[pid N]` prefixes: it takes the one pending call of its name, if there is one.
        """
        r = body.find(" resumed>")
        if r < 0:
            return None
        name = body[5:r]
        start = self.pending.pop(pid, None)
        if start is None and pid is None:
            candidates = [p for p, s in self.pending.items() if _call_name(s) == name]
            if len(candidates) == 1:
                start = self.pending.pop(candidates[0])
        return start if start is not None and _call_name(start) == name else None

    def _call(self, body: str, pid: str | None, stamp: str | None, n: int) -> Rec | None:
        """A whole call line (`name(args) = ret [<secs>]`) as the access it made, if any."""
        paren = body.find("(")
        handler = self.table.get(body[:paren]) if paren > 0 else None
        if handler is None:
            if not _is_noise(body):
                self.stats.skip(self.where, n)
            return None
        eq = body.rfind(" = ")
        close = body.rfind(")", paren, eq) if eq > 0 else -1
        if close < 0:
            self.stats.skip(self.where, n)
            return None
        ret = body[eq + 3:]
        if ret[0] == "-" or ret[0] == "?":
            self.stats.failed_calls += 1
            return None
        outputs = len(self.outputs)
        try:
            found = handler(body[paren + 1:close], ret)
        except (ValueError, IndexError):
            self.stats.skip(self.where, n)
            return None
        if len(self.outputs) != outputs:
            for d in self.fds.values():  # a path just became an output: the fast path must not keep reading it
                d.path = ""
        if found is None or found[0] in self.outputs:
            return None
        path = self._path(found[0])
        if path is None:
            return None
        return (path, found[1], found[2], found[3], self.frame, stamp, None, None, pid)

    def _resolved(self, raw: str) -> str | None:
        """The path to record for a path as strace printed it; None if filtered out."""
        path = self.paths.get(raw, "")  # "" is never a resolved path: not cached yet
        if path == "":
            self.stats.check_paths(self.where, len(self.paths) + 1)
            path = unescape(raw).removesuffix(" (deleted)")
            path = self.paths[raw] = self.resolve(path) if self.resolve is not None else path
        return path

    def _path(self, raw: str) -> str | None:
        """`_resolved`, counting what the filter drops."""
        path = self._resolved(raw)
        if path is None:
            self.stats.filtered += 1
        return path


CHUNK = 4096
"""Lines per run handed to the parser by `parse_strace`."""
RUN = 256
"""Lines per batch of records: a batch of at most 256 records is used and freed before
the cyclic GC's next collection (every 700 new tuples), which would otherwise walk the
records still waiting in it; 4,096-line batches cost an import 10% in collections."""


def strace_batches(chunks: Iterable[list[str]], stats: ImportStats, frame: int | None = None,
                   resolve: Resolve | None = None, where: str = "<strace>", fast: bool = True,
                   skip: int = 0) -> Iterator[Records]:
    """Stream the records of an strace log given as runs of lines, in the order the calls completed.

    `frame` is set on every record; `resolve` maps each path once (see `Resolve`);
    `where` names the log in `stats.first_skipped`; `skip` lines (blank ones the caller passed
    over) come before the first. Past `MAX_TRACE_PATHS` distinct paths or descriptors, `TraceError`.
    """
    parser = _Parser(stats, frame, resolve, where)
    parser.n = skip
    records = 0
    try:
        for chunk in chunks:
            for i in range(0, len(chunk), RUN):
                batch = parser.feed(chunk[i:i + RUN], fast)
                if batch:
                    records += len(batch)
                    yield batch
    finally:
        stats.lines += parser.n
        stats.records += records
        stats.paths += max(len(parser.paths), len(parser.fds))


def parse_strace(lines: Iterable[str], stats: ImportStats, frame: int | None = None,
                 resolve: Resolve | None = None, where: str = "<strace>", fast: bool = True) -> Iterator[Access]:
    """`strace_batches` of single lines, as `Access` records."""
    it = iter(lines)
    chunks = iter(lambda: list(itertools.islice(it, CHUNK)), [])
    return accesses(strace_batches(chunks, stats, frame, resolve, where, fast))
