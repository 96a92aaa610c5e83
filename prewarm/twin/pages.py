"""The gateway's page cache and fscache, page by page: what a knfsd proxy really fetches.

A READ reaching a knfsd proxy is served by its NFS client mount, whose page cache asks
the origin for missing pages only, as Linux readahead decides (`readahead.py`): a
standalone random 37 KB tile read costs 10 pages, a sequential run is fetched up to
`read_ahead_kb` ahead. Contiguous missing pages go out as READs of at most `rsize`.
cachefiles keeps exactly the pages fetched (sparse files, 4 KiB blocks), so each
cached file is one sparse file here; a hit is one `pread` outside the lock on a
descriptor from a bounded set (`cache.Descriptors`, as in the chunk model), never a
descriptor or a mapping per cached file: 200,000 distinct files stay within any
descriptor limit and `vm.max_map_count`.

What is simplified, and why it does not change what crosses the WAN:
- one tier: a page fetched stays until its file is culled (the kernel's page cache in
  front of fscache only decides how fast a hit is);
- one readahead state per file, as knfsd keeps one open file per inode for all clients;
- the cache culls whole files, least recently used first, as cachefilesd does.

Readahead beyond what a read asked for is fetched in the background (a read waits
only for its own pages, as on Linux). WAN bytes and READs are counted when a READ is
sent, so the counters are exact the moment the client read returns; `in_flight`
says whether background READs are still on the link.

The fetch is `(path, offset, length) -> bytes`, so the cache is tested without FUSE.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prewarm.twin.cache import CacheCounters, Descriptors, Fetch
from prewarm.twin.readahead import (
    MISSING,
    PAGE,
    PENDING,
    READY,
    FilePages,
    Run,
    read_pages,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024

MAX_FILES = 1_000_000
"""Cached files at most: an index entry and a sparse store file each (no descriptor kept)."""

READ_ATTEMPTS = 3
"""A read whose pages another READ failed to bring fetches them itself, this many times at most."""


@dataclass(eq=False)
class _File:
    name: str
    """The path inside the export, as the fetch takes it."""
    version: Hashable
    size: int
    store: Path
    """The sparse file holding its pages."""
    pages: FilePages
    cond: threading.Condition
    held: int = 0
    """Pages READY in this file (what it costs the cache)."""
    live: bool = True
    """False once culled or replaced: fetches still on their way land here for their waiters only."""


class PageCache:
    """Pages of origin files, fetched as Linux readahead would, kept until their file is culled."""

    def __init__(self, directory: Path, capacity: int, fetch: Fetch, rsize: int = MiB,
                 read_ahead_kb: int = 8192, workers: int = 32) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        if rsize < PAGE or read_ahead_kb * 1024 < PAGE:
            raise ValueError("rsize and read_ahead_kb must be at least one page")
        self.capacity = capacity
        self.rsize_pages = rsize // PAGE
        self.ra_pages = read_ahead_kb * 1024 // PAGE
        self._fetch = fetch
        self._dir = Path(directory) / "pages"
        shutil.rmtree(self._dir, ignore_errors=True)  # the index lives in memory: older files are garbage
        self._dir.mkdir(parents=True)
        self._lock = threading.Lock()
        self._files: OrderedDict[str, _File] = OrderedDict()
        self._fds = Descriptors()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="twin-readahead")
        self._seq = 0
        self._used = 0
        self._in_flight = 0
        self._zero()

    def _zero(self) -> None:
        self._hits = self._misses = self._joined = self._evictions = 0
        self._wan = self._ahead = 0

    def read(self, path: str, version: Hashable, size: int, offset: int, length: int) -> bytes:
        """Bytes `[offset, offset+length)` of a file of `size` bytes, clipped at its end."""
        end = min(offset + length, size)
        if end <= offset:
            return b""
        first, last = offset // PAGE, -(-end // PAGE)
        for attempt in range(READ_ATTEMPTS):
            f, own = self._start(path, version, size, offset, length, first, last, attempt)
            try:
                self._run_own(f, own)
                with self._lock:
                    while f.pages.state.find(PENDING, first, last) >= 0:
                        f.cond.wait()
                    ready = f.pages.state.find(MISSING, first, last) < 0
                if ready:
                    return os.pread(self._fds.fd(f.store), end - offset, offset)
            finally:
                self._fds.release(f.store)
        raise OSError(5, "pages could not be fetched from the origin", path)

    def _start(self, path: str, version: Hashable, size: int, offset: int, length: int,
               first: int, last: int, attempt: int) -> tuple[_File, list[Run]]:
        """Run readahead for one read; send the READs beyond it in the background, return its own."""
        with self._lock:
            f = self._file(path, version, size)
            self._fds.hold(f.store)  # the caller's, until its read is done
            waiting = f.pages.state.find(PENDING, first, last) >= 0
            pieces = [p for a, b in read_pages(f.pages, offset, length, size, self.ra_pages)
                      for p in self._split(a, b)]
            own = [(a, b) for a, b in pieces if a < last and b > first]
            ahead = [(a, b) for a, b in pieces if not (a < last and b > first)]
            for a, b in pieces:
                self._wan += min(b * PAGE, size) - a * PAGE
            self._ahead += sum(min(b * PAGE, size) - a * PAGE for a, b in ahead)
            self._in_flight += len(pieces)
            if attempt == 0:
                if own:
                    self._misses += 1
                elif waiting:
                    self._joined += 1
                else:
                    self._hits += 1
        for a, b in ahead:
            self._fds.hold(f.store)  # released by the background READ
            self._pool.submit(self._run_quietly, f, a, b)
        return f, own

    def _run_own(self, f: _File, own: list[Run]) -> None:
        """Fetch a read's own pages in its thread; if one fails, none is left PENDING for other readers."""
        todo = list(own)
        try:
            while todo:
                a, b = todo[0]
                self._run(f, a, b)
                todo.pop(0)
        except BaseException:
            with self._lock:
                for a, b in todo[1:]:
                    self._settle(f, a, b, min(b * PAGE, f.size) - a * PAGE, 0)
            raise

    def _split(self, a: int, b: int) -> list[Run]:
        """Contiguous pages go out as READs of at most rsize."""
        step = self.rsize_pages
        return [(s, min(s + step, b)) for s in range(a, b, step)]

    def _file(self, path: str, version: Hashable, size: int) -> _File:
        """The file's cache entry under `version`, new if absent or stale; the caller holds the lock."""
        f = self._files.get(path)
        if f is not None and f.version == version:
            self._files.move_to_end(path)
            return f
        if f is not None:
            self._remove(path)
        self._seq += 1
        file = self._dir / f"{self._seq:x}"
        self._fds.create(file, size)
        f = _File(path, version, size, file, FilePages.of_size(size), threading.Condition(self._lock))
        self._files[path] = f
        while len(self._files) > MAX_FILES:
            self._cull()
        return f

    def _run(self, f: _File, a: int, b: int) -> None:
        """Fetch pages `[a, b)` of `f` from the origin and make them readable."""
        start, stop = a * PAGE, min(b * PAGE, f.size)
        try:
            data = self._fetch(f.name, start, stop - start)
        except BaseException:
            with self._lock:
                self._settle(f, a, b, stop - start, 0)
            raise
        got = min(len(data), stop - start)
        if got:
            os.pwrite(self._fds.fd(f.store), data[:got], start)
        with self._lock:
            self._settle(f, a, b, stop - start, got)

    def _run_quietly(self, f: _File, a: int, b: int) -> None:
        """Readahead nobody waits for: a failure only leaves its pages missing (a read will ask again)."""
        try:
            self._run(f, a, b)
        except OSError as exc:
            log.debug("readahead of %s pages %d-%d failed: %s", f.name, a, b, exc)
        finally:
            self._fds.release(f.store)

    def _settle(self, f: _File, a: int, b: int, asked: int, got: int) -> None:
        """Pages the READ brought are READY, those it did not (an error, the origin shrank) MISSING.

        Lock held. WAN bytes were counted as asked when the READ was sent; what did not come is taken back.
        """
        self._wan -= asked - got
        got = b - a if got == asked else got // PAGE
        f.pages.state[a:a + got] = bytes([READY]) * got
        f.pages.state[a + got:b] = bytes([MISSING]) * (b - a - got)
        f.pages.marks.difference_update(range(a + got, b))
        self._in_flight -= 1
        if f.live:
            f.held += got
            self._used += got * PAGE
            while self._used > self.capacity and self._files:
                self._cull()
        f.cond.notify_all()

    def _cull(self) -> None:
        """Drop the least recently used file: cachefilesd culls whole files. Lock held."""
        path = next(iter(self._files))
        self._remove(path)
        self._evictions += 1

    def _remove(self, path: str) -> None:
        f = self._files.pop(path)
        f.live = False
        self._used -= f.held * PAGE
        self._fds.forget(f.store)  # unlinked once the reads holding it are done

    def invalidate(self, path: str) -> int:
        """Forget `path` (its content changed at the origin); return the pages dropped."""
        with self._lock:
            f = self._files.get(path)
            if f is None:
                return 0
            self._remove(path)
            return f.held

    def drop(self) -> None:
        """Empty the cache, as a cold benchmark run needs; counters are kept."""
        with self._lock:
            for path in list(self._files):
                self._remove(path)

    def forget_readahead(self) -> None:
        """A restarted gateway keeps fscache's pages but no readahead state (its page cache is gone)."""
        with self._lock:
            for f in self._files.values():
                f.pages.marks.clear()
                f.pages.ra = type(f.pages.ra)()

    def cached(self, path: str) -> list[int]:
        """Indexes of the pages of `path` held now, ascending."""
        with self._lock:
            f = self._files.get(path)
            return [] if f is None else [i for i, s in enumerate(f.pages.state) if s == READY]

    def in_flight(self) -> int:
        """READs sent and not yet answered (background readahead included)."""
        with self._lock:
            return self._in_flight

    def counters(self) -> CacheCounters:
        with self._lock:
            return CacheCounters(self._hits, self._misses, self._joined, self._evictions, self._wan,
                                 self._used, self._used // PAGE, readahead_bytes=self._ahead,
                                 cached_files=len(self._files))

    def reset_counters(self) -> None:
        with self._lock:
            self._zero()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._fds.close()
