"""The page model without FUSE: what a gateway fetches for known read patterns, counted exactly.

Real sparse files on disk, an in-process origin that logs every READ; readahead
beyond a read is fetched in the background, so tests wait for `in_flight() == 0`
before looking at what was fetched ahead.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from prewarm.twin.gateway import Gateway, TwinConfig
from prewarm.twin.link import Link
from prewarm.twin.pages import PageCache

PAGE = 4096
KiB, MiB = 1 << 10, 1 << 20


class Origin:
    """Files as bytes; logs every READ; `gate` holds READs until set; `fail` makes the next ones fail."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.fetches: list[tuple[str, int, int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = 0
        self.lock = threading.Lock()

    def fetch(self, path: str, offset: int, length: int) -> bytes:
        with self.lock:
            self.fetches.append((path, offset, length))
            failing = self.fail > 0
            self.fail -= failing
        self.gate.wait(10)
        if failing:
            raise OSError(5, "origin failed", path)
        return self.files[path][offset:offset + length]


@pytest.fixture
def blob() -> bytes:
    return os.urandom(64 * MiB)


def make(tmp_path: Path, files: dict[str, bytes], capacity: int = 1 << 40, rsize: int = MiB,
         read_ahead_kb: int = 8192) -> tuple[PageCache, Origin]:
    origin = Origin(files)
    return PageCache(tmp_path, capacity, origin.fetch, rsize, read_ahead_kb), origin


def quiet(cache: PageCache) -> None:
    deadline = time.monotonic() + 10
    while cache.in_flight():
        assert time.monotonic() < deadline, "background readahead never finished"
        time.sleep(0.005)


def test_a_standalone_random_37_kb_read_costs_about_40_kb(tmp_path: Path, blob: bytes) -> None:
    cache, origin = make(tmp_path, {"/t.tx": blob})
    off = 5 * MiB + 3 * PAGE
    assert cache.read("/t.tx", 1, len(blob), off, 37_000) == blob[off:off + 37_000]
    c = cache.counters()
    assert (c.wan_bytes, c.misses, c.cached_bytes, c.readahead_bytes) == (40 * KiB, 1, 40 * KiB, 0)
    assert origin.fetches == [("/t.tx", off, 40 * KiB)]
    assert cache.read("/t.tx", 1, len(blob), off + 100, 30_000) == blob[off + 100:off + 30_100]
    c = cache.counters()
    assert (c.wan_bytes, c.hits) == (40 * KiB, 1), "the same tile again: a hit, no WAN"


def test_a_read_at_offset_zero_starts_a_small_window(tmp_path: Path, blob: bytes) -> None:
    cache, _ = make(tmp_path, {"/t.tx": blob})
    cache.read("/t.tx", 1, len(blob), 0, 37_000)
    quiet(cache)
    c = cache.counters()
    assert c.wan_bytes == 256 * KiB and c.readahead_bytes == 0, "one READ of 64 pages, the read inside it"


def test_a_sequential_run_triggers_readahead_as_the_kernel_would(tmp_path: Path, blob: bytes) -> None:
    cache, origin = make(tmp_path, {"/s.bin": blob})
    for n in range(12):
        assert cache.read("/s.bin", 1, len(blob), n * MiB, MiB) == blob[n * MiB:(n + 1) * MiB]
    quiet(cache)
    c = cache.counters()
    assert c.wan_bytes == 22 * MiB, "12 MiB read; windows of 2, 4 and 8 MiB ran ahead of it"
    assert c.readahead_bytes > 0 and c.cached_bytes == 22 * MiB
    assert max(n for _, _, n in origin.fetches) == MiB and len(origin.fetches) == 22, "READs split at rsize"
    assert cache.read("/s.bin", 1, len(blob), 20 * MiB, MiB) == blob[20 * MiB:21 * MiB]
    assert cache.counters().wan_bytes == 22 * MiB, "read ahead: already cached"


def test_reads_are_split_at_rsize(tmp_path: Path, blob: bytes) -> None:
    cache, origin = make(tmp_path, {"/s.bin": blob}, rsize=64 * KiB)
    cache.read("/s.bin", 1, len(blob), 3 * MiB, MiB)
    assert [n for _, _, n in origin.fetches] == [64 * KiB] * 16


def test_concurrent_readers_of_one_tile_share_its_fetch(tmp_path: Path, blob: bytes) -> None:
    cache, origin = make(tmp_path, {"/t.tx": blob})
    origin.gate.clear()
    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(cache.read("/t.tx", 1, len(blob), 9 * MiB, 37_000)))
               for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while cache.counters().joined < 7:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    origin.gate.set()
    for t in threads:
        t.join()
    c = cache.counters()
    assert (c.misses, c.joined, c.wan_bytes, len(origin.fetches)) == (1, 7, 40 * KiB, 1)
    assert out == [blob[9 * MiB:9 * MiB + 37_000]] * 8


def test_a_failed_read_leaves_nothing_half_fetched(tmp_path: Path, blob: bytes) -> None:
    cache, origin = make(tmp_path, {"/t.tx": blob}, rsize=16 * KiB)
    origin.fail = 1
    with pytest.raises(OSError):
        cache.read("/t.tx", 1, len(blob), MiB, 40 * KiB)
    assert cache.counters().wan_bytes == 0 and cache.in_flight() == 0
    assert cache.read("/t.tx", 1, len(blob), MiB, 40 * KiB) == blob[MiB:MiB + 40 * KiB]


