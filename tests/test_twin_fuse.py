"""The gateway twin through a real FUSE mount, read by this process, served by another.

Tests of granule arithmetic run the chunk model; the page model and the fsc mount
have test_twin_fsc.py.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.twin import StartTwin

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    root = tmp_path / "origin"
    (root / "tex").mkdir(parents=True)
    (root / "tex" / "a.tx").write_bytes(os.urandom(4 * MiB))
    (root / "tex" / "b.tx").write_bytes(os.urandom(MiB + 12345))
    (root / "scene.usdc").write_bytes(os.urandom(300_000))
    return root


def pread(path: Path, length: int, offset: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def test_bytes_through_the_mount_equal_the_origin(gateway_twin: StartTwin, origin: Path) -> None:
    twin = gateway_twin(origin, rtt_ms=1, mbps=None)
    assert sorted(os.listdir(twin.mount)) == ["scene.usdc", "tex"]
    assert sorted(os.listdir(twin.mount / "tex")) == ["a.tx", "b.tx"]
    for rel in ("tex/a.tx", "tex/b.tx", "scene.usdc"):
        assert (twin.mount / rel).read_bytes() == (origin / rel).read_bytes()
        assert os.stat(twin.mount / rel).st_size == os.stat(origin / rel).st_size
    blob = (origin / "tex" / "a.tx").read_bytes()
    for off, n in [(MiB - 7, 14), (3 * MiB + 5, MiB), (0, 1)]:
        assert pread(twin.mount / "tex" / "a.tx", n, off) == blob[off:off + n]


def test_first_read_misses_a_granule_second_read_hits(gateway_twin: StartTwin, origin: Path) -> None:
    twin = gateway_twin(origin, rtt_ms=5, mbps=None, cache_model="chunk")
    before = twin.stats()
    pread(twin.mount / "tex" / "a.tx", 4096, MiB + 100)
    first = twin.stats()
    assert first["wan_bytes"] - before["wan_bytes"] == MiB
    assert first["misses"] - before["misses"] == 1
    pread(twin.mount / "tex" / "a.tx", 8192, MiB + 50_000)
    second = twin.stats()
    assert second["wan_bytes"] == first["wan_bytes"]
    assert second["misses"] == first["misses"]
    assert second["hits"] > first["hits"]


def test_sixteen_concurrent_readers_of_one_chunk_fetch_it_once(gateway_twin: StartTwin, origin: Path) -> None:
    twin = gateway_twin(origin, rtt_ms=200, mbps=None, cache_model="chunk")
    os.stat(twin.mount / "tex" / "a.tx")
    twin.reset()
    expected = (origin / "tex" / "a.tx").read_bytes()[2 * MiB:3 * MiB]
    results: list[bytes] = []
    start = threading.Barrier(16)

    def reader(i: int) -> None:
        start.wait()
        results.append(pread(twin.mount / "tex" / "a.tx", 4096, 2 * MiB + i * 4096))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = twin.stats()
    assert (s["misses"], s["wan_bytes"]) == (1, MiB)
    assert sorted(results) == sorted(expected[i * 4096:(i + 1) * 4096] for i in range(16))


def test_capacity_smaller_than_the_data_evicts_least_recently_used(gateway_twin: StartTwin, origin: Path) -> None:
    twin = gateway_twin(origin, rtt_ms=1, mbps=None, capacity=2 * MiB, cache_model="chunk")
    f = twin.mount / "tex" / "a.tx"
    for chunk in (0, 1, 0, 2):       # touching 0 again makes 1 the least recently used
        pread(f, 10, chunk * MiB)
    s = twin.stats()
    assert (s["misses"], s["evictions"], s["cached_bytes"]) == (3, 1, 2 * MiB)
    pread(f, 10, 0)                   # 0 survived
    assert twin.stats()["wan_bytes"] == s["wan_bytes"]
    pread(f, 10, MiB)                 # 1 was evicted
    assert twin.stats()["wan_bytes"] == s["wan_bytes"] + MiB


def test_metadata_is_cached_for_the_ttl_then_revalidated(gateway_twin: StartTwin, origin: Path) -> None:
    twin = gateway_twin(origin, rtt_ms=1, mbps=None, attr_ttl_s=0.5)
    os.stat(twin.mount / "scene.usdc")
    s1 = twin.stats()
    for _ in range(5):
        os.stat(twin.mount / "scene.usdc")
    assert twin.stats()["metadata_round_trips"] == s1["metadata_round_trips"]
    time.sleep(0.6)
    os.stat(twin.mount / "scene.usdc")
    s2 = twin.stats()
    assert s2["metadata_round_trips"] > s1["metadata_round_trips"]
    assert s2["ops"]["GETATTR"]["requests"] >= 1


def test_long_ttl_hides_an_origin_change_until_expiry(gateway_twin: StartTwin, origin: Path) -> None:
    twin = gateway_twin(origin, rtt_ms=1, mbps=None, attr_ttl_s=0.5)
    old = (origin / "scene.usdc").read_bytes()
    assert (twin.mount / "scene.usdc").read_bytes() == old
    new = os.urandom(200_000)
    (origin / "scene.usdc").write_bytes(new)
    os.utime(origin / "scene.usdc", ns=(1, 2 * 10**18))
    time.sleep(0.6)
    assert (twin.mount / "scene.usdc").read_bytes() == new
    assert twin.stats()["attr_invalidations"] == 1


def test_counters_over_http_reset_and_drop(gateway_twin: StartTwin, origin: Path) -> None:
    twin = gateway_twin(origin, rtt_ms=1, mbps=None, cache_model="chunk")
    pread(twin.mount / "tex" / "b.tx", 100, 0)
    s = twin.stats()
    assert s["bytes_served"] == 100 and s["wan_bytes"] == MiB and s["peak_reads_in_flight"] >= 1
    assert s["reads_in_flight"] == 0 and s["config"]["granule"] == MiB
    twin.reset()
    s = twin.stats()
    assert (s["bytes_served"], s["wan_bytes"], s["misses"], s["cached_chunks"]) == (0, 0, 0, 1)
    twin.drop_cache()
    pread(twin.mount / "tex" / "b.tx", 100, 0)
    s = twin.stats()
    assert (s["misses"], s["wan_bytes"], s["cached_chunks"]) == (1, MiB, 1)


def test_mount_stats_over_http_in_the_knfsd_agent_shape(gateway_twin: StartTwin, origin: Path) -> None:
    twin = gateway_twin(origin, rtt_ms=1, mbps=None, cache_model="chunk")
    pread(twin.mount / "tex" / "a.tx", 1000, 0)
    pread(twin.mount / "tex" / "a.tx", 1000, 0)
    (m,) = twin.mount_stats()["mounts"]
    assert m["mount"] == str(twin.mount) and m["export"] == str(origin)
    assert m["stats"]["bytes"]["normalRead"] == 2000
    assert m["stats"]["bytes"]["serverRead"] == MiB
    ops = {o["operation"]: o for o in m["stats"]["operations"]}
    assert ops["READ"]["requests"] == 1 and ops["READ"]["bytesReceived"] == MiB


def test_read_log_shows_exactly_the_client_ranges(gateway_twin: StartTwin, origin: Path) -> None:
    twin = gateway_twin(origin, rtt_ms=1, mbps=None, log_reads=True)
    pread(twin.mount / "tex" / "a.tx", 4096, 8192)
    pread(twin.mount / "scene.usdc", 88, 0)
    assert twin.reads() == [("/tex/a.tx", 8192, 4096), ("/scene.usdc", 0, 88)]


def test_mount_is_read_only(gateway_twin: StartTwin, origin: Path) -> None:
    twin = gateway_twin(origin, rtt_ms=1, mbps=None)
    with pytest.raises(OSError) as info:
        os.open(twin.mount / "scene.usdc", os.O_WRONLY)
    assert info.value.errno in (errno.EROFS, errno.EACCES)


def test_client_cache_answers_rereads_in_an_open_but_never_hides_a_miss(origin: Path, tmp_path: Path) -> None:
    from prewarm.twin.control import start_twin
    from prewarm.twin.gateway import TwinConfig

    twin = start_twin(origin, tmp_path / "mnt", TwinConfig(rtt_ms=1, mbps=None, client_cache=True, cache_model="chunk"),
                      cache_dir=tmp_path / "cache", state_dir=tmp_path / "state")
    try:
        path = twin.mount / "tex" / "a.tx"
        blob = (origin / "tex" / "a.tx").read_bytes()
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd, 4096, 0) == blob[:4096]
            first = twin.stats()
            assert (first["misses"], first["wan_bytes"]) == (1, MiB)
            for _ in range(20):
                assert os.pread(fd, 100, 1000) == blob[1000:1100]
            assert twin.stats()["reads"] == first["reads"]  # the kernel answered
        finally:
            os.close(fd)
        assert pread(path, 4096, 0) == blob[:4096]
        reopened = twin.stats()
        assert reopened["hits"] > first["hits"] and reopened["misses"] == 1  # an open drops the pages
        twin.drop_cache()
        assert pread(path, 4096, 0) == blob[:4096]
        assert twin.stats()["misses"] == 2  # cold again after a drop: the kernel held nothing back
    finally:
        twin.stop()
