"""Textures re-published between the traced render and the planned one (issue 25, item 2).

The trace store files each frame's reads of a structured file in tiles, with the file's identity
then; a plan against a file whose identity changed maps the tiles to its new offsets when its
levels and tile sizes are the same, and says so, or plans it by its levels when they are not.
A store entry with no identity (an older prewarm) is one finding per file, never a crash.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest

from prewarm.cli import main
from prewarm.flow.filing import structure_of
from prewarm.formats.reader import read_structure
from prewarm.plan.access import Access, Op
from prewarm.plan.aggregate import TraceSet, aggregate, aggregate_runs, merge, restrict
from prewarm.plan.pathmap import PathMap
from prewarm.plan.predict import predict
from prewarm.plan.ranges import normalize
from prewarm.plan.records import FileInfo, Reason
from prewarm.plan.structure import Filed, Identity, Level, Structure
from prewarm.site.settings import Settings
from prewarm.testkit.textures import make_exr, make_texture
from prewarm.traces.files import read_batches, read_traces
from prewarm.traces.profile import FrameProfile, ProfileError, decode, encode

TEX = "/s/tex/rock.tx"


def texture(offset: int, tile: int = 100, tiles: int = 4) -> Structure:
    """A 2-level texture: level 0 of 2x2 tiles (256 px, 128-px tiles), level 1 one tile; its tiles of
    `tile` bytes each from `offset` (another compression moves every tile)."""
    lv0 = Level(256, 256, 128, 128, tuple(offset + i * tile for i in range(tiles)), (tile,) * tiles)
    lv1 = Level(128, 128, 128, 128, (offset + tiles * tile,), (tile,))
    return Structure("tiff", offset + (tiles + 1) * tile, ((0, offset),), (lv0, lv1))


def identity(st: Structure) -> Identity:
    return Identity(st.size, 1, 2, st.digest(), st.shape())


def traced(st: Structure, frames: range, tiles: list[tuple[int, int, int]]) -> tuple[object, dict[int, Filed]]:
    """What `frames` read of the old `st` (header and `tiles`), and how the store filed it."""
    accesses = [Access(TEX, offset=s, length=e - s, frame=f)
                for f in frames for s, e in [*st.meta, *map(st.span, tiles)]]
    return aggregate(accesses), {f: Filed(identity(st), tuple(tiles)) for f in frames}


def plan(ts, st: Structure):  # type: ignore[no-untyped-def]
    return predict(range(1, 9), [], ts, lambda p: FileInfo(p, st.size, 0.0), structure=lambda p: st)


def spans_of(result, frame: int) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    return normalize(s for p in result.predictions if frame in p.frames for s in p.spans)


def test_a_republished_texture_plans_the_traced_tiles_at_their_new_offsets() -> None:
    old, new = texture(64), texture(200, tile=70)
    ts, filed = traced(old, range(1, 5), [(0, 1, 1), (1, 0, 0)])
    ts.filed = {TEX: filed}
    res = plan(ts, new)
    assert [why for _, why in res.changed] and "re-published since traced" in res.changed[0][1]
    assert res.stats.remapped_files == 1 and res.stats.changed_since_traced == 1
    got = spans_of(res, 2)  # a traced frame: exactly its tiles, at their new offsets, and the new header
    assert got == normalize([*new.meta, new.span((0, 1, 1)), new.span((1, 0, 0))])
    assert not any(p.reason is Reason.FALLBACK for p in res.predictions)


def test_the_same_file_keeps_its_traced_offsets_and_says_nothing() -> None:
    st = texture(64)
    ts, filed = traced(st, range(1, 5), [(0, 1, 1)])
    ts.filed = {TEX: filed}
    res = plan(ts, st)
    assert res.changed == [] and res.stats.remapped_files == 0


def test_other_levels_or_tile_sizes_are_a_finding_and_the_levels_model() -> None:
    old = texture(64)
    new = Structure("tiff", 1000, ((0, 64),), (Level(256, 256, 64, 64, tuple(64 + i * 50 for i in range(16)),
                                                      (50,) * 16),))
    ts, filed = traced(old, range(1, 5), [(0, 1, 1)])
    ts.filed = {TEX: filed}
    res = plan(ts, new)
    assert len(res.changed) == 1 and "other levels or tile sizes" in res.changed[0][1]
    assert {p.reason for p in res.predictions} == {Reason.FALLBACK}


def test_a_store_entry_with_no_identity_is_one_finding_per_file() -> None:
    st = texture(64)
    ts, _ = traced(st, range(1, 5), [(0, 1, 1)])
    ts.filed = {}  # from the store, filed by an older prewarm
    res = plan(ts, st)
    assert len(res.changed) == 1 and "identity when traced unknown" in res.changed[0][1]
    assert res.stats.identity_unknown == 1 and res.stats.changed_since_traced == 0
    assert spans_of(res, 2)  # still planned from its traced offsets


def test_raw_traces_carry_no_identity_and_keep_todays_rule() -> None:
    st = texture(64)
    ts, _ = traced(st, range(1, 5), [(0, 1, 1)])
    assert ts.filed is None
    assert plan(ts, st).changed == []


def stat_of(st: Structure, frames: range) -> list[Access]:
    """The `fstat` each frame made of the file, with the size it returned (a raw strace shows it)."""
    return [Access(TEX, Op.STAT, length=st.size, frame=f) for f in frames]


def test_raw_traces_whose_stat_size_differs_now_plan_the_file_by_its_levels_with_a_finding() -> None:
    old, new = texture(64), texture(200, tile=70)
    ts = raw(old, range(1, 5), [(0, 1, 1)])
    assert ts.sizes == {TEX: {f: old.size for f in range(1, 5)}}
    res = plan(ts, new)
    assert len(res.changed) == 1 and f"{old.size:,} bytes when traced (its traced stat)" in res.changed[0][1]
    assert {p.reason for p in res.predictions} == {Reason.FALLBACK}, "by its levels, never its old offsets"
    assert plan(ts, old).changed == [], "the same size: its traced offsets, and nothing said"


def test_raw_traces_of_a_changed_file_with_no_structure_are_planned_by_bytes_with_a_finding() -> None:
    old = texture(64)
    ts = raw(old, range(1, 5), [(0, 1, 1)])
    res = predict(range(1, 9), [], ts, lambda p: FileInfo(p, old.size + 10, 0.0), structure=lambda p: None)
    assert len(res.changed) == 1 and "planned by bytes" in res.changed[0][1] and spans_of(res, 2)


def test_traced_sizes_follow_the_frames_kept_and_merged() -> None:
    st = texture(64)
    ts = raw(st, range(1, 5), [(0, 1, 1)])
    assert restrict(ts, [2, 3]).sizes == {TEX: {2: st.size, 3: st.size}}
    assert merge([restrict(ts, [1]), restrict(ts, [4])]).sizes == {TEX: {1: st.size, 4: st.size}}
    assert replace(ts, sizes={}) == ts, "sizes are evidence beside the traces, as the store's identities"


def raw(st: Structure, frames: range, tiles: list[tuple[int, int, int]]) -> TraceSet:
    """Raw traces of `frames` reading `tiles` of `st`, each frame's `fstat` with the size it returned."""
    reads = [Access(TEX, offset=s, length=e - s, frame=f) for f in frames for s, e in [*st.meta, *map(st.span, tiles)]]
    return aggregate([*reads, *stat_of(st, frames)])


