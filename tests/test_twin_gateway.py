"""The twin's behaviour without FUSE: real origin files, a fake clock, a zero-latency link (chunk model:
its arithmetic is what these tests check; the page model has test_twin_pages.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prewarm.twin.gateway import Gateway, TwinConfig
from prewarm.twin.link import Link
from prewarm.twin.stats_http import go_duration, mount_stats

G = 4096
MiB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    root = tmp_path / "origin"
    (root / "tex").mkdir(parents=True)
    (root / "tex" / "a.tx").write_bytes(os.urandom(3 * G))
    (root / "tex" / "b.tx").write_bytes(os.urandom(G))
    return root


def make(tmp_path: Path, origin: Path, **cfg: object) -> tuple[Gateway, Clock]:
    clock = Clock()
    config = TwinConfig(**{"cache_model": "chunk", "granule": G, "attr_ttl_s": 600.0, **cfg})  # type: ignore[arg-type]
    return Gateway(origin, tmp_path / "cache", config, link=Link(0.0, None), clock=clock), clock


def meta(gw: Gateway) -> dict[str, int]:
    ops = gw.stats()["ops"]
    return {op: ops[op]["requests"] for op in ("LOOKUP", "GETATTR", "READDIRPLUS")}  # type: ignore[index]


def test_attributes_cost_one_round_trip_per_ttl(tmp_path: Path, origin: Path) -> None:
    gw, clock = make(tmp_path, origin)
    assert gw.getattr("/tex/a.tx").st_size == 3 * G
    gw.getattr("/tex/a.tx")
    clock.now += 599
    gw.getattr("/tex/a.tx")
    assert meta(gw) == {"LOOKUP": 1, "GETATTR": 0, "READDIRPLUS": 0}
    clock.now += 1
    gw.getattr("/tex/a.tx")
    assert meta(gw) == {"LOOKUP": 1, "GETATTR": 1, "READDIRPLUS": 0}
    assert gw.stats()["metadata_round_trips"] == 2


def test_negative_lookups_are_cached_like_dentries(tmp_path: Path, origin: Path) -> None:
    gw, clock = make(tmp_path, origin)
    for _ in range(3):
        with pytest.raises(FileNotFoundError):
            gw.getattr("/tex/missing.tx")
    assert meta(gw)["LOOKUP"] == 1
    (origin / "tex" / "missing.tx").write_bytes(b"now here")
    with pytest.raises(FileNotFoundError):
        gw.getattr("/tex/missing.tx")       # still trusted within the TTL
    clock.now += 600
    assert gw.getattr("/tex/missing.tx").st_size == 8


def test_readdirplus_lists_once_and_warms_entry_attributes(tmp_path: Path, origin: Path) -> None:
    gw, _ = make(tmp_path, origin)
    assert gw.listdir("/tex") == ["a.tx", "b.tx"]
    assert gw.listdir("/tex") == ["a.tx", "b.tx"]
    gw.getattr("/tex/a.tx")
    gw.getattr("/tex/b.tx")
    assert meta(gw) == {"LOOKUP": 0, "GETATTR": 0, "READDIRPLUS": 1}


def test_origin_change_is_seen_after_attribute_expiry(tmp_path: Path, origin: Path) -> None:
    gw, clock = make(tmp_path, origin)
    old = (origin / "tex" / "b.tx").read_bytes()
    assert gw.read("/tex/b.tx", 0, G) == old
    new = os.urandom(2 * G)
    (origin / "tex" / "b.tx").write_bytes(new)
    os.utime(origin / "tex" / "b.tx", ns=(1, 10**18))
    assert gw.read("/tex/b.tx", 0, G) == old           # attributes still trusted: cached data
    clock.now += 600
    assert gw.read("/tex/b.tx", 0, 2 * G) == new
    s = gw.stats()
    assert s["attr_invalidations"] == 1 and s["misses"] == 3


def test_reads_count_served_and_wan_bytes_and_log(tmp_path: Path, origin: Path) -> None:
    gw, _ = make(tmp_path, origin, log_reads=True)
    gw.read("/tex/a.tx", 10, 100)
    gw.read("/tex/a.tx", 200, 100)
    gw.read("/tex/a.tx", 3 * G - 10, 100)              # clipped at EOF
    s = gw.stats()
    assert (s["bytes_served"], s["wan_bytes"], s["misses"], s["hits"]) == (210, 2 * G, 2, 1)
    assert gw.reads() == [("/tex/a.tx", 10, 100), ("/tex/a.tx", 200, 100), ("/tex/a.tx", 3 * G - 10, 10)]
    assert s["ops"]["READ"] == {"requests": 2, "errors": 0, "bytes_received": 2 * G, "wait_ms": 0.0}  # type: ignore[index]


def test_reset_zeroes_counters_and_drop_makes_everything_cold(tmp_path: Path, origin: Path) -> None:
    gw, _ = make(tmp_path, origin, log_reads=True)
    gw.read("/tex/b.tx", 0, 10)
    gw.reset()
    s = gw.stats()
    assert (s["bytes_served"], s["wan_bytes"], s["metadata_round_trips"], s["cached_chunks"]) == (0, 0, 0, 1)
    assert gw.reads() == []
    gw.drop()
    gw.read("/tex/b.tx", 0, 10)
    s = gw.stats()
    assert (s["misses"], s["metadata_round_trips"]) == (1, 1)


def test_opening_a_directory_or_a_missing_file_fails(tmp_path: Path, origin: Path) -> None:
    gw, _ = make(tmp_path, origin)
    with pytest.raises(IsADirectoryError):
        gw.open("/tex")
    with pytest.raises(FileNotFoundError):
        gw.open("/tex/nope")
    gw.open("/tex/a.tx")
    assert gw.stats()["opens"] == 1


def test_mount_stats_has_the_knfsd_agent_shape(tmp_path: Path, origin: Path) -> None:
    gw, _ = make(tmp_path, origin)
    gw.read("/tex/a.tx", 0, 10)
    gw.read("/tex/a.tx", 0, 10)
    doc = mount_stats(gw.stats(), "/mnt/gw")
    (m,) = doc["mounts"]
    assert set(m) == {"device", "mount", "export", "options", "stats"}
    assert m["mount"] == "/mnt/gw" and m["options"]["rsize"] == str(MiB)
    assert set(m["stats"]) == {"age", "bytes", "events", "operations"}
    assert m["stats"]["bytes"] == {"normalRead": 20, "normalWrite": 0, "directRead": 0, "directWrite": 0,
                                   "serverRead": G, "serverWrite": 0, "readPages": 1, "writePages": 0}
    assert len(m["stats"]["events"]) == 26 and m["stats"]["events"]["vfsLookup"] == 1
    read = next(o for o in m["stats"]["operations"] if o["operation"] == "READ")
    assert set(read) == {"operation", "requests", "transmissions", "retries", "majorTimeouts", "bytesSent",
                         "bytesReceived", "queueMilliseconds", "rttMilliseconds", "executionMilliseconds", "errors"}
    assert (read["requests"], read["bytesReceived"]) == (1, G)


@pytest.mark.parametrize("secs, text", [(0, "0s"), (46.7, "46s"), (60, "1m0s"), (4666, "1h17m46s")])
def test_age_prints_like_go_durations(secs: float, text: str) -> None:
    assert go_duration(secs) == text


def test_fetch_window_brackets_the_origin_reads_since_the_reset(tmp_path: Path, origin: Path) -> None:
    gw, clock = make(tmp_path, origin)
    assert gw.stats()["fetch_window"] is None
    gw.read("/tex/a.tx", 0, 10)
    clock.now += 5
    gw.read("/tex/b.tx", 0, 10)
    gw.read("/tex/a.tx", 0, 10)  # a hit: no fetch
    assert gw.stats()["fetch_window"] == {"first_sent": 1000.0, "last_done": 1005.0}
    gw.reset()
    assert gw.stats()["fetch_window"] is None
