"""Prediction on the field's conventions (issue 25): frames numbered from 1001 beside UDIM tiles
numbered 1001-1099, tiles no traced frame read, files only some frames read.

The real case is `sample_jobs/shot300`: shot200's real traces renamed (frames 1001-1036, four
textures as tiles 1001-1002 of two UDIM sets, a tile 1003 of each set no frame read), its
textures rebuilt with openimageio."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from prewarm.flow.jobs import load_manifest
from prewarm.flow.planning import PlanOptions, plan_resolved, site_fs
from prewarm.plan.access import Access
from prewarm.plan.aggregate import TraceSet, aggregate, restrict
from prewarm.plan.evaluate import evaluate
from prewarm.plan.inputs import resolve_inputs
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap
from prewarm.plan.predict import predict
from prewarm.plan.prediction import Candidate
from prewarm.plan.ranges import intersect, normalize, total
from prewarm.plan.records import FileInfo, Reason
from prewarm.plan.sequences import find_sequences
from prewarm.plan.structure import Level, Structure
from prewarm.site.settings import Settings
from prewarm.testkit.samples import build_shot
from prewarm.traces.counters import ImportStats
from prewarm.traces.files import read_traces

SHOT = Path(__file__).resolve().parents[1] / "sample_jobs" / "shot300"


def reads(path: str, frame: int, *spans: tuple[int, int]) -> list[Access]:
    return [Access(path, offset=s, length=e - s, frame=frame) for s, e in spans]


def spans_for(result, path: str, frame: int) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    return normalize(s for p in result.predictions if p.path == path and frame in p.frames for s in p.spans)


def lookup_from(sizes: dict[str, int]):  # type: ignore[no-untyped-def]
    return lambda p: FileInfo(p, sizes[p], 0.0) if p in sizes else None


TILES = [f"/s/tex/cliff_diff.{u}.tx" for u in (1001, 1002)]


@pytest.mark.parametrize("frames", [range(1001, 1005), range(1001, 1003)])
def test_tiles_every_frame_reads_are_not_a_frame_sequence(frames: range):
    """Frames 1001.. reading tiles 1001 and 1002 alike: the number does not follow the frame."""
    ts = aggregate(a for f in frames for t in TILES for a in reads(t, f, (0, 4096)))
    assert find_sequences(ts, max_delta=2) == []
    res = predict(range(1001, 1049), [], ts, lookup_from(dict.fromkeys(TILES, 10_000)))
    assert res.missing == []
    assert {p.path for p in res.predictions} == set(TILES)


def test_a_tile_pattern_is_never_a_sequence_even_when_frames_read_their_own_tile():
    """Frame 1001 read tile 1001 and frame 1002 tile 1002: a sequence by the numbers alone, but
    the manifest says these are tiles of one set, and nothing says a tile 1014 exists."""
    ts = aggregate(a for f, t in zip((1001, 1002), TILES, strict=True) for a in reads(t, f, (0, 4096)))
    assert len(find_sequences(ts, max_delta=2)) == 1, "by the numbers alone"
    cands = [Candidate(t, tile_set=0) for t in TILES]
    res = predict(range(1001, 1049), cands, ts, lookup_from(dict.fromkeys(TILES, 10_000)))
    assert res.missing == [] and res.stats.sequences == 0


def test_a_real_sequence_from_1001_still_finds_a_missing_member():
    caches = {f"/s/cache/fluid.{f}.bgeo": 5000 for f in range(1001, 1010) if f != 1007}
    ts = aggregate(a for f in (1001, 1002, 1003) for a in reads(f"/s/cache/fluid.{f}.bgeo", f, (0, 5000)))
    res = predict(range(1001, 1010), [], ts, lookup_from(caches))
    assert [p for p, _ in res.missing] == ["/s/cache/fluid.1007.bgeo"]


@pytest.fixture(scope="module")
def shot300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<tmp>/proj` with shot300's eight textures made for real (openimageio, about 15 s)."""
    root = tmp_path_factory.mktemp("shot300") / "proj"
    build_shot(SHOT, root, real=True)
    return root


def _path_map(root: Path) -> PathMap:
    return PathMap.parse([{"studio": "/studio/proj", "local": str(root)}], "test")


@pytest.fixture(scope="module")
def traces300(shot300: Path) -> TraceSet:
    return aggregate(read_traces([str(SHOT / "traces")], _path_map(shot300), stats=ImportStats()))


def _plan(root: Path, ts: TraceSet, frames: list[int]) -> Plan:
    manifest = load_manifest(SHOT / "manifest.yaml")
    settings = Settings(path_map=_path_map(root))
    with site_fs(settings) as fs:
        return plan_resolved(manifest, resolve_inputs(manifest, fs), ts, fs, settings,
                             PlanOptions(frames=tuple(frames)))