def test_profiles_keep_what_was_filed_and_read_older_ones_without_it() -> None:
    st = texture(64)
    filed = {TEX: Filed(identity(st), ((0, 1, 1), (1, 0, 0)))}
    profile = FrameProfile(3, (1, 2), 5, {TEX: [(0, 64)]}, (), (), filed)
    assert decode(encode(profile)) == profile
    older = orjson.loads(encode(FrameProfile(3, (1, 2), 5, {TEX: [(0, 64)]})))
    assert "filed" not in older and decode(orjson.dumps(older)).filed == {}
    bad = orjson.loads(encode(profile))
    bad["filed"][0][2] = [0, 1]
    with pytest.raises(ProfileError, match="tiles"):
        decode(orjson.dumps(bad))
    bad["filed"][0][2] = [0, 1, 1]
    bad["filed"][0][1] = {"digest": 3}
    with pytest.raises(ProfileError, match="identity"):
        decode(orjson.dumps(bad))


def _trace(path: Path, tex: str, local: Path, frames: range) -> None:
    """A JSON Lines trace of `frames` reading the header and two tiles of the texture as it is now."""
    st = read_structure(lambda s, e: local.read_bytes()[s:e], local.stat().st_size)
    assert isinstance(st, Structure)
    spans = [*st.meta, st.span((0, 1, 1)), st.span((0, 2, 1)), st.span((1, 0, 0))]
    path.write_text("".join(json.dumps({"path": tex, "offset": s, "length": e - s, "frame": f}) + "\n"
                            for f in frames for s, e in spans))


