"""The planner's IO layer: trace loading over processes, traced files kept to the job's folders."""

from __future__ import annotations

from pathlib import Path

from prewarm.flow.planning import load_traces
from prewarm.plan.build import job_folders
from prewarm.plan.manifest import parse_manifest
from prewarm.plan.pathmap import PathMap

SAMPLES = Path(__file__).resolve().parents[1] / "sample_jobs"


def test_parallel_import_equals_sequential_on_real_traces():
    paths = [str(SAMPLES / "shot200" / "traces")]
    seq, seq_stats = load_traces(paths, PathMap(), workers=1)
    par, par_stats = load_traces(paths, PathMap(), workers=2, min_parallel_bytes=0)
    assert par.reads == seq.reads and par.frames == seq.frames == frozenset(range(1, 37))
    assert (par_stats.records, par_stats.lines, par_stats.files) == (seq_stats.records, seq_stats.lines, 36)


def test_parallel_import_keeps_the_sizes_traced_stats_returned():
    """shot100's renders stat their inputs (newfstatat): the sizes merge across processes as read alone."""
    paths = [str(SAMPLES / "shot100" / "traces")]
    seq, _ = load_traces(paths, PathMap(), workers=1)
    par, _ = load_traces(paths, PathMap(), workers=2, min_parallel_bytes=0)
    assert par.sizes == seq.sizes and seq.sizes


def test_traced_files_join_only_below_job_folders_or_roots():
    m = parse_manifest("job: j\nframes: 1\ninputs:\n  - /studio/p/shot/a.blend\n  - /studio/p/tex/\n", "m.yaml")
    ok = job_folders(m, ["/studio/p/shot/a.blend"], roots=["/studio/lib"])
    assert ok("/studio/p/shot/cache/x.abc") and ok("/studio/p/tex/deep/t.tx") and ok("/studio/lib/fonts/a.ttf")
    assert not ok("/usr/lib/libc.so.6") and not ok("/studio/p/other/x") and not ok("/studio/p/shotgun/x")


def test_plan_without_traces_uses_earlier_jobs_of_the_shot_from_the_store(shot_trees: Path, tmp_path: Path):
    from dataclasses import replace

    from prewarm.flow.jobs import plan_job
    from prewarm.flow.planning import PlanOptions
    from prewarm.site.settings import Settings
    from prewarm.traces.store import import_traces

    local = PathMap.parse([{"studio": "/studio/proj", "local": str(shot_trees)}], "test")
    settings = replace(Settings(), trace_store=str(tmp_path / "store"), roots=("/studio/proj",), path_map=local)
    import_traces(settings, [str(SAMPLES / "shot100" / "traces")], "proj", "shot100", "shot100_lighting_v000")
    plan = plan_job(str(SAMPLES / "shot100" / "manifest.yaml"), [], settings, PlanOptions())
    assert plan.stats.traces.trace_frames == 24 and plan.stats.store.traces_from_store
    assert {r.reason for r in plan.ranges} >= {"trace"}
    untraced = plan_job(str(SAMPLES / "shot100" / "manifest.yaml"), [], Settings(path_map=local), PlanOptions())
    assert untraced.stats.traces.trace_frames == 0


def test_forked_parts_come_back_in_order_and_a_failed_child_fails_the_plan(monkeypatch):
    import os

    import pytest

    import prewarm.flow.planning as planning
    monkeypatch.setattr(planning, "FORK_MAX_RSS", 1 << 40)
    pids = planning.forked(lambda i, n: (i, n, os.getpid()), 3)
    assert [(i, n) for i, n, _ in pids] == [(0, 3), (1, 3), (2, 3)]
    assert pids[0][2] == os.getpid() and len({p for *_, p in pids}) == 3

    def fails(i, n):
        if i == 2:
            raise ValueError("boom")
        return (i,)

    with pytest.raises(RuntimeError, match="a planning process failed"):
        planning.forked(fails, 3)
    monkeypatch.setattr(planning, "FORK_MAX_RSS", 0)
    assert planning.forked(lambda i, n: (i, n, os.getpid()), 3) == [(0, 1, os.getpid())]