def test_the_cache_culls_whole_files_least_recently_used_first(tmp_path: Path) -> None:
    files = {f"/f{i}": os.urandom(400 * KiB) for i in range(3)}
    cache, _ = make(tmp_path, files, capacity=100 * KiB)
    for name in ("/f0", "/f1", "/f0", "/f2"):
        cache.read(name, 1, 400 * KiB, 200 * KiB, 40 * KiB)
    c = cache.counters()
    assert (c.evictions, c.cached_files, c.cached_bytes) == (1, 2, 80 * KiB)
    assert cache.cached("/f1") == [] and cache.cached("/f0") == list(range(50, 60))


def test_a_new_version_of_a_file_is_fetched_again(tmp_path: Path, blob: bytes) -> None:
    cache, _ = make(tmp_path, {"/t.tx": blob})
    cache.read("/t.tx", 1, len(blob), MiB, 4096)
    cache.read("/t.tx", 2, len(blob), MiB, 4096)
    assert cache.counters().wan_bytes == 2 * PAGE


def test_bytes_match_the_origin_across_pages_and_at_eof(tmp_path: Path) -> None:
    data = os.urandom(3 * PAGE + 100)
    cache, _ = make(tmp_path, {"/f": data})
    for off, n in [(0, 10), (PAGE - 5, 10), (10, 3 * PAGE), (3 * PAGE + 50, 500), (0, 10 * PAGE), (len(data), 5)]:
        assert cache.read("/f", 1, len(data), off, n) == data[off:off + n]
    assert cache.counters().wan_bytes == len(data)


def gateway(tmp_path: Path, origin: Path, **cfg: object) -> Gateway:
    return Gateway(origin, tmp_path / "cache", TwinConfig(**cfg), link=Link(0.0, None))  # type: ignore[arg-type]


@pytest.fixture
def origin_dir(tmp_path: Path, blob: bytes) -> Path:
    root = tmp_path / "origin"
    root.mkdir()
    (root / "t.tx").write_bytes(blob[:8 * MiB])
    return root


def test_on_the_fsc_mount_direct_reads_cross_the_wan_every_time_and_cache_nothing(
        tmp_path: Path, origin_dir: Path) -> None:
    gw = gateway(tmp_path, origin_dir, fsc=True)
    for _ in range(2):
        gw.read("/t.tx", MiB + 100, 37_000, direct=True)
    s = gw.stats()
    assert (s["wan_bytes"], s["direct_wan_bytes"], s["cached_bytes"]) == (74_000, 74_000, 0)
    gw.read("/t.tx", MiB + 100, 37_000)            # buffered: through the cache, pages kept
    s = gw.stats()
    assert s["cached_bytes"] == 40 * KiB and s["wan_bytes"] == 74_000 + 40 * KiB
    gw.close()


def test_a_render_side_client_fills_the_cache_whether_or_not_it_reads_direct(
        tmp_path: Path, origin_dir: Path) -> None:
    gw = gateway(tmp_path, origin_dir)
    gw.read("/t.tx", MiB, 37_000, direct=True)
    gw.read("/t.tx", MiB, 37_000, direct=True)
    s = gw.stats()
    assert (s["wan_bytes"], s["cached_bytes"], s["direct_bytes_served"]) == (40 * KiB, 40 * KiB, 0)
    gw.close()


def test_a_restart_keeps_data_loses_metadata_and_restarts_the_counters(tmp_path: Path, origin_dir: Path) -> None:
    clock = [100.0]
    gw = Gateway(origin_dir, tmp_path / "cache", TwinConfig(), link=Link(0.0, None), clock=lambda: clock[0])
    gw.read("/t.tx", MiB, 37_000)
    clock[0] += 50
    assert gw.stats()["uptime_s"] == 50
    gw.restart()
    s = gw.stats()
    assert (s["uptime_s"], s["wan_bytes"], s["metadata_round_trips"], s["restarts"]) == (0, 0, 0, 1)
    assert gw.read("/t.tx", MiB, 37_000) == (origin_dir / "t.tx").read_bytes()[MiB:MiB + 37_000]
    s = gw.stats()
    assert s["wan_bytes"] == 0, "the data survived the restart"
    assert s["ops"]["LOOKUP"]["requests"] == 1, "the attributes did not"  # type: ignore[index]
    gw.close()


@pytest.mark.parametrize("model", ["pages", "chunks"])
def test_many_distinct_files_are_served_with_a_bounded_number_of_descriptors(tmp_path: Path, model: str) -> None:
    """A descriptor (or a mapping, which keeps one) per cached file ran the twin out of descriptors past
    about 20,000 files; now the store's descriptors are bounded whatever the number of files."""
    from prewarm.twin.cache import DESCRIPTORS, ChunkCache

    n = 3 * DESCRIPTORS

    def fetch(path: str, offset: int, length: int) -> bytes:
        return (path.encode() * length)[offset % len(path):][:length]

    cache = (PageCache(tmp_path, capacity=1 << 30, fetch=fetch) if model == "pages"
             else ChunkCache(tmp_path, granule=MiB, capacity=1 << 30, fetch=fetch))
    before = len(os.listdir("/proc/self/fd"))
    try:
        for i in range(n):
            path = f"f{i:05d}"
            assert cache.read(path, 1, 3 * KiB, 100, 20) == fetch(path, 100, 20)
        assert len(os.listdir("/proc/self/fd")) - before <= DESCRIPTORS + 8
        assert cache.counters().cached_files == n
        assert cache.read("f00000", 1, 3 * KiB, 0, 8) == fetch("f00000", 0, 8)
    finally:
        cache.close()
