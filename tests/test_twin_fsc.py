"""Warming through a real twin on both sides of the gateway, with the page model's counters as proof.

`--fsc` plays the gateway's own mount: auto mode must read it buffered and fill the
cache, forced O_DIRECT must cross the WAN every time and cache nothing. Without
`--fsc` the twin is a render-side client, where O_DIRECT is right and fills the cache.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.guard import Guard
from prewarm.site.mounts import ReadMode, mount_of
from prewarm.site.settings import Settings
from prewarm.twin.control import TwinHandle
from prewarm.warm import embedded
from prewarm.warm.job import JobState
from prewarm.warm.reader import MountReader
from tests.fixtures.studio import PREFIX, Studio
from tests.fixtures.twin import StartTwin

pytestmark = pytest.mark.integration

KiB, MiB = 1 << 10, 1 << 20


def settings_for(twin: TwinHandle, mode: ReadMode) -> Settings:
    return Settings(path_map=PathMap((Prefix(PREFIX, (), str(twin.mount)),)), roots=(PREFIX,), in_flight=4,
                    read_mode=mode)


def tile_plan(studio: Studio) -> Plan:
    """Sparse tile reads (37 KB, page aligned, never at offset 0) over four textures."""
    ranges = []
    for i in range(4):
        p = studio.file(f"tex/t{i}.tx", 4 * MiB)
        ranges += [(p, MiB + k * 256 * KiB, 37_000) for k in range(4)]
    return studio.plan(ranges)


def warm(plan: Plan, twin: TwinHandle, mode: ReadMode) -> dict[str, int]:
    twin.reset()
    info = embedded.run_embedded(plan, settings_for(twin, mode))
    assert info.state is JobState.DONE, info.findings
    return twin.stats()


def test_the_fsc_twin_is_recognised_from_its_mountinfo_line(studio: Studio, gateway_twin: StartTwin) -> None:
    fsc = gateway_twin(studio.root, rtt_ms=1, mbps=None, fsc=True)
    render = gateway_twin(studio.root, rtt_ms=1, mbps=None)
    m = mount_of(str(fsc.mount))
    assert m is not None and m.twin and m.fsc and m.agent_url() == fsc.url
    assert m.options["rsize"] == str(MiB) and "nocto" in m.options
    r = mount_of(str(render.mount))
    assert r is not None and r.twin and not r.fsc
    f = studio.file("x.bin", 10_000)
    reader = raw(ReadMode.AUTO, fsc.mount, render.mount)
    assert not reader.choice(str(fsc.mount / os.path.relpath(f, PREFIX))).direct
    assert reader.choice(str(render.mount / os.path.relpath(f, PREFIX))).direct


def raw(mode: ReadMode, *mounts: Path) -> MountReader:
    """A reader of the mounts' own paths, as a render reading the mount directly would."""
    return MountReader(Guard(tuple(str(m) for m in mounts), PathMap()), mode)


def test_auto_fills_the_cache_of_the_fsc_mount(studio: Studio, gateway_twin: StartTwin) -> None:
    plan = tile_plan(studio)
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None, fsc=True)
    first = warm(plan, twin, ReadMode.AUTO)
    assert first["direct_bytes_served"] == 0
    assert first["wan_bytes"] == first["cached_bytes"] == 16 * 40 * KiB, "each 37 KB tile: its 10 pages, kept"
    again = warm(plan, twin, ReadMode.AUTO)
    assert again["wan_bytes"] == 0 and again["bytes_served"] == plan.bytes, "the second warm is all hits"


def test_forced_o_direct_on_the_fsc_mount_caches_nothing(studio: Studio, gateway_twin: StartTwin) -> None:
    plan = tile_plan(studio)
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None, fsc=True)
    for _ in range(2):
        s = warm(plan, twin, ReadMode.DIRECT)
        assert s["wan_bytes"] == s["direct_wan_bytes"] == plan.bytes, "every warm crosses the WAN again"
        assert s["cached_bytes"] == 0
    ms = twin.mount_stats()["mounts"][0]["stats"]["bytes"]
    assert ms["directRead"] == plan.bytes and ms["normalRead"] == 0


def test_on_a_render_side_client_o_direct_fills_the_gateway(studio: Studio, gateway_twin: StartTwin) -> None:
    plan = tile_plan(studio)
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None)
    s = warm(plan, twin, ReadMode.AUTO)
    assert s["wan_bytes"] == s["cached_bytes"] == 16 * 40 * KiB
    assert warm(plan, twin, ReadMode.AUTO)["wan_bytes"] == 0


def test_the_chunk_model_fetches_whole_granules_for_the_same_tiles(studio: Studio, gateway_twin: StartTwin) -> None:
    plan = tile_plan(studio)
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None, cache_model="chunk")
    s = warm(plan, twin, ReadMode.AUTO)
    assert s["wan_bytes"] == 4 * MiB, "a file's four tiles (148 KB) cost its whole 1 MiB granule"


def quiet(twin: TwinHandle) -> dict[str, int]:
    deadline = time.monotonic() + 20
    while (s := twin.stats())["fetches_in_flight"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return s


def test_a_sequential_read_through_the_mount_is_read_ahead(studio: Studio, gateway_twin: StartTwin) -> None:
    p = studio.file("seq.bin", 32 * MiB)
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None, log_reads=True)
    f = raw(ReadMode.DIRECT, twin.mount).open(str(twin.mount / os.path.relpath(p, PREFIX)))
    try:
        for n in range(12):
            assert f.read(n * MiB, MiB) == MiB
    finally:
        f.close()
    s = quiet(twin)
    assert [n for _, _, n in twin.reads()] == [MiB] * 12, "1 MiB reads reach the gateway whole"
    assert s["wan_bytes"] == 22 * MiB and s["readahead_bytes"] > 0


def test_a_restart_keeps_data_but_its_metadata_and_age_start_again(studio: Studio, gateway_twin: StartTwin) -> None:
    p = studio.file("r.bin", 2 * MiB)
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None)
    local = twin.mount / os.path.relpath(p, PREFIX)
    f = raw(ReadMode.DIRECT, twin.mount).open(str(local))
    f.read(MiB, 37_000)
    f.close()
    time.sleep(1.1)
    age = twin.mount_stats()["mounts"][0]["stats"]["age"]
    assert age != "0s"
    twin.restart()
    assert twin.mount_stats()["mounts"][0]["stats"]["age"] == "0s"
    f = raw(ReadMode.DIRECT, twin.mount).open(str(local))
    f.read(MiB, 37_000)
    f.close()
    s = twin.stats()
    assert s["wan_bytes"] == 0 and s["metadata_round_trips"] >= 1 and s["restarts"] == 1


def test_node_info_answers_gzip_encoded_like_the_agent(gateway_twin: StartTwin, studio: Studio) -> None:
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None, node_name="proxy-a")
    resp = requests.get(twin.url + "/api/v1/nodeInfo", timeout=10)
    assert resp.headers["Content-Encoding"] == "gzip" and resp.json()["name"] == "proxy-a"
    assert requests.get(twin.url + "/api/v1/unknown", timeout=10).json()["name"] == "proxy-a"