def test_through_the_cli_a_plan_from_the_store_maps_a_republished_tx(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tree, store = tmp_path / "proj", str(tmp_path / "store")
    local = tree / "tex" / "rock.tx"
    make_texture(local, 256, 0, np.random.default_rng(7), compression="zip")
    _trace(tmp_path / "frames.jsonl", "/studio/proj/tex/rock.tx", local, range(1, 5))
    on_site = ["--local", f"/studio/proj={tree}"]
    assert main(["traces", "--store", store, "import", *on_site, "--job", "rock_v001", "--show", "p",
                 "--shot", "s1", str(tmp_path / "frames.jsonl")]) == 0
    make_texture(local, 256, 0, np.random.default_rng(7), compression="lzw")  # re-published in place
    manifest = tmp_path / "job.yaml"
    manifest.write_text("job: rock_v002\nshow: p\nshot: s1\nframes: 1-8\ninputs:\n  - path: /studio/proj/tex/rock.tx\n")
    monkeypatch.setenv("PREWARM_TRACE_STORE", store)
    out = tmp_path / "plan.json"
    assert main(["plan", str(manifest), *on_site, "-o", str(out)]) == 0
    planned = json.loads(out.read_text())
    assert planned["summary"]["remapped_files"] == 1 and planned["summary"]["changed_since_traced"] == 1
    assert ["re-published since traced" in m["reason"] for m in planned["missing"]] == [True]
    new = read_structure(lambda s, e: local.read_bytes()[s:e], local.stat().st_size)
    assert isinstance(new, Structure)
    got = normalize((r["offset"], r["offset"] + r["length"]) for r in planned["ranges"])
    for tile in [(0, 1, 1), (0, 2, 1), (1, 0, 0)]:  # the traced tiles, where they are now
        s, e = new.span(tile)
        assert any(a <= s and e <= b for a, b in got), tile
    assert planned["summary"]["bytes_by_reason"].get("fallback", 0) == 0


def test_the_filing_reader_stamps_identity_through_the_guard(tmp_path: Path) -> None:
    local = tmp_path / "proj" / "a.tx"
    make_texture(local, 128, 0, np.random.default_rng(1))
    read = structure_of(Settings(path_map=PathMap.parse([{"studio": "/studio/proj", "local": str(tmp_path / "proj")}],
                                                        "test")))
    assert read is not None
    got = read("/studio/proj/a.tx")
    assert got is not None and got[0].size == local.stat().st_size and got[0].inode == local.stat().st_ino
    assert got[0].digest == got[1].digest() and read("/studio/proj/missing.tx") is None
    assert read("/etc/passwd") is None  # outside the roots: never opened


def test_a_changed_texture_whose_structure_cannot_be_read_now_is_planned_by_bytes_with_a_finding() -> None:
    old = texture(64)
    ts, filed = traced(old, range(1, 5), [(0, 1, 1)])
    ts.filed = {TEX: filed}
    res = predict(range(1, 9), [], ts, lambda p: FileInfo(p, old.size + 999, 0.0), structure=lambda p: None)
    assert len(res.changed) == 1 and "structure cannot be read now" in res.changed[0][1]
    assert "planned by bytes" in res.changed[0][1] and spans_of(res, 2)


def test_a_tiled_exr_is_filed_by_its_tiles_too(tmp_path: Path) -> None:
    local = tmp_path / "proj" / "plate.exr"
    make_exr(local, 256, 128, tiled=True, mipmap=True)
    read = structure_of(Settings(path_map=PathMap.parse([{"studio": "/studio/proj", "local": str(tmp_path / "proj")}],
                                                        "test")))
    assert read is not None
    got = read("/studio/proj/plate.exr")
    assert got is not None and got[1].format == "exr" and got[0].shape[0] == (256, 128, 64, 64)


def test_a_raw_strace_carries_its_fstat_sizes_to_the_plan(tmp_path: Path) -> None:
    """From a strace log on disk, through the importer the planner uses (`aggregate_runs` of
    `read_batches`): the size `fstat` returned reaches `TraceSet.sizes`, and the same as `aggregate`."""
    st = texture(64)
    log = tmp_path / "frame.0003.strace"
    log.write_text(
        f'7 10:00:00.000001 openat(AT_FDCWD, "{TEX}", O_RDONLY) = 3<{TEX}>\n'
        f"7 10:00:00.000002 fstat(3<{TEX}>, {{st_mode=S_IFREG|0644, st_size={st.size}, ...}}) = 0\n"
        f'7 10:00:00.000003 pread64(3<{TEX}>, ""..., 100, 164) = 100\n')
    pm = PathMap.parse([{"studio": "/s", "local": "/s"}], "test")
    runs = aggregate_runs(read_batches([str(log)], pm))
    assert runs.sizes == aggregate(read_traces([str(log)], pm)).sizes == {TEX: {3: st.size}}
    assert runs.reads == {TEX: {3: [(164, 264)]}}
    assert "bytes when traced (its traced stat)" in plan(runs, texture(200, tile=70)).changed[0][1]
