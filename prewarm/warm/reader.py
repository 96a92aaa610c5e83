"""Read byte ranges so that the reads reach the gateway's cache and fill it.

The reader takes studio paths and opens them through the site's one guard
(`prewarm.site.guard`), which maps them to this machine's mount and refuses what lies
outside the roots, symlinks included.

How it reads depends on the mount a file is on (`prewarm.site.mounts.choose_read`, per
`read_mode`), decided once per device:
- a render-side client of the gateway's export: a buffered re-read of a range this
  worker read before is answered from its own page cache and never reaches the
  gateway, so files are opened with `O_DIRECT` (the Linux NFS client accepts
  unaligned O_DIRECT reads into any buffer; local file systems want aligned ones,
  hence an `mmap` buffer, which is page aligned). Where O_DIRECT is refused (tmpfs
  at open, some file systems at read with EINVAL) the file is reopened buffered and
  each read is followed by `POSIX_FADV_DONTNEED`, which drops the pages just read;
- the gateway's own `fsc` mount: O_DIRECT would skip fscache, so reads are buffered,
  and the pages are dropped only where the kernel keeps the cache write (>= 6.4).

A file is opened once per batch and shared by the reader threads: `pread` has no
file position, so concurrent reads of one descriptor are safe.
"""

from __future__ import annotations

import errno
import mmap
import os
import resource
import stat
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from prewarm.site.guard import Guard, Resolved
from prewarm.site.mounts import (
    Kernel,
    Mount,
    ReadChoice,
    ReadMode,
    by_device,
    by_path,
    choose_read,
    device_of,
    read_mounts,
    this_kernel,
)
from prewarm.site.settings import Settings

BUFFER_BYTES = 1 << 20
"""Largest single read; longer ranges are read in several calls (granules are 1 MiB)."""

NOTE_WAIT_S = 10.0
"""How long a failed open waits for its root's first look (`MountReader._look`) before deciding
whether the mount went: that look is two requests to the same mount that just answered."""


class OpenFile(Protocol):
    """An open file: its identity as seen now, and a way to read it."""

    size: int
    mtime: float
    regular: bool

    def read(self, offset: int, length: int) -> int:
        """Read `[offset, offset+length)`; return the bytes read (fewer at end of file)."""

    def read_many(self, offsets: array[int], lengths: array[int], positions: array[int], lo: int, hi: int,
                  short: list[tuple[int, int]]) -> int:
        """Read `positions[lo:hi]` of the columns `offsets` and `lengths` in order, as `read` would each;
        note `(k, bytes)` in `short` for each that read fewer bytes; return the bytes read. The first
        read that raises ends the run: `ReadsCut` says which, with the error (see `read_each`)."""

    def identity(self) -> tuple[int, float]:
        """(size, mtime) now: compared with the plan's again once the file's reads are done."""

    def close(self) -> None: ...


class ReadsCut(Exception):
    """A run of reads stopped at `positions[at]`, which raised `cause`; `got` bytes were read before it.

    The loop settles the reads before it, retries that one alone as it retries any read, and
    goes on with the rest: each read has the fate it would have had alone.
    """

    def __init__(self, at: int, got: int, cause: OSError) -> None:
        super().__init__(at, got, cause)
        self.at, self.got, self.cause = at, got, cause


def read_each(file: OpenFile, offsets: array[int], lengths: array[int], positions: array[int], lo: int, hi: int,
              short: list[tuple[int, int]]) -> int:
    """`OpenFile.read_many` as one `read` per read: for files that wrap another's reads."""
    total = 0
    for k in range(lo, hi):
        p = positions[k]
        try:
            got = file.read(offsets[p], lengths[p])
        except OSError as exc:
            raise ReadsCut(k, total, exc) from exc
        total += got
        if got < lengths[p]:
            short.append((k, got))
    return total


