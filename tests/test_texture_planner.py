"""The planner on shot200's real textures (rebuilt with openimageio, the files its traces read):
tile tables agree with the traces, unseen frames are predicted in tile space, a plan with no
traces warms coarse levels first, and unreadable files fall back to the byte model."""

from __future__ import annotations

import json
from bisect import bisect_left
from pathlib import Path

import pytest
import tifffile

from prewarm.flow.jobs import load_manifest
from prewarm.flow.planning import PlanOptions, plan_resolved, site_fs
from prewarm.plan.aggregate import TraceSet, aggregate, restrict
from prewarm.plan.evaluate import evaluate, ready_at
from prewarm.plan.inputs import resolve_inputs
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap
from prewarm.plan.ranges import covered, normalize
from prewarm.plan.records import Reason
from prewarm.site.settings import Settings
from prewarm.traces.counters import ImportStats
from prewarm.traces.files import read_traces
from tests.test_plan_cli import prewarm

SHOT = Path(__file__).resolve().parents[1] / "sample_jobs" / "shot200"


def path_map(root: Path) -> PathMap:
    return PathMap.parse([{"studio": "/studio/proj", "local": str(root)}], "test")


@pytest.fixture(scope="module")
def traces(real_textures: Path) -> TraceSet:
    return aggregate(read_traces([str(SHOT / "traces")], path_map(real_textures), stats=ImportStats()))


def plan_for(root: Path, ts: TraceSet, frames: list[int], **kw: object) -> Plan:
    manifest = load_manifest(SHOT / "manifest.yaml")
    settings = Settings(path_map=path_map(root))
    with site_fs(settings) as fs:
        return plan_resolved(manifest, resolve_inputs(manifest, fs), ts, fs, settings,
                             PlanOptions(frames=tuple(frames), **kw))  # type: ignore[arg-type]


def test_every_traced_tile_read_starts_at_a_tile_offset(real_textures: Path):
    """Checked with tifffile directly, on each traced call: a read is a tile (it starts at a
    `TileOffsets` entry) or lies outside every tile (the header, a directory, a table)."""
    sizes = json.loads((SHOT / "sizes.json").read_text())
    tiles: dict[str, list[tuple[int, int]]] = {}
    for path, size in sizes.items():
        local = real_textures / path.removeprefix("/studio/proj/")
        assert local.stat().st_size == size
        with tifffile.TiffFile(local) as tf:
            tiles[path] = sorted((int(o), int(o) + int(n)) for page in tf.pages
                                 for o, n in zip(page.dataoffsets, page.databytecounts, strict=True))  # type: ignore[union-attr]
    reads = [a for a in read_traces([str(SHOT / "traces")], path_map(real_textures)) if a.length > 0]
    inside = {p: normalize(spans) for p, spans in tiles.items()}
    tile_reads = 0
    for a in reads:
        spans = tiles[a.path]
        i = bisect_left(spans, (a.offset, 0))
        if i < len(spans) and spans[i][0] == a.offset:
            tile_reads += 1
            continue
        assert covered(inside[a.path], a.offset, a.offset + a.length) == 0, f"{a.path}: {a.offset} cuts a tile"
    assert tile_reads > 1000


def test_stepped_training_predicts_the_rest_in_tile_space(real_textures: Path, traces: TraceSet):
    frames = sorted(traces.frames)
    train, test = frames[::4], [f for f in frames if f not in frames[::4]]
    plan = plan_for(real_textures, restrict(traces, train), test)
    assert plan.stats.structure.structured_files == {"tiff": 6} and plan.stats.structure.structure_unreadable == 0
    assert plan.stats.predict.tiled_files == 5 and plan.stats.predict.unseen_tiled_files == 1
    result = evaluate(plan, restrict(traces, test)).overall
    assert result.recall >= 0.95
    # the push-in: frame 36 reads level-0 tiles no traced frame read, predicted one level finer
    finer = normalize((r.offset, r.end) for r in plan.ranges if r.reason is Reason.FINER
                      and r.path.endswith("rock_col.tx"))
    need = traces.reads["/studio/proj/assets/lookdev/tex/rock_col.tx"][36]
    assert sum(covered(finer, s, e) for s, e in need) > 0
    bytes_only = plan_for(real_textures, restrict(traces, train), test,
                          knobs={"structure": False})
    assert evaluate(bytes_only, restrict(traces, test)).overall.recall < result.recall


