"""The gateway's chunk cache: fixed granules on local disk, LRU, single-flight misses.

The twin's older, coarser model, kept for comparison with the page model (`pages.py`,
the default): the first read of a granule fetches the whole granule from the origin,
later reads of any part of it are served from disk. That overstates what a real
gateway fetches for sparse reads (it fetches pages, not 1 MiB), which is the point
of comparing the two. Capacity is finite and the least recently used granule goes
first, so a plan larger than the cache visibly evicts what it warmed.

Concurrent misses on one granule share one fetch: a hundred render nodes opening the
same texture must cost one WAN transfer, and the warmer's tests count on it.

A hit must cost what a real gateway's does (the kernel page cache: microseconds),
or the twin's own overhead drowns what warming saves. So a hit is a lookup under the
lock plus one `pread` outside it, on a descriptor kept open by `Descriptors`: no open
or close per hit, and no system call under the lock, which is what serialised every
hit when chunk files were opened per read. Descriptors are bounded (least recently
used closed first), never one per cached chunk: a mapping or descriptor per chunk ran
the twin out of descriptors past about 20,000 small files (CPython's `mmap` keeps a
duplicate of the descriptor it maps). An evicted chunk's file is unlinked once the
last reader holding it is done.

The fetch is a plain function `(path, offset, length) -> bytes`, so the cache is
tested with an in-process fetch and no FUSE.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Fetch = Callable[[str, int, int], bytes]
ChunkKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class CacheCounters:
    """A snapshot of the cache's counters since the last reset (occupancy is always current)."""

    hits: int
    """Granule lookups served from the disk cache."""
    misses: int
    """Granule fetches from the origin (one per single-flight group)."""
    joined: int
    """Granule lookups that waited on a fetch already in flight instead of starting one."""
    evictions: int
    wan_bytes: int
    """Bytes fetched from the origin: what crossed the WAN."""
    cached_bytes: int
    cached_chunks: int
    """Granules held (chunk model) or pages held (page model)."""
    readahead_bytes: int = 0
    """WAN bytes fetched ahead of what any read asked for (page model)."""
    cached_files: int = 0


class Cache(Protocol):
    """What the gateway needs of its data cache; `ChunkCache` and `PageCache` are the two models."""

    def read(self, path: str, version: Hashable, size: int, offset: int, length: int) -> bytes: ...

    def invalidate(self, path: str) -> int: ...

    def drop(self) -> None: ...

    def forget_readahead(self) -> None: ...

    def in_flight(self) -> int: ...

    def counters(self) -> CacheCounters: ...

    def reset_counters(self) -> None: ...

    def close(self) -> None: ...


DESCRIPTORS = 512
"""Store files open at once at most, per cache: far below any descriptor limit, and enough
that a hit almost never opens (the hot files of a warm or a frame are a few hundred)."""


class _Slot:
    __slots__ = ("fd", "users", "doomed")

    def __init__(self) -> None:
        self.fd = -1
        self.users = 0
        self.doomed = False