class Reader(Protocol):
    """Opens, stats and lists studio paths; raises OSError (`Refused` included) as the site says."""

    def refusal(self, path: str) -> str | None:
        """Why the path's text alone is refused (outside the roots, no roots at all), or None: before any IO."""

    def prepare(self, path: str) -> None:
        """Before `path` is opened on another thread: what of its open needs no lookup of its own, done on
        this one (see `OpenOnce.open_ahead`); never raises (the open meets any error itself)."""

    def open(self, path: str) -> OpenFile: ...

    def stat(self, path: str) -> None: ...

    def listdir(self, path: str) -> int: ...


_sink: memoryview | None = None
_sink_lock = threading.Lock()


def _buffer() -> memoryview:
    """One page-aligned buffer that every reader thread reads into at once.

    The bytes are never looked at: what matters is that the gateway fetched them.
    Sharing one destination keeps memory flat however many reads are in flight
    (128 private 1 MiB buffers would be 128 MB per worker). Made once; after that a
    read takes it without a lock.
    """
    global _sink
    if _sink is None:
        with _sink_lock:
            if _sink is None:
                _sink = memoryview(mmap.mmap(-1, BUFFER_BYTES))
    return _sink


class _File:
    def __init__(self, guard: Guard, path: str, direct: bool, drop_pages: bool = True) -> None:
        self.guard = guard
        self.path = path
        self.fd = -1
        self.direct = False
        self.drop_pages = drop_pages
        opened: Resolved | None = None
        if direct and hasattr(os, "O_DIRECT"):
            try:
                self.fd, opened = guard.open_file(path, os.O_RDONLY | os.O_DIRECT)
                self.direct = True
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
        if opened is None:
            self.fd, opened = guard.open_file(path, os.O_RDONLY)
        self.where = opened
        st = opened.stat if opened.stat is not None else os.fstat(self.fd)
        self.size = st.st_size
        self.mtime = st.st_mtime
        self.regular = stat.S_ISREG(st.st_mode)
        self._lock = threading.Lock()
        self._retired: list[int] = []

    def _fall_back(self) -> None:
        """O_DIRECT refused this read (alignment): continue buffered on a new descriptor.

        The O_DIRECT descriptor stays open until `close`: other threads may be inside a
        read on it, and closing it under them would make their descriptor number free
        for the next file opened, so they could read the wrong file.
        """
        with self._lock:
            if self.direct:
                self._retired.append(self.fd)
                self.fd, _ = self.guard.open_resolved(self.path, self.where, os.O_RDONLY)
                self.direct = False

    def read(self, offset: int, length: int) -> int:
        view = _buffer()
        done = 0
        while done < length:
            n = min(length - done, BUFFER_BYTES)
            fd, direct = self.fd, self.direct
            try:
                got = os.preadv(fd, [view[:n]], offset + done)
            except OSError as exc:
                if exc.errno == errno.EINVAL and direct:
                    self._fall_back()
                    continue
                raise
            if not direct and self.drop_pages:
                os.posix_fadvise(fd, offset + done, got, os.POSIX_FADV_DONTNEED)
            if got == 0:
                break
            done += got
        return done

    def read_many(self, offsets: array[int], lengths: array[int], positions: array[int], lo: int, hi: int,
                  short: list[tuple[int, int]]) -> int:
        """The hot path: one `preadv` per read (and the page drop, where pages are dropped), nothing
        else; whatever is not that plain case (a read longer than the buffer, a partial read, an error)
        goes through `read`, which knows what to do."""
        view = _buffer()
        total = 0
        for k in range(lo, hi):
            p = positions[k]
            offset, length = offsets[p], lengths[p]
            try:
                fd, direct = self.fd, self.direct
                if length > BUFFER_BYTES:
                    got = self.read(offset, length)
                else:
                    got = os.preadv(fd, [view[:length]], offset)
                    if not direct and self.drop_pages:
                        os.posix_fadvise(fd, offset, got, os.POSIX_FADV_DONTNEED)
                    if 0 < got < length:
                        got += self.read(offset + got, length - got)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not direct:
                    raise ReadsCut(k, total, exc) from exc
                try:
                    self._fall_back()
                    got = self.read(offset, length)
                except OSError as again:
                    raise ReadsCut(k, total, again) from again
            total += got
            if got < length:
                short.append((k, got))
        return total

    def identity(self) -> tuple[int, float]:
        st = os.fstat(self.fd)
        return st.st_size, st.st_mtime

    def close(self) -> None:
        for fd in (*self._retired, self.fd):
            os.close(fd)


