"""A tiny warm through a real gateway twin, embedded mode: afterwards the frames cross no WAN.

The full end-to-end run is bench/e2e.py (minutes); this is the cheap proof that the
warm engine's reads reach the twin and leave exactly what the frames need in its cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prewarm.plan.access import Access, Op
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap
from prewarm.plan.records import FileInfo, MetaOp, PlannedRange
from prewarm.site.settings import Settings
from prewarm.testkit.replay import replay_frames
from prewarm.warm.embedded import run_embedded
from prewarm.warm.job import JobState
from tests.fixtures.twin import StartTwin

pytestmark = pytest.mark.integration

KiB = 1024
STUDIO = "/studio/proj"


def test_embedded_warm_leaves_frames_nothing_to_fetch(tmp_path: Path, gateway_twin: StartTwin) -> None:
    origin = tmp_path / "origin"
    (origin / "tex").mkdir(parents=True)
    sizes = {"tex/a.tx": 96 * KiB, "tex/b.tx": 40 * KiB, "tex/unused.tx": 64 * KiB}
    for name, size in sizes.items():
        (origin / name).write_bytes(os.urandom(size))
    twin = gateway_twin(origin, rtt_ms=5.0, mbps=None, granule=16 * KiB, cache_model="chunk")
    mapping = PathMap.parse([{"studio": STUDIO, "local": str(twin.mount)}], "test")
    frames = [
        [Access(f"{STUDIO}/tex/a.tx", Op.READ, 0, 20 * KiB, frame=1),
         Access(f"{STUDIO}/tex/b.tx", Op.READ, 8 * KiB, 8 * KiB, frame=1)],
        [Access(f"{STUDIO}/tex/a.tx", Op.READ, 64 * KiB, 32 * KiB, frame=2)],
    ]
    needed = [(f"{STUDIO}/tex/a.tx", 0, 32 * KiB), (f"{STUDIO}/tex/b.tx", 0, 16 * KiB),
              (f"{STUDIO}/tex/a.tx", 64 * KiB, 32 * KiB)]
    local = {p: origin / p.removeprefix(STUDIO + "/") for p, _, _ in needed}
    files = {p: FileInfo(p, f.stat().st_size, f.stat().st_mtime) for p, f in local.items()}
    plan = Plan(job="tiny", frames=(1, 2), ranges=tuple(PlannedRange(p, o, n, frame=1) for p, o, n in needed),
                metadata=tuple(MetaOp(Op.STAT, p) for p in files), files=files, granule=16 * KiB)

    info = run_embedded(plan, Settings(path_map=mapping, granule=16 * KiB, in_flight=4))
    assert info.state is JobState.DONE, info.findings
    warmed = twin.stats()
    assert warmed["wan_bytes"] == 80 * KiB  # the planned granules, nothing of unused.tx

    replay = replay_frames(frames, mapping.to_local, nodes=2)
    after = twin.stats()
    assert replay.errors == 0
    assert replay.bytes_read == 60 * KiB
    assert after["wan_bytes"] - warmed["wan_bytes"] == 0
    assert after["misses"] - warmed["misses"] == 0
    assert after["hits"] > warmed["hits"]
