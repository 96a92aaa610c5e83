"""The gateway twin's behaviour, apart from FUSE: attribute cache, data cache, WAN link, counters.

`fs.py` only translates FUSE calls into these methods, so everything that decides
what crosses the (simulated) WAN is here and runs without a mount.

Metadata follows the NFS client that a knfsd re-export gateway runs: the first
LOOKUP/GETATTR of a path and the first READDIRPLUS of a directory cost a round trip,
then the answer (negative ones too, like the dentry cache) is trusted for
`attr_ttl_s` (knfsd-cache-utils: `acregmin=acregmax=acdirmin=acdirmax=600`). When a
revalidation finds a new size or mtime, the file's cached data is dropped, which
is how an origin change becomes visible after attribute expiry.

The data cache is the page model (`pages.py`: what a knfsd proxy fetches, readahead
and all) or, for comparison, the chunk model (`cache.py`: whole granules).

Which side of the gateway the mount plays:
- by default a render-side client of the re-export: every read reaches the cache,
  O_DIRECT or not (knfsd serves every READ buffered, through its own cache);
- with `fsc`, the gateway's own NFS client mount: buffered reads go through the cache,
  and O_DIRECT reads go to the origin every time and cache nothing
  (`nfs_file_direct_read` makes no fscache calls).

`restart()` plays a gateway that restarts keeping its cache disk: data stays,
attributes, dentries and readahead state are gone, and the agent's counters restart
(their `age` goes down).

Faults can be injected (`inject`, `POST /faults` on the counter server): the next N
client reads of files under a path answer an errno (EIO when the link to the filer
drops, ESTALE after a failover, ETIMEDOUT when the filer stops answering), after an
optional delay, as a real gateway does under those faults.
"""

from __future__ import annotations

import errno as errnomod
import os
import stat as statmod
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from prewarm.twin.cache import Cache, ChunkCache
from prewarm.twin.link import MB, Link
from prewarm.twin.pages import PageCache

MiB = 1024 * 1024
GiB = 1024 * MiB

T = TypeVar("T")

OPS = ("LOOKUP", "GETATTR", "READDIRPLUS", "READLINK", "READ")
"""NFS operations the twin sends over its WAN link, as named in /proc/self/mountstats."""


@dataclass(frozen=True, slots=True)
class TwinConfig:
    """How the simulated gateway and its WAN link behave."""

    rtt_ms: float = 30.0
    """Round trip to the studio filer; 30-80 ms is typical of a cloud burst."""
    mbps: float | None = 50.0
    """Shared link bandwidth in MB/s (10**6 bytes); None: latency only."""
    cache_model: str = "page"
    """`page`: what a gateway fetches (pages, Linux readahead, READs up to `rsize`); `chunk`: whole granules."""
    granule: int = MiB
    """Chunk model only: the fetch and cache unit."""
    rsize: int = MiB
    """Largest READ sent to the origin (knfsd-cache-utils: rsize=1048576); longer runs are split."""
    read_ahead_kb: int = 8192
    """Page model: the largest readahead window (knfsd-cache-utils sets read_ahead_kb=8192)."""
    fsc: bool = False
    """The mount plays the gateway's own fsc mount: O_DIRECT reads bypass the cache (see above)."""
    node_name: str = ""
    """The proxy's name in `/api/v1/nodeInfo`; empty: `prewarm-twin-PORT`."""
    capacity: int = 10 * GiB
    """Cache size in bytes; least recently used granules (chunk) or files (page) are evicted beyond it."""
    attr_ttl_s: float = 600.0
    """How long attributes, negative lookups and listings are trusted (NFS acregmax/acdirmax)."""
    log_reads: bool = False
    """Keep every client read (path, offset, length) so a test can check what was read."""
    client_cache: bool = False
    """Let the kernel page cache answer re-reads within an open, as a render node's NFS client does.

    Off (direct I/O), every client read reaches the twin and the counters are exact;
    that is what the tests check. On, a hit costs what it costs on a real node (no
    round trip into Python per 4 KiB read), which is what a benchmark of read wait
    needs; the counters stay true where it matters and no longer count everything:
    - every granule fetched from the origin still crosses the twin (`misses`,
      `wan_bytes` exact): the kernel only holds pages the twin served;
    - each `open()` drops the file's cached pages (no keep_cache), so a frame's first
      read of a page always reaches the twin, and `drop()` then means a cold start;
    - `hits`, `reads` and `bytes_served` count what reached the twin: re-reads answered
      by the kernel are missing, and kernel readahead (default 128 KiB) is included,
      so `bytes_served` may exceed what clients asked for; readahead past the end of
      what a client reads can fetch a granule it never asked for, as on NFS.
    """

    def link(self) -> Link:
        return Link(self.rtt_ms / 1000.0, self.mbps * MB if self.mbps else None)

    def mount_options(self) -> dict[str, str]:
        """The NFS options of the mount this twin plays, as mountinfo would show them."""
        opts = {"vers": "3", "rsize": str(self.rsize), "wsize": str(self.rsize), "hard": "", "proto": "tcp"}
        if self.fsc:
            ttl = str(int(self.attr_ttl_s))
            opts.update(dict.fromkeys(("acregmin", "acregmax", "acdirmin", "acdirmax"), ttl), nocto="", fsc="")
        return opts