def test_without_traces_coarse_levels_come_first_and_the_first_frame_is_ready_early(
        real_textures: Path, traces: TraceSet):
    frames = sorted(traces.frames)
    plan = plan_for(real_textures, TraceSet(), frames)
    assert evaluate(plan, traces).overall.recall == 1.0
    at = ready_at(plan, traces, frames[0])
    assert at is not None and at < 0.4
    sparse_like = plan_for(real_textures, TraceSet(), frames, knobs={"structure": False})
    assert ready_at(sparse_like, traces, frames[0]) == 1.0 or (ready_at(sparse_like, traces, frames[0]) or 0) > at
    # a budget of a fifth of the plan keeps the headers and the coarse levels, drops the finest
    small = plan_for(real_textures, TraceSet(), frames, max_bytes=plan.bytes // 5)
    assert ready_at(small, traces, frames[0]) is not None


def test_sparse_files_that_should_be_textures_fall_back_and_are_counted(shot_trees: Path, traces: TraceSet):
    frames = sorted(traces.frames)
    plan = plan_for(shot_trees, restrict(traces, frames[::4]), frames[1::4])
    assert plan.stats.structure.structure_unreadable == 6 and plan.stats.predict.tiled_files == 0
    assert plan.ranges and all(r.reason is not Reason.FINER for r in plan.ranges)


def test_flags_win_over_the_manifest_knobs(real_textures: Path, tmp_path: Path):
    manifest = tmp_path / "job.yaml"
    text = (SHOT / "manifest.yaml").read_text() + "predict: {finer: 3, tile_grow: 3}\n"
    manifest.write_text(text)
    traces_dir = tmp_path / "traces"
    traces_dir.mkdir()
    for f in range(1, 10):
        (traces_dir / f"frame.{f:04d}.strace.gz").write_bytes((SHOT / f"traces/frame.{f:04d}.strace.gz").read_bytes())

    def planned(*flags: str) -> int:
        r = prewarm("plan", str(manifest), "--traces", str(traces_dir), "--local", f"/studio/proj={real_textures}",
                    "--frames", "10-36", *flags)
        assert r.returncode == 0, r.stderr
        return int(json.loads(r.stdout)["summary"]["bytes"])

    assert planned("--finer", "0", "--tile-grow", "0") < planned("--finer", "1", "--tile-grow", "1") < planned()


def test_far_beyond_a_check_render_the_hidden_push_in_hedge_comes_last_under_its_own_reason(
        real_textures: Path, traces: TraceSet, tmp_path: Path):
    """Frames 1-9 traced (no push-in in them), 10-36 planned: frame 36 reads rock_col's finest
    level, two levels finer than any traced frame. Past twice the traced span the second level
    finer comes under the footprint's centre, reason `finer_far`, after everything else the
    frames are known to read, and the summary shows what it costs."""
    rock = "/studio/proj/assets/lookdev/tex/rock_col.tx"
    plan = plan_for(real_textures, restrict(traces, list(range(1, 10))), list(range(10, 37)))
    far = [i for i, r in enumerate(plan.ranges) if r.reason is Reason.FINER_FAR]
    known = [i for i, r in enumerate(plan.ranges) if r.reason in (Reason.TRACE, Reason.NEIGHBOURS, Reason.FINER)]
    assert far and min(far) > max(known)
    assert plan.totals().bytes_by_reason["finer_far"] == sum(plan.ranges[i].length for i in far)
    rock_far = [plan.ranges[i] for i in far if plan.ranges[i].path == rock]
    assert rock_far and min(r.frame or 0 for r in rock_far) > 9 + 2 * 8, "past twice the span of frames 1-9"
    spans = normalize((r.offset, r.end) for r in rock_far)
    assert sum(covered(spans, s, e) for s, e in traces.reads[rock][36]) > 0, "some of frame 36's finest tiles"

    traces_dir = tmp_path / "traces"
    traces_dir.mkdir()
    for f in range(1, 10):
        (traces_dir / f"frame.{f:04d}.strace.gz").write_bytes((SHOT / f"traces/frame.{f:04d}.strace.gz").read_bytes())
    r = prewarm("plan", str(SHOT / "manifest.yaml"), "--traces", str(traces_dir), "--local",
                f"/studio/proj={real_textures}", "--frames", "10-36", "--summary")
    assert r.returncode == 0, r.stderr
    by_reason = next(line for line in r.stderr.splitlines() if line.startswith("by reason"))
    assert "finer_far" in by_reason
