"""The warm loop: read one batch through the gateway mount, many reads in flight.

Used unchanged by the embedded mode and by the Celery task; everything it touches
(the reader, the throttle, the dedupe index, the clock) is passed in, so tests run
it on real files with no mocks. It speaks studio paths only: the reader owns the
site's path map and its guard. A path whose text lies outside the roots is refused
before anything is opened; one that a symlink leads out of them is refused where it
would be opened (`Refused`). Either is an `outside-roots` finding, and the rest of
the batch is warmed.

Latency, not bandwidth, limits a naive warmer: one reader moves one request per
round trip. So opens, reads and metadata operations run on as many threads as the
in-flight window says (`window.Window`: sized to bandwidth x RTT from the reads'
own latencies and throughput). Each thread takes its next work itself, under one
lock, and settles it there: no future per read and no central loop to wake. The
system call runs with the lock and the GIL released. The batch's reads stay columns
(`batches.Reads`): each file holds the positions of its reads, the ready queue holds
one entry per open file, and a thread takes a run of one file's reads at once
(`CHUNK_READS` at most, only when far more are ready than threads: page-cached reads
of microseconds) and does them in `OpenFile.read_many`, one `preadv` each, with no
object per read. Work is taken preferring reads of files already open (plan order)
over opening the next file, and each file is opened once per batch (once per warm
through `reader.OpenOnce`). The batch's first file is opened first of all, then, once it
is open, directory listings go (the other opens of a listed folder wait for them), then opens,
and (also once it is open) the plan's other metadata operations (stats of files the render looks at) only
fill slots no open needs: on a cold gateway every one of them costs round trips, and
before any data moves they only delay the first byte (shot100 at 30 ms: 16 stats took
every slot before the first open).

What can go wrong is reported, never guessed around:
- a file whose size or mtime differs from the plan, or that reads short, is
  *changed*: warming it would cache bytes the render will not read; ranges past the
  end of a file are not read at all (a plan cannot make a worker read a file's
  end a million times);
- missing, denied, refused and changed are final: their ranges are not offered to
  `--retry`, which would only fail again; EIO, ETIMEDOUT and ESTALE are retried with
  exponential backoff a bounded number of times, and what still fails is retryable.
"""

from __future__ import annotations

import errno
import heapq
import logging
import posixpath
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from prewarm.plan.access import Op
from prewarm.plan.ranges import ByteRange
from prewarm.plan.records import FileInfo, MetaOp
from prewarm.site.guard import NotAFile, Refused
from prewarm.warm.batches import Batch
from prewarm.warm.reader import OpenFile, Reader, ReadsCut
from prewarm.warm.results import (
    Claim,
    Dedupe,
    FileFinding,
    FindingKind,
    Snapshot,
    WarmResult,
)
from prewarm.warm.throttle import Throttle, Unthrottled
from prewarm.warm.window import QUICK_RTT_S, Window

T = TypeVar("T")

log = logging.getLogger(__name__)

TRANSIENT = frozenset({errno.EIO, errno.ETIMEDOUT, errno.ESTALE, errno.EAGAIN})
"""Errors a gateway under load or failing over returns for a moment: worth another try."""

MTIME_SLACK = 1e-6
"""mtimes go through JSON as floats; anything closer than this is the same mtime."""

STOP_POLL_S = 0.5
"""How often a running batch asks whether its job was cancelled."""

STALL_S = 30.0
"""A gateway that answers nothing for this long is down or cut off, not slow: even a cold 1 MiB READ
over a 300 ms link takes a few seconds."""

PROGRESS_S = 0.02
"""Progress is reported after a read at most this often (and after every open, listing or stat, and
at the end): a snapshot per read cost more than the read on page-cached files. Samplers keep one
point a second, a progress line updates a few times a second."""

RETRYABLE = frozenset({FindingKind.IO_ERROR})
"""Findings whose ranges `prewarm warm --retry` reads again; the others would only fail again."""