@dataclass(slots=True)
class _OpStats:
    requests: int = 0
    errors: int = 0
    bytes_received: int = 0
    wait_s: float = 0.0


@dataclass(slots=True)
class Fault:
    """The next `count` reads of files under `prefix` fail with `errno` after `delay_s`."""

    prefix: str
    errno: int
    count: int
    delay_s: float = 0.0
    hits: int = 0

    @classmethod
    def parse(cls, data: dict[str, object]) -> Fault:
        """From `{"prefix": "/a", "errno": "EIO", "count": 2, "delay_s": 0}` (errno by name or number)."""
        name = data.get("errno", "EIO")
        code = getattr(errnomod, name) if isinstance(name, str) and hasattr(errnomod, name) else name
        prefix, count, delay = data.get("prefix", "/"), data.get("count", 1), data.get("delay_s", 0.0)
        if not (isinstance(code, int) and isinstance(prefix, str) and isinstance(count, int)
                and isinstance(delay, int | float)):
            raise ValueError("expected {prefix: str, errno: name or number, count: int, delay_s: number}")
        return cls(prefix, code, count, float(delay))

    def to_json(self) -> dict[str, object]:
        return {"prefix": self.prefix, "errno": errnomod.errorcode.get(self.errno, self.errno),
                "count": self.count, "delay_s": self.delay_s, "hits": self.hits}


@dataclass(frozen=True, slots=True)
class _Attr:
    st: os.stat_result | None
    """None: the path does not exist at the origin (a cached negative lookup)."""
    fetched_at: float