class Descriptors:
    """Descriptors of a cache's store files, at most `limit` open, least recently used closed first.

    A reader `hold`s a store file under the cache's lock (no system call: a count), gets its
    descriptor outside it (`fd`, which opens it only if it was closed) and `release`s it. A
    file the cache drops (`forget`) is closed and unlinked once nobody holds it, so a read
    that found it before it was culled still reads the bytes it found.
    """

    def __init__(self, limit: int = DESCRIPTORS) -> None:
        self.limit = max(1, limit)
        self._lock = threading.Lock()
        self._slots: OrderedDict[Path, _Slot] = OrderedDict()
        self._open = 0

    def create(self, path: Path, size: int) -> None:
        """A new sparse store file of `size` bytes, held open (it is about to be written)."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            raise
        with self._lock:
            slot = self._slots.setdefault(path, _Slot())
            slot.fd = fd
            self._open += 1
            self._trim()

    def hold(self, path: Path) -> None:
        with self._lock:
            slot = self._slots.get(path)
            if slot is None:
                slot = self._slots[path] = _Slot()
            else:
                self._slots.move_to_end(path)
            slot.users += 1

    def fd(self, path: Path) -> int:
        """The open descriptor of a held file (opened now if the bound closed it)."""
        with self._lock:
            slot = self._slots[path]
            if slot.fd < 0:
                slot.fd = os.open(path, os.O_RDWR)
                self._open += 1
                self._trim()
            return slot.fd

    def release(self, path: Path) -> None:
        with self._lock:
            slot = self._slots[path]
            slot.users -= 1
            if slot.users == 0 and slot.doomed:
                self._drop(path, slot)
            else:
                self._trim()

    def forget(self, path: Path) -> None:
        """The cache no longer holds `path`: close and unlink it now, or when its last reader is done."""
        with self._lock:
            slot = self._slots.get(path)
            if slot is None:
                path.unlink(missing_ok=True)
            elif slot.users == 0:
                self._drop(path, slot)
            else:
                slot.doomed = True

    def open_count(self) -> int:
        with self._lock:
            return self._open

    def close(self) -> None:
        with self._lock:
            for slot in self._slots.values():
                self._close(slot)

    def _close(self, slot: _Slot) -> None:
        if slot.fd >= 0:
            os.close(slot.fd)
            slot.fd = -1
            self._open -= 1

    def _drop(self, path: Path, slot: _Slot) -> None:
        del self._slots[path]
        self._close(slot)
        path.unlink(missing_ok=True)

    def _trim(self) -> None:
        """Close the least recently used descriptors nobody holds until at most `limit` are open."""
        if self._open <= self.limit:
            return
        for path, slot in list(self._slots.items()):
            if self._open <= self.limit:
                break
            if slot.users == 0:
                self._close(slot)
                del self._slots[path]


@dataclass(slots=True)
class _Entry:
    file: Path
    size: int
    version: Hashable


class _Flight:
    """One fetch in progress; waiters block on `done` and then read `data` or `error`."""

    __slots__ = ("version", "done", "data", "error")

    def __init__(self, version: Hashable) -> None:
        self.version = version
        self.done = threading.Event()
        self.data = b""
        self.error: BaseException | None = None


class ChunkCache:
    """Granule cache of origin files, keyed by (path, granule index) and tagged with a version.

    The version is whatever identifies a file's content to the caller (the gateway uses
    size and mtime): a granule cached under another version is stale and refetched.
    """

    def __init__(self, directory: Path, granule: int, capacity: int, fetch: Fetch) -> None:
        if granule <= 0:
            raise ValueError("granule must be positive")
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.granule = granule
        self.capacity = capacity
        self._fetch = fetch
        self._dir = Path(directory) / "chunks"
        # The index lives in memory, so chunk files from an earlier run are garbage.
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir.mkdir(parents=True)
        self._lock = threading.Lock()
        self._fds = Descriptors()
        self._index: OrderedDict[ChunkKey, _Entry] = OrderedDict()
        self._by_path: dict[str, set[int]] = {}
        self._flights: dict[ChunkKey, _Flight] = {}
        self._used = 0
        self._seq = 0
        self._hits = self._misses = self._joined = self._evictions = self._wan = 0

    def read(self, path: str, version: Hashable, size: int, offset: int, length: int) -> bytes:
        """Bytes `[offset, offset+length)` of a file of `size` bytes, clipped at its end."""
        end = min(offset + length, size)
        if end <= offset:
            return b""
        g = self.granule
        parts = []
        for idx in range(offset // g, (end - 1) // g + 1):
            start = idx * g
            chunk_len = min(g, size - start)
            lo = max(offset, start) - start
            hi = min(end, start + chunk_len) - start
            parts.append(self._read_chunk(path, version, idx, chunk_len, lo, hi))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_chunk(self, path: str, version: Hashable, idx: int, chunk_len: int, lo: int, hi: int) -> bytes:
        key = (path, idx)
        held: Path | None = None
        leader = False
        with self._lock:
            entry = self._index.get(key)
            if entry is not None and entry.version == version:
                self._index.move_to_end(key)
                self._hits += 1
                held = entry.file  # stays readable if evicted before the read below
                self._fds.hold(held)
            else:
                if entry is not None:
                    self._remove(key)
                found = self._flights.get(key)
                if found is not None and found.version == version:
                    self._joined += 1
                    flight = found
                else:
                    flight = _Flight(version)
                    self._flights[key] = flight
                    self._misses += 1
                    leader = True
        if held is not None:
            try:
                return os.pread(self._fds.fd(held), hi - lo, lo)
            finally:
                self._fds.release(held)
        if leader:
            self._lead(key, flight, chunk_len)
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.data[lo:hi]

    def _lead(self, key: ChunkKey, flight: _Flight, chunk_len: int) -> None:
        path, idx = key
        try:
            flight.data = self._fetch(path, idx * self.granule, chunk_len)
            with self._lock:
                self._wan += len(flight.data)
            self._store(key, flight.version, flight.data)
        except Exception as exc:
            flight.error = exc
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.done.set()

    def _store(self, key: ChunkKey, version: Hashable, data: bytes) -> None:
        if not data or len(data) > self.capacity:
            return  # nothing to keep; an origin that shrank is refetched
        with self._lock:
            self._seq += 1
            file = self._dir / f"{self._seq:x}"
        # Written before it is indexed: no reader can find a half-written chunk.
        file.write_bytes(data)
        with self._lock:
            if key in self._index:
                self._remove(key)
            while self._index and self._used + len(data) > self.capacity:
                self._remove(next(iter(self._index)))
                self._evictions += 1
            self._index[key] = _Entry(file, len(data), version)
            self._by_path.setdefault(key[0], set()).add(key[1])
            self._used += len(data)

    def _remove(self, key: ChunkKey) -> None:
        """Forget one chunk; the caller holds the lock."""
        entry = self._index.pop(key)
        self._used -= entry.size
        idxs = self._by_path[key[0]]
        idxs.discard(key[1])
        if not idxs:
            del self._by_path[key[0]]
        self._fds.forget(entry.file)

    def invalidate(self, path: str) -> int:
        """Drop every granule of `path` (its content changed at the origin); return how many."""
        with self._lock:
            idxs = list(self._by_path.get(path, ()))
            for idx in idxs:
                self._remove((path, idx))
            return len(idxs)

    def drop(self) -> None:
        """Empty the cache, as a cold benchmark run needs; counters are kept."""
        with self._lock:
            for key in list(self._index):
                self._remove(key)

    def cached(self, path: str) -> list[int]:
        """Indexes of the granules of `path` held now, ascending."""
        with self._lock:
            return sorted(self._by_path.get(path, ()))

    def forget_readahead(self) -> None:
        """Granules have no readahead state."""

    def in_flight(self) -> int:
        with self._lock:
            return len(self._flights)

    def counters(self) -> CacheCounters:
        with self._lock:
            return CacheCounters(self._hits, self._misses, self._joined, self._evictions, self._wan,
                                 self._used, len(self._index), cached_files=len(self._by_path))

    def reset_counters(self) -> None:
        with self._lock:
            self._hits = self._misses = self._joined = self._evictions = self._wan = 0

    def close(self) -> None:
        """Nothing runs in the background; the store's descriptors are closed."""
        self._fds.close()