def classify(exc: OSError) -> FindingKind:
    if isinstance(exc, Refused):
        return FindingKind.OUTSIDE
    if isinstance(exc, NotAFile):
        return FindingKind.CHANGED
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return FindingKind.MISSING
    if exc.errno in (errno.EACCES, errno.EPERM):
        return FindingKind.DENIED
    if exc.errno == errno.EISDIR:
        return FindingKind.CHANGED
    return FindingKind.IO_ERROR


def detail(exc: OSError) -> str:
    """What went wrong, in words that name no local path of this machine."""
    if isinstance(exc, Refused):
        return f"{exc.why}: not read"
    if isinstance(exc, NotAFile):
        return exc.why
    return exc.strerror or type(exc).__name__


@dataclass(frozen=True)
class WarmContext:
    """Everything the loop touches, passed in."""

    reader: Reader
    in_flight: int
    throttle: Throttle = field(default_factory=Unthrottled)
    dedupe: Dedupe | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    retries: int = 3
    backoff_s: float = 0.05
    should_stop: Callable[[], bool] | None = None
    progress: Callable[[Snapshot], None] | None = None
    """Called after each completion with a frozen snapshot (never the live result)."""
    stall_s: float = STALL_S
    """Nothing completed for this long while operations wait: the warm says it is stalled (a log warning)."""
    window: Window | None = None
    """The in-flight window, kept across the batches of one warm so what it measured carries over;
    None: a window of this batch alone, starting at `in_flight`."""


CHUNK_READS = 64
"""Reads a thread takes of one file at once, at most: where reads take microseconds (page-cached files),
taking each under the lock, settling it and measuring it cost more than the read; where they take a
round trip, threads take one read at a time (see `_Run._chunk`)."""

class _File:
    """A file of the batch: the positions of its reads in the batch's columns, and how far they are taken."""

    __slots__ = ("path", "slot", "pos", "next", "left", "handle", "ident", "read_any")

    def __init__(self, path: str, slot: int, pos: array[int]) -> None:
        self.path = path
        self.slot = slot
        self.pos = pos
        self.next = 0
        """Index in `pos` of the next read no thread has taken."""
        self.left = len(pos)
        """Reads taken or not whose outcome is not settled yet."""
        self.handle: OpenFile | None = None
        self.ident: FileInfo | None = None
        self.read_any = False


@dataclass(frozen=True, slots=True)
class _Reads:
    """Reads `pos[lo:hi]` of one file, done one after the other by one thread."""

    file: _File
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class _Open:
    file: _File


@dataclass(frozen=True, slots=True)
class _Meta:
    op: MetaOp


@dataclass(frozen=True, slots=True)
class _Close:
    """A file's reads are over: its identity looked at again, then closed, outside the lock (on NFS
    either can be a round trip, which under the lock would hold up every reader thread)."""

    file: _File


_Work = _Reads | _Open | _Meta | _Close


@dataclass(slots=True)
class _Done:
    """What a run of reads did: reads issued, bytes read and skipped (dedupe), and per read (by index
    in the file's positions) the short ones and the failed ones."""

    reads: int = 0
    got: int = 0
    skipped: int = 0
    short: list[tuple[int, int]] = field(default_factory=list)
    failed: list[tuple[int, OSError]] = field(default_factory=list)