class Gateway:
    """A read-only caching gateway over the directory `origin`.

    Paths are absolute inside the export (`/shot/tex.tx`), as FUSE passes them.
    """

    def __init__(self, origin: Path, cache_dir: Path, config: TwinConfig,
                 link: Link | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.origin = Path(origin)
        self.config = config
        self._link = link or config.link()
        self._clock = clock
        self.started_at = clock()
        self._lock = threading.Lock()
        self._attrs: dict[str, _Attr] = {}
        self._dirs: dict[str, tuple[list[str], float]] = {}
        self.cache: Cache
        if config.cache_model == "chunk":
            self.cache = ChunkCache(cache_dir, config.granule, config.capacity, self._fetch)
        elif config.cache_model == "page":
            self.cache = PageCache(cache_dir, config.capacity, self._fetch, config.rsize, config.read_ahead_kb)
        else:
            raise ValueError(f"cache_model must be page or chunk, not {config.cache_model!r}")
        self.restarts = 0
        self.faults: list[Fault] = []
        self._zero()

    def _zero(self) -> None:
        self._ops = {op: _OpStats() for op in OPS}
        self._bytes_served = 0
        self._direct_served = 0
        self._direct_wan = 0
        self._reads = 0
        self._opens = 0
        self._attr_invalidations = 0
        self._in_flight = 0
        self._peak_in_flight = 0
        self._read_log: list[tuple[str, int, int]] = []
        self._fetch_window: tuple[float, float] | None = None
        """When the first origin READ since the reset was sent and the last one ended, on `clock`."""

    def _origin_path(self, path: str) -> str:
        return os.path.join(self.origin, path.lstrip("/"))

    def _round_trip(self, op: str, call: Callable[[], T]) -> T:
        """Run a metadata call at the origin and charge it one WAN round trip."""
        waited = self._link.round_trip()
        try:
            return call()
        except OSError:
            with self._lock:
                self._ops[op].errors += 1
            raise
        finally:
            with self._lock:
                self._ops[op].requests += 1
                self._ops[op].wait_s += waited

    def getattr(self, path: str) -> os.stat_result:
        """Attributes of `path` (symlinks not followed); FileNotFoundError if absent."""
        now = self._clock()
        with self._lock:
            cached = self._attrs.get(path)
        if cached is None or now - cached.fetched_at >= self.config.attr_ttl_s:
            op = "LOOKUP" if cached is None else "GETATTR"
            try:
                st: os.stat_result | None = self._round_trip(op, lambda: os.lstat(self._origin_path(path)))
            except FileNotFoundError:
                st = None
            self._remember(path, st, self._clock(), cached)
            cached = _Attr(st, now)
        if cached.st is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        return cached.st

    def _remember(self, path: str, st: os.stat_result | None, at: float, old: _Attr | None) -> None:
        with self._lock:
            self._attrs[path] = _Attr(st, at)
            changed = (old is not None and old.st is not None and
                       (st is None or (st.st_size, st.st_mtime_ns) != (old.st.st_size, old.st.st_mtime_ns)))
            if changed:
                self._attr_invalidations += 1
        if changed:
            self.cache.invalidate(path)

    def listdir(self, path: str) -> list[str]:
        """Names in directory `path`; one READDIRPLUS also refreshes the entries' attributes."""
        now = self._clock()
        with self._lock:
            cached = self._dirs.get(path)
        if cached is not None and now - cached[1] < self.config.attr_ttl_s:
            return cached[0]
        base = self._origin_path(path)

        def readdirplus() -> list[tuple[str, os.stat_result]]:
            with os.scandir(base) as it:
                return [(e.name, e.stat(follow_symlinks=False)) for e in it]

        entries = self._round_trip("READDIRPLUS", readdirplus)
        at = self._clock()
        prefix = path.rstrip("/")
        for name, st in entries:
            child = f"{prefix}/{name}"
            with self._lock:
                old = self._attrs.get(child)
            self._remember(child, st, at, old)
        names = sorted(name for name, _ in entries)
        with self._lock:
            self._dirs[path] = (names, at)
        return names

    def readlink(self, path: str) -> str:
        return self._round_trip("READLINK", lambda: os.readlink(self._origin_path(path)))

    def open(self, path: str) -> None:
        """Check that `path` is a readable file: nocto, so no revalidation beyond the attribute cache."""
        st = self.getattr(path)
        if statmod.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", path)
        with self._lock:
            self._opens += 1

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def clear_faults(self) -> list[Fault]:
        with self._lock:
            gone, self.faults = self.faults, []
        return gone

    def _fault(self, path: str) -> None:
        """Fail this read if an injected fault says so (one count of the first that matches)."""
        with self._lock:
            hit = next((f for f in self.faults if f.count > 0 and
                        (path == f.prefix or path.startswith(f.prefix.rstrip("/") + "/"))), None)
            if hit is not None:
                hit.count -= 1
                hit.hits += 1
        if hit is not None:
            if hit.delay_s:
                time.sleep(hit.delay_s)
            raise OSError(hit.errno, os.strerror(hit.errno), path)

    def read(self, path: str, offset: int, size: int, direct: bool = False) -> bytes:
        """Serve a client read from the cache, fetching what is missing over the link.

        `direct`: the client opened the file with O_DIRECT, which matters on the fsc mount only.
        """
        self._fault(path)
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        data: bytes | None = None
        bypass = direct and self.config.fsc
        try:
            st = self.getattr(path)
            if bypass:
                data = self._read_direct(path, st.st_size, offset, size)
            else:
                data = self.cache.read(path, (st.st_size, st.st_mtime_ns), st.st_size, offset, size)
        finally:
            with self._lock:  # one lock round per end of a read: hits are thousands a second
                self._in_flight -= 1
                if data is not None:
                    self._reads += 1
                    self._bytes_served += len(data)
                    if bypass:
                        self._direct_served += len(data)
                    if self.config.log_reads and data:
                        self._read_log.append((path, offset, len(data)))
        return data

    def _read_direct(self, path: str, file_size: int, offset: int, size: int) -> bytes:
        """An O_DIRECT read of the fsc mount: exactly the bytes asked, in READs of `rsize`, cached nowhere."""
        end = min(offset + size, file_size)
        parts = []
        for start in range(offset, end, self.config.rsize):
            part = self._fetch(path, start, min(self.config.rsize, end - start))
            with self._lock:
                self._direct_wan += len(part)
            parts.append(part)
        return b"".join(parts)

    def _fetch(self, path: str, offset: int, length: int) -> bytes:
        """One granule from the origin: a READ that pays latency and its share of bandwidth."""
        try:
            fd = os.open(self._origin_path(path), os.O_RDONLY)
            try:
                data = os.pread(fd, length, offset)
            finally:
                os.close(fd)
        except OSError:
            with self._lock:
                self._ops["READ"].errors += 1
            raise
        sent = self._clock()
        waited = self._link.transfer(len(data))
        ended = self._clock()
        with self._lock:
            w = self._fetch_window
            self._fetch_window = (sent, ended) if w is None else (min(w[0], sent), max(w[1], ended))
            op = self._ops["READ"]
            op.requests += 1
            op.bytes_received += len(data)
            op.wait_s += waited
        return data

    def reads(self) -> list[tuple[str, int, int]]:
        """Client reads since the last reset, if `log_reads` is on."""
        with self._lock:
            return list(self._read_log)

    def reset(self) -> None:
        """Zero every counter and the read log; cached data and attributes stay."""
        with self._lock:
            in_flight = self._in_flight
            self._zero()
            self._in_flight = self._peak_in_flight = in_flight
        self.cache.reset_counters()

    def drop(self) -> None:
        """Forget cached data, attributes and listings: the next access of anything is cold."""
        with self._lock:
            self._attrs.clear()
            self._dirs.clear()
        self.cache.drop()

    def restart(self) -> None:
        """A gateway restart that keeps its cache disk: data stays; attributes, dentries and readahead
        state are gone; counters start again from zero and the agent's `age` from now."""
        with self._lock:
            self._attrs.clear()
            self._dirs.clear()
            self.started_at = self._clock()
            self.restarts += 1
        self.cache.forget_readahead()
        self.reset()

    def close(self) -> None:
        """Stop background readahead (the process is ending)."""
        self.cache.close()

    def stats(self) -> dict[str, object]:
        """The twin's counters as plain JSON values."""
        c = self.cache.counters()
        cfg = self.config
        with self._lock:
            ops = {name: {"requests": o.requests, "errors": o.errors, "bytes_received": o.bytes_received,
                          "wait_ms": round(o.wait_s * 1000.0, 3)} for name, o in self._ops.items()}
            return {
                "hits": c.hits,
                "misses": c.misses,
                "joined": c.joined,
                "wan_bytes": c.wan_bytes + self._direct_wan,
                "readahead_bytes": c.readahead_bytes,
                "direct_wan_bytes": self._direct_wan,
                "bytes_served": self._bytes_served,
                "direct_bytes_served": self._direct_served,
                "reads": self._reads,
                "opens": self._opens,
                "reads_in_flight": self._in_flight,
                "peak_reads_in_flight": self._peak_in_flight,
                "evictions": c.evictions,
                "cached_bytes": c.cached_bytes,
                "cached_chunks": c.cached_chunks,
                "cached_files": c.cached_files,
                "fetches_in_flight": self.cache.in_flight(),
                "restarts": self.restarts,
                "metadata_round_trips": sum(ops[op]["requests"] for op in OPS if op != "READ"),
                "attr_invalidations": self._attr_invalidations,
                "ops": ops,
                "config": {"origin": str(self.origin), **asdict(cfg)},
                "uptime_s": round(self._clock() - self.started_at, 3),
                # Monotonic seconds, comparable with time.monotonic() in any process on the
                # host: a benchmark splits a warm into time before the first fetch and after.
                "fetch_window": (None if self._fetch_window is None else
                                 {"first_sent": self._fetch_window[0], "last_done": self._fetch_window[1]}),
            }
