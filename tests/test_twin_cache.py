"""The chunk cache without FUSE: a real disk directory and an in-process fetch."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from prewarm.twin.cache import ChunkCache

G = 4096


class Origin:
    """Files as bytes; records every fetch. `gate` holds fetches until released."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.fetches: list[tuple[str, int, int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def fetch(self, path: str, offset: int, length: int) -> bytes:
        with self.lock:
            self.fetches.append((path, offset, length))
        self.gate.wait(10)
        if path not in self.files:
            raise FileNotFoundError(2, "No such file", path)
        return self.files[path][offset:offset + length]


def data(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


def make(tmp_path: Path, files: dict[str, bytes], capacity: int = 100 * G) -> tuple[ChunkCache, Origin]:
    origin = Origin(files)
    return ChunkCache(tmp_path, G, capacity, origin.fetch), origin


def test_reads_equal_origin_bytes_across_granules_and_at_eof(tmp_path: Path) -> None:
    blob = data(3 * G + 100)
    cache, _ = make(tmp_path, {"/f": blob})
    for off, n in [(0, 10), (G - 5, 10), (10, 3 * G), (3 * G + 50, 500), (0, 10 * G), (len(blob), 5)]:
        assert cache.read("/f", 1, len(blob), off, n) == blob[off:off + n]


def test_first_read_misses_whole_granule_second_hits(tmp_path: Path) -> None:
    cache, origin = make(tmp_path, {"/f": data(2 * G)})
    cache.read("/f", 1, 2 * G, 100, 10)
    c = cache.counters()
    assert (c.misses, c.hits, c.wan_bytes) == (1, 0, G)
    cache.read("/f", 1, 2 * G, 200, 300)
    c = cache.counters()
    assert (c.misses, c.hits, c.wan_bytes) == (1, 1, G)
    assert origin.fetches == [("/f", 0, G)]


def test_chunks_live_on_disk(tmp_path: Path) -> None:
    cache, _ = make(tmp_path, {"/f": data(2 * G)})
    cache.read("/f", 1, 2 * G, 0, 2 * G)
    files = list((tmp_path / "chunks").iterdir())
    assert len(files) == 2 and sum(f.stat().st_size for f in files) == 2 * G


def test_concurrent_misses_on_one_chunk_fetch_once(tmp_path: Path) -> None:
    blob = data(G)
    cache, origin = make(tmp_path, {"/f": blob})
    origin.gate.clear()
    out: list[bytes] = []
    readers = [threading.Thread(target=lambda i=i: out.append(cache.read("/f", 1, G, i * 16, 16)))
               for i in range(16)]
    for r in readers:
        r.start()
    while cache.counters().joined < 15:  # every reader is waiting on the one fetch
        threading.Event().wait(0.001)
    origin.gate.set()
    for r in readers:
        r.join()
    c = cache.counters()
    assert (c.misses, c.joined, c.wan_bytes) == (1, 15, G)
    assert sorted(out) == sorted(blob[i * 16:i * 16 + 16] for i in range(16))


def test_fetch_error_reaches_every_waiter_and_is_not_cached(tmp_path: Path) -> None:
    cache, origin = make(tmp_path, {})
    origin.gate.clear()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            cache.read("/gone", 1, G, 0, 10)
        except OSError as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for r in readers:
        r.start()
    while cache.counters().joined < 3:
        threading.Event().wait(0.001)
    origin.gate.set()
    for r in readers:
        r.join()
    assert len(errors) == 4 and all(isinstance(e, FileNotFoundError) for e in errors)
    assert cache.counters().cached_chunks == 0


def test_capacity_evicts_least_recently_used_first(tmp_path: Path) -> None:
    cache, _ = make(tmp_path, {"/f": data(4 * G)}, capacity=2 * G)
    cache.read("/f", 1, 4 * G, 0, 1)        # chunk 0
    cache.read("/f", 1, 4 * G, G, 1)        # chunk 1
    cache.read("/f", 1, 4 * G, 0, 1)        # touch 0: 1 is now least recent
    cache.read("/f", 1, 4 * G, 2 * G, 1)    # chunk 2 evicts 1
    assert cache.cached("/f") == [0, 2]
    c = cache.counters()
    assert (c.evictions, c.cached_bytes) == (1, 2 * G)
    assert len(list((tmp_path / "chunks").iterdir())) == 2
    cache.read("/f", 1, 4 * G, G, 1)        # 1 again: a miss, evicts 0
    assert cache.cached("/f") == [1, 2]
    assert cache.counters().misses == 4


def test_chunk_larger_than_capacity_is_served_not_kept(tmp_path: Path) -> None:
    blob = data(G)
    cache, _ = make(tmp_path, {"/f": blob}, capacity=G // 2)
    assert cache.read("/f", 1, G, 0, G) == blob
    assert cache.counters().cached_chunks == 0


def test_new_version_refetches_and_invalidate_frees(tmp_path: Path) -> None:
    cache, origin = make(tmp_path, {"/f": data(G, seed=1)})
    cache.read("/f", "v1", G, 0, 10)
    origin.files["/f"] = data(G, seed=2)
    assert cache.read("/f", "v1", G, 0, 10) == data(G, seed=1)[:10]   # same version: cached bytes
    assert cache.read("/f", "v2", G, 0, 10) == data(G, seed=2)[:10]
    assert cache.counters().misses == 2
    assert cache.invalidate("/f") == 1
    assert cache.counters().cached_bytes == 0


def test_drop_empties_and_reset_zeroes(tmp_path: Path) -> None:
    cache, _ = make(tmp_path, {"/f": data(2 * G)})
    cache.read("/f", 1, 2 * G, 0, 2 * G)
    cache.drop()
    assert cache.counters().cached_chunks == 0 and not os.listdir(tmp_path / "chunks")
    cache.reset_counters()
    cache.read("/f", 1, 2 * G, 0, 1)
    c = cache.counters()
    assert (c.hits, c.misses, c.wan_bytes, c.evictions) == (0, 1, G, 0)


def test_leftover_chunks_of_an_earlier_run_are_wiped(tmp_path: Path) -> None:
    (tmp_path / "chunks").mkdir()
    (tmp_path / "chunks" / "stale").write_bytes(b"x")
    make(tmp_path, {})
    assert not os.listdir(tmp_path / "chunks")


@pytest.mark.parametrize("granule, capacity", [(0, 10), (G, -1)])
def test_rejects_bad_geometry(tmp_path: Path, granule: int, capacity: int) -> None:
    with pytest.raises(ValueError):
        ChunkCache(tmp_path, granule, capacity, Origin({}).fetch)