class MountGone(OSError):
    """The gateway mount a warm started on is no longer there (unmounted, lazily or not).

    Its paths then name the empty folder below the mount point, so every open would say
    ENOENT and a studio would hear that its files are `missing`. `ENODEV`: an `io-error`,
    retryable once the mount is back, and not retried within the batch (it will not come
    back in a few hundred milliseconds).
    """

    def __init__(self, root: str) -> None:
        super().__init__(errno.ENODEV, "gateway mount gone")
        self.root = root


class MountReader:
    """The production reader: each file read the way its mount needs (see the module docstring):
    O_DIRECT on a client of the gateway's export, buffered on the gateway's own `fsc` mount.

    The mount table is read again when a file is on a device not seen before (a mount
    that appeared since), so a long-lived worker follows its mounts.
    """

    def __init__(self, guard: Guard, mode: ReadMode | str = ReadMode.AUTO,
                 mounts: Callable[[], Sequence[Mount]] = read_mounts,
                 kernel: Kernel | None = None) -> None:
        self.guard = guard
        self.mode = ReadMode(mode)
        self._mounts = mounts
        self._kernel = kernel or this_kernel()
        self._table: Sequence[Mount] | None = None
        self._choices: dict[int, ReadChoice] = {}
        self._lock = threading.Lock()
        self._root_local: dict[str, str] = {}
        self._root_dev: dict[str, tuple[int, bool]] = {}
        """Each root's local folder -> (device, a mount point?) when this reader first used it."""
        self._noted: dict[str, threading.Event] = {}
        """Each root's local folder -> set once `_root_dev` holds what could be learned of it."""

    def choice(self, path: str, st: os.stat_result | None = None) -> ReadChoice:
        """How the local `path` is read (`st`: what the file system said of it, if known, saving a `stat`);
        raises OSError as `stat` does (a missing file)."""
        dev = (st or os.stat(path)).st_dev
        with self._lock:
            found = self._choices.get(dev)
        if found is not None:
            return found
        table = self._table if self._table is not None else self._mounts()
        mount = by_device(table, device_of(dev))
        if mount is None and self._table is not None:
            table = self._mounts()
            mount = by_device(table, device_of(dev))
        mount = mount or by_path(table, os.path.realpath(path))
        made = choose_read(self.mode, mount, self._kernel)
        with self._lock:
            self._table = table
            self._choices[dev] = made
        return made

    def refusal(self, path: str) -> str | None:
        return self.guard.refusal(path)

    def prepare(self, path: str) -> None:
        """The root's local folder resolved (its own path's lstats, a request at most on a gateway mount) and
        its first look started: the open that follows on another thread then goes straight to the folder's
        and the file's lookups, with no system call before them in which the caller's Python work could
        keep it waiting for the interpreter."""
        root = self._root_of(path)
        if root is None or self.guard.refusal(path):
            return
        self._look(self._root_folder(path))
        try:
            self.guard.resolve(root)
        except OSError:
            pass

    def open(self, path: str) -> OpenFile:
        root = self._root_folder(path)
        self._look(root)
        try:
            folder = self.guard.folder(path)
            c = self.choice(folder.local, folder.stat)
            return _File(self.guard, path, c.direct, c.drop_pages)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise self._gone(root) or exc from None

    def stat(self, path: str) -> None:
        """A LOOKUP and GETATTR of every component through the gateway: warms its attribute and dentry caches."""
        root = self._root_folder(path)
        self._look(root)
        try:
            self.guard.stat(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise self._gone(root) or exc from None

    def listdir(self, path: str) -> int:
        """A READDIR through the gateway: renderers resolve UDIMs and sequences by listing."""
        root = self._root_folder(path)
        self._look(root)
        try:
            return len(self.guard.listdir(path))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise self._gone(root) or exc from None

    def _root_of(self, path: str) -> str | None:
        """The root that holds `path` (the text alone)."""
        return max((r for r in self.guard.roots if r == "/" or path == r or path.startswith(r + "/")), key=len,
                   default=None)

    def _root_folder(self, path: str) -> str | None:
        """The local folder of `path`'s root, as mapped (no IO)."""
        root = self._root_of(path)
        if root is None:
            return None
        local = self._root_local.get(root)
        if local is None:
            local = self._root_local[root] = self.guard.path_map.to_local(root)
        return local

    def _look(self, local: str | None) -> None:
        """The first time a root is used: which device its folder is and whether it is a mount point (the
        mount this warm started on, for `_gone`), looked at on a thread of their own, which also reads the
        mount table `choice` will need.

        Off the first read's way: on a gateway mount the root's `stat` and `ismount` are requests of their
        own, and done before the first file's lookups they cost 2-3.7 ms of the twin's 65 ms to the first
        read. A failed open waits for the look (`_gone`).
        """
        if local is None:
            return
        with self._lock:
            if local in self._noted:
                return
            self._noted[local] = threading.Event()
        threading.Thread(target=self._note, args=(local,), name="prewarm-note-root", daemon=True).start()

    def _note(self, local: str) -> None:
        try:
            self._root_dev[local] = (os.stat(local).st_dev, os.path.ismount(local))
        except OSError:
            pass
        finally:
            self._noted[local].set()
        if self._table is None:
            try:
                table = self._mounts()
            except OSError:
                return  # `choice` reads it itself, and says why it cannot
            with self._lock:
                if self._table is None:
                    self._table = table

    def _gone(self, local: str | None) -> MountGone | None:
        """`MountGone` if the root's folder is no longer the mount (device) it was when first seen."""
        noted = None if local is None else self._noted.get(local)
        if local is None or noted is None or not noted.wait(NOTE_WAIT_S) or local not in self._root_dev:
            return None
        dev, was_mount = self._root_dev[local]
        try:
            now = os.stat(local).st_dev
        except OSError:
            return MountGone(local)
        return MountGone(local) if now != dev or (was_mount and not os.path.ismount(local)) else None


def site_reader(settings: Settings) -> MountReader:
    """The reader of this machine: its roots and its path map through one guard, its `read_mode`."""
    return MountReader(Guard(settings.allowed_roots(), settings.path_map), settings.read_mode)


def keep_open_default() -> int:
    """Files an `OpenOnce` keeps open: 1,024, or a quarter of this process's descriptor limit if lower."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(1024, soft // 4)) if soft != resource.RLIM_INFINITY else 1024


class _Kept:
    __slots__ = ("handle", "users")

    def __init__(self, handle: OpenFile) -> None:
        self.handle = handle
        self.users = 0


class _Shared:
    """One user's view of a file `OpenOnce` keeps open: closing it hands the descriptor back."""

    __slots__ = ("size", "mtime", "regular", "_owner", "_path", "_kept", "_closed")

    def __init__(self, owner: OpenOnce, path: str, kept: _Kept) -> None:
        h = kept.handle
        self.size, self.mtime, self.regular = h.size, h.mtime, h.regular
        self._owner, self._path, self._kept, self._closed = owner, path, kept, False

    def read(self, offset: int, length: int) -> int:
        return self._kept.handle.read(offset, length)

    def read_many(self, offsets: array[int], lengths: array[int], positions: array[int], lo: int, hi: int,
                  short: list[tuple[int, int]]) -> int:
        return self._kept.handle.read_many(offsets, lengths, positions, lo, hi, short)

    def identity(self) -> tuple[int, float]:
        return self._kept.handle.identity()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._owner.release(self._path, self._kept)


class OpenOnce:
    """A reader that opens each file once per warm, however many batches read it.

    An embedded warm cuts a plan into batches, and a file's ranges may fall in many of
    them: opening it again in each cost a LOOKUP, an OPEN and a GETATTR at the gateway
    every time (6,000 opens through the guard for 2,000 files). Files no batch is reading
    stay open, the least recently used closed first beyond `keep`, so descriptors stay
    bounded whatever the plan's size. The identity a batch checks is the one seen at the
    first open; the loop checks it again after each file's last read (`OpenFile.identity`).
    """

    def __init__(self, reader: Reader, keep: int | None = None) -> None:
        self.reader = reader
        self.keep = keep if keep is not None else keep_open_default()
        self._lock = threading.Lock()
        self._files: OrderedDict[str, _Kept] = OrderedDict()
        self._last: frozenset[str] = frozenset()
        self._ahead: threading.Thread | None = None
        self._opening: dict[str, threading.Event] = {}
        """Paths a thread is opening now: others wait for it rather than open them twice."""
        self.opens = 0

    def last_reads(self, paths: frozenset[str]) -> None:
        """Files whose last reads are in the batch about to run: closed as soon as it is done with
        them, rather than kept for batches that will not read them (and all closed at the end)."""
        self._last = paths

    def refusal(self, path: str) -> str | None:
        return self.reader.refusal(path)

    def prepare(self, path: str) -> None:
        self.reader.prepare(path)

    def stat(self, path: str) -> None:
        self.reader.stat(path)

    def listdir(self, path: str) -> int:
        return self.reader.listdir(path)

    def open(self, path: str) -> OpenFile:
        return _Shared(self, path, self._use(path))

    def _use(self, path: str) -> _Kept:
        """The kept descriptor of `path`, or a new one, with one more user; while another thread is
        opening `path`, wait for it rather than open it again (after a failure there, open it here, to
        meet the error anew)."""
        while True:
            with self._lock:
                kept = self._files.get(path)
                if kept is not None:
                    self._files.move_to_end(path)
                    kept.users += 1
                    return kept
                busy = self._opening.get(path)
                if busy is None:
                    busy = self._opening[path] = threading.Event()
                    break
            busy.wait()
        try:
            handle = self.reader.open(path)
        except BaseException:
            with self._lock:
                del self._opening[path]
            busy.set()
            raise
        with self._lock:
            self.opens += 1
            del self._opening[path]
            kept = self._files[path] = _Kept(handle)
            kept.users += 1
            closing = self._trim()
        busy.set()
        for k in closing:
            k.handle.close()
        return kept

    def release(self, path: str, kept: _Kept) -> None:
        with self._lock:
            kept.users -= 1
            if kept.users == 0 and path in self._last and self._files.get(path) is kept:
                del self._files[path]
            closing = [kept] if kept.users == 0 and self._files.get(path) is not kept else []
            closing += self._trim()
        for k in closing:  # outside the lock: a close is a round trip on some mounts
            k.handle.close()

    def _trim(self) -> list[_Kept]:
        """Forget the least recently used files nobody reads until at most `keep` are open (lock held);
        the caller closes them."""
        if len(self._files) <= self.keep:
            return []
        out = []
        for path, kept in list(self._files.items()):
            if len(self._files) <= self.keep:
                break
            if kept.users == 0:
                del self._files[path]
                out.append(kept)
        return out

    def open_ahead(self, path: str) -> None:
        """Open `path` on a thread of its own and keep it open: the warm's first file, whose open (two
        round trips of lookups or more on a cold gateway) then overlaps the cutting of the first batch
        and the start of its threads. What of the open needs no lookup of the file's own is done first,
        here (`Reader.prepare`), so the thread's first system call is a lookup, not one that returns to
        find this thread cutting the batch and holding the interpreter (up to the interpreter's 5 ms
        switch interval each). A failure is left for the batch's own open to meet and report."""
        def run() -> None:
            try:
                kept = self._use(path)
            except OSError:
                return
            with self._lock:  # kept without a user, not closed as a last read would be
                kept.users -= 1
                closing = self._trim()
            for k in closing:
                k.handle.close()

        self.reader.prepare(path)
        self._ahead = threading.Thread(target=run, name="prewarm-open-ahead", daemon=True)
        self._ahead.start()

    def close(self) -> None:
        """Close every file kept open; the warm is over."""
        if self._ahead is not None:
            self._ahead.join()
        with self._lock:
            files, self._files = list(self._files.values()), OrderedDict()
        for kept in files:
            kept.handle.close()
