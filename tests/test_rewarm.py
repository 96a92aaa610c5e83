"""Re-warming recent jobs' metadata after a gateway restart that kept its data (a real twin restarted)."""

from __future__ import annotations

import os
import time

import pytest

from prewarm.farm.agent import Agent
from prewarm.plan.access import Op
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.plan.records import MetaOp
from prewarm.site.guard import Guard
from prewarm.site.settings import Settings
from prewarm.warm import embedded
from prewarm.warm.batches import LIST_DIR_MIN
from prewarm.warm.job import JobState
from prewarm.warm.loop import WarmContext
from prewarm.warm.reader import MountReader, site_reader
from prewarm.warm.rewarm import after_restart, metadata_ops
from tests.fixtures.studio import PREFIX, Studio
from tests.fixtures.twin import StartTwin


def plan_of(paths: list[str], metadata: tuple[MetaOp, ...] = ()) -> Plan:
    from prewarm.plan.records import PlannedRange

    return Plan(job="j", frames=(1,), ranges=tuple(PlannedRange(p, 0, 10) for p in paths), metadata=metadata)


def test_listed_directories_replace_the_stats_of_their_files() -> None:
    udims = [f"{PREFIX}/udim/d.{1001 + i}.tx" for i in range(LIST_DIR_MIN)]
    few = [f"{PREFIX}/other/o{i}.tx" for i in range(3)]
    seq = plan_of([f"{PREFIX}/seq/f.{i}.exr" for i in range(2)], (MetaOp(Op.READDIR, f"{PREFIX}/seq/"),))
    ops = metadata_ops([plan_of(udims + few), seq, plan_of(few)])
    assert [m for m in ops if m.op is Op.READDIR] == [MetaOp(Op.READDIR, f"{PREFIX}/seq"),
                                                      MetaOp(Op.READDIR, f"{PREFIX}/udim")]
    assert [m.path for m in ops if m.op is Op.STAT] == few, "each other file once, however many plans name it"
    assert len(metadata_ops([plan_of(udims + few)], max_ops=2)) == 2


def ctx_for(mount: str) -> WarmContext:
    settings = Settings(path_map=PathMap((Prefix(PREFIX, (), mount),)), roots=(PREFIX,))
    return WarmContext(reader=site_reader(settings), in_flight=8)


@pytest.mark.integration
def test_after_a_restart_the_recent_jobs_metadata_is_warm_again_and_their_data_never_left(
        studio: Studio, gateway_twin: StartTwin) -> None:
    paths = [studio.file(f"tex/t{i}.tx", 200_000) for i in range(5)]
    plan = studio.plan([(p, 100_000, 37_000) for p in paths])
    twin = gateway_twin(studio.root, rtt_ms=2, mbps=None)
    settings = Settings(path_map=PathMap((Prefix(PREFIX, (), str(twin.mount)),)), roots=(PREFIX,))
    assert embedded.run_embedded(plan, settings).state is JobState.DONE
    agent = Agent(twin.url)
    time.sleep(1.1)                                   # `age` has whole seconds: let it reach 1 s
    before = agent.mount_stats()
    assert after_restart(before, agent.mount_stats(), [plan], ctx_for(str(twin.mount))) is None

    twin.restart()
    after = agent.mount_stats()
    done = after_restart(before, after, [plan], ctx_for(str(twin.mount)))
    assert done is not None and done.mounts == (str(twin.mount),)
    assert done.result.meta_done == 5 and done.result.meta_failed == 0
    s = twin.stats()
    assert s["wan_bytes"] == 0 and s["ops"]["LOOKUP"]["requests"] >= 5, "metadata only, over the WAN"

    twin.reset()
    for p in paths:                                   # what a render does first: stat, then read its tiles
        local = twin.mount / os.path.relpath(p, PREFIX)
        os.stat(local)
        f = MountReader(Guard((str(twin.mount),), PathMap())).open(str(local))
        f.read(100_000, 37_000)
        f.close()
    s = twin.stats()
    assert (s["metadata_round_trips"], s["wan_bytes"]) == (0, 0), "nothing left for the frames to fetch"