def test_shot_from_1001_with_udim_sets_plans_tiles_by_structure(shot300: Path, traces300: TraceSet):
    frames = sorted(traces300.frames)
    assert frames[0] == 1001
    train = frames[: len(frames) // 4]
    test = [f for f in frames if f not in train]
    trained = restrict(traces300, train)
    plan = _plan(shot300, trained, test)
    assert plan.missing == (), "no finding for tiles nothing says exist"
    assert plan.stats.predict.sequences == 0
    assert plan.stats.predict.tiled_files == 5, "four traced UDIM tiles and the tree, by their tiles"
    read = set(trained.reads)
    assert not [r for r in plan.ranges if r.path in read and r.reason is Reason.FALLBACK]
    assert evaluate(plan, restrict(traces300, test)).overall.recall >= 0.9


def test_a_decal_one_traced_frame_read_is_planned_last_for_the_other_frames(shot300: Path, traces300: TraceSet):
    """sign_mask.tx is read every 12th frame (1012, 1024, 1036); traced on 1012 only, the frames
    far from it get its traced footprint (`occasional`, after everything they are known to
    read), which frames 1010-1011, next to 1012, read anyway: the ranges keep their place."""
    frames = sorted(traces300.frames)
    train = [*frames[::4], 1012]
    test = [f for f in frames if f not in train]
    plan = _plan(shot300, restrict(traces300, train), test)
    sign = "/studio/proj/assets/lookdev/tex/sign_mask.tx"
    ranges = [r for r in plan.ranges if r.path == sign]
    assert ranges and min(r.frame or 0 for r in ranges) == 1010, "placed by the frames next to 1012"
    assert max(r.frames for r in ranges) > 2, "and planned for the frames far from it too"
    far = normalize((r.offset, r.end) for r in ranges if r.frames > 2)
    seen = traces300.reads[sign][1012]
    assert total(intersect(seen, far)) == total(seen), "1012's footprint, for every frame"


def test_a_tile_no_traced_frame_read_comes_by_its_levels_coarse_early(shot300: Path, traces300: TraceSet):
    """Tile 1003 of each set: no traced frame read it. For frames beyond the traced ones (frames
    1001-1009 traced) its header, tables and coarse levels come with what the frames are known to
    read (finer ones last, none finer than the coarsest level each traced frame read its siblings
    at: a frame turning to it sees it at the edge of its view); all of it `unread_tile`.
    Between traced frames that did not read it (every 4th traced), frames do not either."""
    frames = sorted(traces300.frames)
    plan = _plan(shot300, restrict(traces300, frames[:9]), frames[9:])
    tile = "/studio/proj/assets/cliff/tex/cliff_diff.1003.tx"
    mine = [(i, r) for i, r in enumerate(plan.ranges) if r.path == tile]
    assert mine and {r.reason for _, r in mine} == {Reason.UNREAD_TILE}
    head = next(i for i, r in mine if r.offset == 0)
    known = max(i for i, r in enumerate(plan.ranges) if r.reason in (Reason.TRACE, Reason.NEIGHBOURS))
    assert head < known, "header and coarse levels early, not after everything"
    size = shot300.joinpath("assets/cliff/tex/cliff_diff.1003.tx").stat().st_size
    assert sum(r.length for _, r in mine) < size / 8, "coarse levels only (about 0.4 of it at the siblings' finest level)"
    stepped = _plan(shot300, restrict(traces300, frames[::4]), [f for f in frames if f not in frames[::4]])
    assert not [r for r in stepped.ranges if r.path == tile]


def _mip() -> Structure:
    """Levels 256, 128, 64 px of 32 px tiles, 1000 bytes each, after a 100-byte header."""
    levels, pos = [], 100
    for n in (256, 128, 64):
        cells = (n // 32) ** 2
        levels.append(Level(n, n, 32, 32, tuple(pos + i * 1000 for i in range(cells)), (1000,) * cells))
        pos += cells * 1000
    return Structure("tiff", pos, ((0, 100),), tuple(levels))


def _texture_reads(start: Callable[[int, int], int]) -> TraceSet:
    """Frames 1, 3, 5, 7 read the header and six 1000-byte reads, the i-th at `start(i, frame)`."""
    return aggregate(a for f in range(1, 9, 2) for a in reads("/s/tex/rock.tx", f, (0, 100),
                                                               *[(start(i, f), start(i, f) + 1000) for i in range(6)]))


@pytest.mark.parametrize("start, changed", [
    (lambda i, f: 100 + 7000 * i + 2000 * f, False),        # tiles, from their start
    (lambda i, f: 433 + 7000 * i + 2000 * f, True),         # inside tiles: the tiles moved
    (lambda i, f: 4096 * (2 * i + f), False),               # page-aligned buffers: no evidence
])
def test_a_texture_whose_traced_reads_miss_its_tiles_changed_since_traced(start: Callable[[int, int], int],
                                                                          changed: bool):
    """A re-published texture: its tiles moved, the traced reads start inside them. It is planned
    by its levels with a finding, not by reads that point at other tiles. Reads starting on page
    boundaries (a reader through 4 KiB buffers) are no evidence."""
    st, tex = _mip(), "/s/tex/rock.tx"
    res = predict(range(1, 9), [Candidate(tex)], _texture_reads(start), lookup_from({tex: st.size}),
                  structure=lambda p: st)
    assert [p for p, _ in res.changed] == ([tex] if changed else [])
    if changed:
        assert "planned by its levels" in res.changed[0][1]
        assert {p.reason for p in res.predictions} == {Reason.FALLBACK}
        assert normalize(s for p in res.predictions for s in p.spans) == [(0, st.size)]
    assert res.missing == []


def test_a_file_traced_past_its_end_is_reported_not_dropped_in_silence():
    path = "/s/cache/anim.abc"
    ts = aggregate(a for f in (1, 2, 3) for a in reads(path, f, (0, 100), (9000, 9500)))
    res = predict(range(1, 6), [], ts, lookup_from({path: 5000}))
    assert [p for p, _ in res.changed] == [path] and "past its end" in res.changed[0][1]
    assert spans_for(res, path, 4) == [(0, 100)]