class _Run:
    def __init__(self, batch: Batch, ctx: WarmContext) -> None:
        self.batch = batch
        self.ctx = ctx
        self.result = WarmResult()
        cols = batch.reads
        self.offset, self.length = cols.offset, cols.length
        self.files: dict[str, _File] = {}
        self.by_slot: list[_File | None] = [None] * len(cols.paths)
        self.to_open: deque[str] = deque()
        self.lead: _File | None = None
        """The file of the batch's first read, opened first."""
        self.leading: _File | None = None
        """That file while its open is out: listings and stats wait for it (see `_next`)."""
        self.listings: deque[MetaOp] = deque()
        self.meta: deque[MetaOp] = deque()
        self.ready: list[tuple[int, int]] = []
        """(position of a file's next read, its slot) per open file with reads to take: plan order."""
        self.ready_reads = 0
        self.closing: deque[_File] = deque()
        self.failed_here: set[str] = set()
        self.listing: dict[str, list[str]] = {}
        """Directories listed in this batch -> files whose open waits for the listing (see batches.LIST_DIR_MIN)."""
        self.stopped = False
        self._next_poll = 0.0
        self.claimed: dict[tuple[str, int], Claim] = {}
        self.attempted: set[tuple[str, int]] = set()
        self.window = ctx.window or Window(ctx.in_flight)
        self.fast = ctx.dedupe is None and isinstance(ctx.throttle, Unthrottled)
        """Reads go straight to `OpenFile.read_many`: nothing to claim or to pace between them."""
        self.cond = threading.Condition()
        self.active = 0
        self.threads = 0
        self.extra: list[threading.Thread] = []
        """Threads started by other threads as the window grew: joined before the batch ends."""
        self.error: BaseException | None = None
        self.next_progress = 0.0
        self.last_done = time.monotonic()
        for op in batch.meta:
            if why := ctx.reader.refusal(op.path):
                self._finding(op.path, FindingKind.OUTSIDE, f"{why}: not read")
                self.result.meta_failed += 1
            elif op.op is Op.READDIR:
                self.listings.append(op)
                self.listing[op.path.rstrip("/") or "/"] = []
            else:
                self.meta.append(op)
        for slot, (path, pos) in enumerate(zip(cols.paths, cols.by_file(), strict=True)):
            if why := ctx.reader.refusal(path):
                self._finding(path, FindingKind.OUTSIDE, f"{why}: not read")
                self.result.bytes_failed += sum(self.length[p] for p in pos)
                continue
            f = self.files[path] = self.by_slot[slot] = _File(path, slot, pos)
            if self.lead is None:
                # The batch's first file is opened before anything else, beside its folder's listing:
                # the listing only saves later opens their round trips, the first read need not wait.
                self.lead = f
                continue
            parked = self.listing.get(posixpath.dirname(path))
            (self.to_open if parked is None else parked).append(path)
        if ctx.dedupe is not None:
            self._preclaim(ctx.dedupe)

    def _piece(self, f: _File, k: int) -> ByteRange:
        """The `k`th read of `f` as a value (for the dedupe index and the failed ranges)."""
        p = f.pos[k]
        return ByteRange(f.path, self.offset[p], self.length[p])

    def _preclaim(self, dedupe: Dedupe) -> None:
        """Claim the batch's pieces up front, by planned identity: a file whose every piece is
        already warm is not even opened (a second job over the same data sends the gateway nothing)."""
        items = [(self.batch.files[f.path], self._piece(f, k)) for f in self.files.values()
                 if f.path in self.batch.files for k in range(len(f.pos))]
        for (_, piece), claim in zip(items, dedupe.claim_now(items), strict=True):
            self.claimed[(piece.path, piece.offset)] = claim
        for f in self.files.values():
            keep = array("q", (p for p in f.pos if self.claimed.get((f.path, self.offset[p])) is not Claim.SKIP))
            self.result.bytes_skipped += sum(self.length[p] for p in f.pos) - sum(self.length[p] for p in keep)
            f.pos, f.left = keep, len(keep)
        gone = {path for path, f in self.files.items() if not f.pos}
        self.to_open = deque(p for p in self.to_open if p not in gone)
        if self.lead is not None and self.lead.path in gone:
            self.lead = None
        for d, parked in self.listing.items():
            self.listing[d] = [p for p in parked if p not in gone]

    def _finding(self, path: str, kind: FindingKind, text: str) -> None:
        self.failed_here.add(path)
        self.result.findings.setdefault(path, FileFinding(path, kind, text))

    def _retrying(self, fn: Callable[[], T], failed: OSError | None = None) -> T:
        """`fn()`, tried again after transient errors with exponential backoff; `failed`: its first
        try already failed so (a run of reads stopped there), and counts as one."""
        attempt = 0
        while True:
            if failed is None:
                try:
                    return fn()
                except OSError as exc:
                    failed = exc
            if isinstance(failed, Refused) or failed.errno not in TRANSIENT or attempt >= self.ctx.retries:
                raise failed
            self.ctx.sleep(self.ctx.backoff_s * 2 ** attempt)
            attempt += 1
            failed = None

    # work done in reader threads, outside the lock

    def _open(self, f: _File) -> OpenFile:
        return self._retrying(lambda: self.ctx.reader.open(f.path))

    def _read(self, f: _File, piece: ByteRange) -> tuple[bool, int]:
        """(read?, bytes): read False means the dedupe index says the gateway holds it."""
        handle, ident, dedupe = f.handle, f.ident, self.ctx.dedupe
        assert handle is not None and ident is not None
        if dedupe is None:
            self.ctx.throttle.acquire(piece.length)
            return True, self._retrying(partial(handle.read, piece.offset, piece.length))
        self.attempted.add((piece.path, piece.offset))
        pre = self.claimed.get((piece.path, piece.offset))
        if pre is not Claim.READ and not dedupe.claim(ident, piece):
            return False, 0
        try:
            self.ctx.throttle.acquire(piece.length)
            got = self._retrying(lambda: handle.read(piece.offset, piece.length))
        except BaseException:
            dedupe.release(ident, piece)
            raise
        (dedupe.warmed if got == piece.length else dedupe.release)(ident, piece)
        return True, got

    def _reads(self, f: _File, lo: int, hi: int) -> _Done:
        """Reads `lo..hi-1` of `f`, one after the other; a read that fails is retried alone and the
        run goes on after it, so each read has the fate it would have had alone."""
        done = _Done()
        handle = f.handle
        assert handle is not None
        if not self.fast:
            for k in range(lo, hi):
                piece = self._piece(f, k)
                try:
                    read, got = self._read(f, piece)
                except OSError as exc:
                    done.failed.append((k, exc))
                    continue
                if not read:
                    done.skipped += piece.length
                    continue
                done.reads += 1
                done.got += got
                if got < piece.length:
                    done.short.append((k, got))
            return done
        k = lo
        while k < hi:
            try:
                done.got += handle.read_many(self.offset, self.length, f.pos, k, hi, done.short)
                done.reads += hi - k
                break
            except ReadsCut as cut:
                done.got += cut.got
                done.reads += cut.at - k
                k = cut.at + 1
                p = f.pos[cut.at]
                try:
                    got = self._retrying(partial(handle.read, self.offset[p], self.length[p]), cut.cause)
                except OSError as exc:
                    done.failed.append((cut.at, exc))
                    continue
                done.reads += 1
                done.got += got
                if got < self.length[p]:
                    done.short.append((cut.at, got))
        return done

    def _meta(self, op: MetaOp) -> None:
        reader = self.ctx.reader
        if op.op is Op.READDIR:
            self._retrying(lambda: reader.listdir(op.path))
        elif op.op is Op.OPEN:
            self._retrying(lambda: reader.open(op.path)).close()
        else:
            self._retrying(lambda: reader.stat(op.path))

    # the engine: worker threads that take their own work

    def run(self) -> WarmResult:
        """Warm the batch on `window.size` threads, each taking the next work itself under one lock.

        No future per read and no central loop waking for each completion: a thread that
        finishes a read settles it and takes the next in the same critical section, and
        the system call itself (`preadv`) runs with the lock and the GIL released.
        """
        threads: list[threading.Thread] = []
        try:
            with self.cond:
                self._spawn(threads)
            self._watch(threads)
        finally:
            self._close_all()
        if self.error is not None:
            raise self.error
        if self.ctx.progress is not None:
            self.ctx.progress(self.result.snapshot(0))
        if self.ctx.dedupe is not None:
            self.ctx.dedupe.flush()
            self._release_unread(self.ctx.dedupe)
        self._count_files()
        return self.result

    def _watch(self, threads: list[threading.Thread]) -> None:
        """Wait for the reader threads, saying so when nothing has completed for `stall_s` while
        operations wait on the gateway (a gateway stopped or a link down leaves a warm silent otherwise)."""
        stalled = False
        for t in threads:
            while t.is_alive():
                t.join(timeout=min(1.0, self.ctx.stall_s / 4))
                idle = time.monotonic() - self.last_done
                if not stalled and idle >= self.ctx.stall_s and self.active:
                    stalled = True
                    log.warning("warm stalled: nothing has completed for %.0f s, %d operation(s) waiting on the "
                                "gateway (is it up and its link? `prewarm doctor` checks)", idle, self.active)
                elif stalled and idle < self.ctx.stall_s:
                    stalled = False
                    log.warning("warm resumed: the gateway answers again")

    def _spawn(self, threads: list[threading.Thread]) -> None:
        """Start threads up to the window (lock held): more as the window grows, never more than the work."""
        want = min(self.window.size, self.pending_work())
        while self.threads < want:
            t = threading.Thread(target=self._worker, name="prewarm-read", daemon=True)
            self.threads += 1
            threads.append(t)
            t.start()

    def _worker(self) -> None:
        cond = self.cond
        with cond:
            while True:
                work = self._take()
                if work is None:
                    cond.notify_all()
                    return
                self.active += 1
                cond.release()
                try:
                    t0 = time.monotonic()
                    outcome, exc = self._do(work), None
                except BaseException as e:  # settled below, in the lock: the file's finding or a broken environment
                    outcome, exc = None, e
                finally:
                    cond.acquire()
                self.active -= 1
                self.last_done = time.monotonic()
                reads = isinstance(work, _Reads)
                if exc is None and not (reads and not outcome.reads):
                    # opens and metadata are round trips too: counted with no bytes, so a warm of many
                    # small files sizes its window for open + read, not for the read alone
                    self.window.observe(self.last_done - t0, outcome.got if reads else 0, self.last_done,
                                        outcome.reads if reads else 1)
                try:
                    self._settle(work, outcome, exc)
                except BaseException as e:
                    self.error = self.error or e
                if self.ctx.progress is not None and (not reads or self.last_done >= self.next_progress):
                    self.next_progress = self.last_done + PROGRESS_S
                    self.ctx.progress(self.result.snapshot(self.active))
                room = self.window.size - self.active - 1
                if room > 0:
                    if self.window.size > self.threads:
                        self._spawn(self.extra)
                    # Wake as many idle threads as there is work and room for, besides this one (it takes
                    # its next work itself): waking all of them after each open (hundreds of threads,
                    # thousands of opens) cost more than the reads.
                    wake = min(self.pending_work() - 1, room)
                    if wake > 0:
                        cond.notify(wake)

    def _take(self) -> _Work | None:
        """The next work for this thread (lock held), waiting while other threads' work may make more;
        None once everything is done, stopped or broken."""
        while True:
            if self.error is None and self.active < self.window.size and not self._stop_requested():
                work = self._next()
                if work is not None:
                    return work
            if self.active == 0 or self.error is not None:
                return None
            self.cond.wait()

    def _do(self, work: _Work) -> Any:
        match work:
            case _Reads(file=f, lo=lo, hi=hi):
                return self._reads(f, lo, hi)
            case _Open(file=f):
                return self._open(f)
            case _Meta(op=op):
                return self._meta(op)
            case _Close(file=f):
                return self._close(f)
        raise AssertionError(work)

    def _close(self, f: _File) -> tuple[int, float] | None:
        """(size, mtime) now, if the file's identity is to be checked again; the handle closed either way."""
        handle = f.handle
        assert handle is not None
        try:
            return handle.identity() if f.read_any and f.path not in self.failed_here else None
        finally:
            handle.close()

    def _close_all(self) -> None:
        for t in self.extra:
            t.join()
        for f in self.files.values():
            if f.handle is not None:
                f.handle.close()
                f.handle = None

    def _release_unread(self, dedupe: Dedupe) -> None:
        """Pieces claimed up front but never read (file changed or missing, batch cancelled): let others have them."""
        for f in self.files.values():
            planned = self.batch.files.get(f.path)
            for k in range(len(f.pos)):
                key = (f.path, self.offset[f.pos[k]])
                if planned is not None and self.claimed.get(key) is Claim.READ and key not in self.attempted:
                    dedupe.release(planned, self._piece(f, k))

    def _stop_requested(self) -> bool:
        if self.stopped or self.ctx.should_stop is None:
            return self.stopped
        now = self.ctx.clock()
        if now >= self._next_poll:
            self._next_poll = now + STOP_POLL_S
            self.stopped = self.ctx.should_stop()
        return self.stopped

    def pending_work(self) -> int:
        """Work that threads could take now: a run of reads counts once."""
        runs = -(-self.ready_reads // self._chunk()) if self.ready_reads else 0
        meta = len(self.listings) + len(self.meta) if self.leading is None else 0
        return len(self.closing) + runs + (self.lead is not None) + meta + len(self.to_open)

    def _chunk(self) -> int:
        """Reads a thread takes of one file at once: one, unless the reads are quick (`QUICK_RTT_S`: a run through a
        gateway would hold a thread for several round trips, slowing a cancel and the warm's tail) and
        far more are ready than threads, up to `CHUNK_READS`; never when each read is claimed or paced."""
        if not self.fast or not self.window.min_rtt < QUICK_RTT_S:
            return 1
        return max(1, min(CHUNK_READS, self.ready_reads // (4 * self.window.size)))

    def _next(self) -> _Work | None:
        if self.closing:
            return _Close(self.closing.popleft())
        if self.ready:
            _, slot = heapq.heappop(self.ready)
            f = self.by_slot[slot]
            assert f is not None
            lo = f.next
            hi = f.next = min(len(f.pos), lo + self._chunk())
            self.ready_reads -= hi - lo
            if hi < len(f.pos):
                heapq.heappush(self.ready, (f.pos[hi], slot))
            return _Reads(f, lo, hi)
        if self.lead is not None:
            f, self.lead = self.lead, None
            self.leading = f
            return _Open(f)
        if self.listings and self.leading is None:
            # A gateway without parallel directory operations (FUSE, the twin) serialises a folder's
            # LOOKUPs with its READDIRs, and a listing's or a stat's own lookups with the first file's:
            # one that got in first would hold the first read back by its round trip.
            return _Meta(self.listings.popleft())
        if self.to_open:
            return _Open(self.files[self.to_open.popleft()])
        if self.meta and self.leading is None:
            return _Meta(self.meta.popleft())
        return None

    def _settle(self, work: _Work, outcome: Any, exc: BaseException | None) -> None:
        match work:
            case _Meta(op=op):
                if op.op is Op.READDIR:
                    self.to_open.extend(self.listing.pop(op.path.rstrip("/") or "/", ()))
                if exc is None:
                    self.result.meta_done += 1
                else:
                    self.result.meta_failed += 1
                    self._os_finding(op.path, exc)
            case _Open(file=f):
                if f is self.leading:
                    self.leading = None
                self._opened(f, outcome if exc is None else None, exc)
            case _Reads(file=f, lo=lo, hi=hi):
                if exc is not None:
                    kind = self._os_finding(f.path, exc)
                    for k in range(lo, hi):
                        self._fail(self._piece(f, k), kind)
                else:
                    self._account(f, outcome)
                f.left -= hi - lo
                if f.left == 0 and f.handle is not None:
                    self.closing.append(f)
            case _Close(file=f):
                f.handle = None
                self._recheck(f, outcome, exc)

    def _os_finding(self, path: str, exc: BaseException) -> FindingKind:
        if not isinstance(exc, OSError):
            raise exc
        kind = classify(exc)
        self._finding(path, kind, detail(exc))
        return kind

    def _fail(self, piece: ByteRange, kind: FindingKind) -> None:
        self.result.bytes_failed += piece.length
        if kind in RETRYABLE:
            self.result.failed.append(piece)

    def _fail_file(self, f: _File, kind: FindingKind) -> None:
        for k in range(len(f.pos)):
            self._fail(self._piece(f, k), kind)

    def _opened(self, f: _File, handle: OpenFile | None, exc: BaseException | None) -> None:
        if handle is None:
            assert exc is not None
            self._fail_file(f, self._os_finding(f.path, exc))
            return
        planned = self.batch.files.get(f.path)
        problem = None
        if not handle.regular:
            problem = "no longer a regular file"
        elif planned is not None and handle.size != planned.size:
            problem = f"size {planned.size} in the plan, {handle.size} now"
        elif planned is not None and abs(handle.mtime - planned.mtime) > MTIME_SLACK:
            problem = f"modified since planned (mtime {planned.mtime} -> {handle.mtime})"
        if problem is not None:
            handle.close()
            self._finding(f.path, FindingKind.CHANGED, problem)
            self._fail_file(f, FindingKind.CHANGED)
            return
        f.handle = handle
        f.ident = planned or FileInfo(f.path, handle.size, handle.mtime)
        inside = self.batch.reads.starting_before(f.pos, handle.size)
        if inside is not None:
            self._finding(f.path, FindingKind.CHANGED,
                          f"ranges past the end of the file ({handle.size} bytes): not read")
            for k in range(len(f.pos)):
                if self.offset[f.pos[k]] >= handle.size:
                    self._fail(self._piece(f, k), FindingKind.CHANGED)
            f.pos, f.left = inside, len(inside)
        if f.pos:
            heapq.heappush(self.ready, (f.pos[0], f.slot))
            self.ready_reads += len(f.pos)
        else:
            handle.close()
            f.handle = None

    def _recheck(self, f: _File, now: tuple[int, float] | None, exc: BaseException | None) -> None:
        """The file's identity again after its last read: one written to while it was warmed (a
        render writing it, an artist saving over it) holds other bytes than the plan's."""
        if exc is not None:
            self._os_finding(f.path, exc)
            return
        was = f.ident
        if now is None or was is None:
            return
        size, mtime = now
        if size != was.size or abs(mtime - was.mtime) > MTIME_SLACK:
            self._finding(f.path, FindingKind.CHANGED,
                          f"modified while warmed (size {was.size} -> {size}, mtime {was.mtime} -> {mtime})")

    def _account(self, f: _File, done: _Done) -> None:
        self.result.bytes_skipped += done.skipped
        self.result.reads += done.reads
        self.result.bytes_done += done.got
        f.read_any = f.read_any or done.reads > 0
        for k, got in done.short:
            piece = self._piece(f, k)
            self._finding(f.path, FindingKind.CHANGED, f"short read at {piece.offset + got}: file truncated?")
            self._fail(ByteRange(piece.path, piece.offset + got, piece.length - got), FindingKind.CHANGED)
        for k, exc in done.failed:
            self._fail(self._piece(f, k), self._os_finding(f.path, exc))

    def _count_files(self) -> None:
        for path in self.batch.closes:
            f = self.files.get(path)
            if path in self.failed_here:
                self.result.files_failed += 1
            elif f is not None and not f.read_any and f.left == 0:
                self.result.files_skipped += 1
            elif f is not None and f.left == 0:
                self.result.files_done += 1


def execute_batch(batch: Batch, ctx: WarmContext) -> WarmResult:
    """Warm one batch; never raises for a file's problem, only for a broken environment."""
    return _Run(batch, ctx).run()
