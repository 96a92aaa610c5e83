"""What a real usd-core process reads when it opens a stage and reads values at a frame, and
whether prewarm predicts a later frame's reads from earlier frames' (tests/data/usd_traces/).

The traces were recorded by `tests/data/usd_traces/make_traces.py`; the test rebuilds the
same stage with the same script, so the scene expansion reads a real stage and the traces'
offsets point into real files.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from prewarm.flow.planning import PlanOptions, plan_manifest
from prewarm.plan.access import Op
from prewarm.plan.aggregate import aggregate
from prewarm.plan.evaluate import evaluate
from prewarm.plan.manifest import parse_manifest
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.settings import Settings
from prewarm.traces.files import read_traces

DATA = Path(__file__).parent / "data" / "usd_traces"
SIZES: dict[str, int] = json.loads((DATA / "sizes.json").read_text())
STUDIO = "/studio/proj"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_traces", DATA / "make_traces.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The traced stage, rebuilt: byte for byte what the traces read (same sizes, same offsets)."""
    root = tmp_path_factory.mktemp("usd") / "proj"
    _script().build(str(root))
    sizes = {f"{STUDIO}/{p.relative_to(root)}": p.stat().st_size for p in root.rglob("*") if p.is_file()}
    assert sizes == SIZES, "this usd-core writes the stage differently: re-record with make_traces.py"
    return root


def reads(path: str, frame: int, folder: str = "traces") -> list[tuple[int, int]]:
    return [(a.offset, a.length) for a in read_traces([str(DATA / folder / f"frame.{frame:04d}.strace.gz")])
            if a.path == path and a.op is Op.READ]


@pytest.mark.parametrize("name", ["shot.usdc", "asset.usdc", "clips/anim.0003.usdc"])
def test_a_crate_open_reads_the_bootstrap_then_the_table_of_contents_near_the_end(name: str) -> None:
    path = f"{STUDIO}/{name}"
    frame = 3
    first, count, toc, *rest = reads(path, frame)
    assert first == (0, 88)                                  # the bootstrap: magic, version, TOC offset
    assert count[1] == 8 and toc[0] == count[0] + 8          # the table of contents: a count, then the sections,
    assert toc[0] + toc[1] == SIZES[path]                    # up to the end of the file
    assert rest and all(o < count[0] for o, _ in rest), "then the sections and values, on demand"


def test_values_are_read_on_demand_a_block_per_frame() -> None:
    """The 240 KB of points sampled at each frame: each frame reads its own block, in order."""
    asset = f"{STUDIO}/asset.usdc"
    big = {f: [r for r in reads(asset, f) if r[1] >= 200_000] for f in range(1, 9)}
    starts = [big[f][0][0] for f in range(1, 9)]
    assert all(len({r for r in big[f]}) == 1 for f in big) and starts == sorted(starts) and len(set(starts)) == 8
    assert [sum(n for _, n in reads(f"{STUDIO}/clips/anim.{c:04d}.usdc", 5)) > 0 for c in range(1, 9)] == [
        c == 5 for c in range(1, 9)]                          # with a clip manifest, only the active clip opens


def test_by_default_usd_core_maps_crate_files_so_a_trace_sees_the_whole_file() -> None:
    whole = [(a.offset, a.length) for a in read_traces([str(DATA / "mmap" / "frame.0001.strace.gz")])
             if a.path == f"{STUDIO}/asset.usdc" and a.op is Op.READ]
    assert whole == [(0, SIZES[f"{STUDIO}/asset.usdc"])]


def test_prewarm_predicts_later_frames_of_a_stage_from_earlier_ones(stage: Path) -> None:
    path_map = PathMap((Prefix(STUDIO, (), str(stage)),))
    manifest = parse_manifest(f"job: usd\nframes: 1-8\ninputs:\n  - {STUDIO}/shot.usdc\n", "job.yaml")
    training = [str(DATA / "traces" / f"frame.{f:04d}.strace.gz") for f in range(1, 5)]
    settings = Settings(path_map=path_map, roots=(STUDIO,))
    plan = plan_manifest(manifest, training, settings, PlanOptions(frames=(5, 6, 7, 8), granule=4096))
    rendered = aggregate(read_traces([str(DATA / "traces" / f"frame.{f:04d}.strace.gz") for f in range(5, 9)]))
    result = evaluate(plan, rendered).overall
    assert result.recall >= 0.99, result
    assert result.overfetch <= 1.1, result      # the rest: clips motion blur may read (frame 5 reads 4)
    # each clip planned for its own frame (traces), plus the one before frame 5 that motion blur
    # may read (the scene: active clips in [F - 1, F + 1]; the traced process sampled no subframes)
    assert {r.path.rpartition("/")[2]: r.frame for r in plan.ranges if "/clips/anim." in r.path} == {
        "anim.0004.usdc": 5, **{f"anim.{f:04d}.usdc": f for f in range(5, 9)}}
    assert plan.origins[f"{STUDIO}/asset.usdc"].scene == f"{STUDIO}/shot.usdc"
