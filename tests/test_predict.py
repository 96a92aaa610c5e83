"""The predictor on synthetic training sets built to show each pattern of real renders."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prewarm.plan.access import Access, Op
from prewarm.plan.aggregate import aggregate, restrict, restrict_paths
from prewarm.plan.knobs import PredictOptions
from prewarm.plan.ordering import order_ranges
from prewarm.plan.predict import predict
from prewarm.plan.prediction import Candidate
from prewarm.plan.ranges import normalize
from prewarm.plan.records import FileInfo, Reason
from prewarm.plan.sequences import find_sequences
from prewarm.plan.shared import fit_progression

KiB = 1024
MiB = 1 << 20


def reads(path: str, frame: int, *spans: tuple[int, int]) -> list[Access]:
    return [Access(path, offset=s, length=e - s, frame=frame) for s, e in spans]


def lookup_from(sizes: dict[str, int]):
    return lambda p: FileInfo(p, sizes[p], 0.0) if p in sizes else None


def spans_for(result, path: str, frame: int) -> list[tuple[int, int]]:
    return normalize(s for p in result.predictions if p.path == path and frame in p.frames for s in p.spans)


def test_per_frame_files_generalise_to_unseen_frames_whole():
    sizes = {f"/s/cache/fluid.{f:04d}.bgeo": 1000 + f for f in range(1001, 1011)}
    ts = aggregate(a for f in (1001, 1002, 1003) for a in reads(f"/s/cache/fluid.{f:04d}.bgeo", f, (0, 1000 + f)))
    res = predict(range(1004, 1011), [], ts, lookup_from(sizes))
    for f in range(1004, 1011):
        assert spans_for(res, f"/s/cache/fluid.{f:04d}.bgeo", f) == [(0, 1000 + f)]
    assert {p.reason for p in res.predictions} == {Reason.PATTERN}


def test_motion_blur_reads_of_the_next_frame_form_a_second_sequence():
    sizes = {f"/s/c/v.{f:04d}.bgeo": 5000 for f in range(1, 12)}
    train = [a for f in (1, 2, 3, 4) for a in reads(f"/s/c/v.{f:04d}.bgeo", f, (0, 5000))
             + reads(f"/s/c/v.{f + 1:04d}.bgeo", f, (0, 5000))]
    seqs = find_sequences(aggregate(train), max_delta=2)
    assert sorted(s.delta for s in seqs) == [0, 1]
    res = predict([8], [], aggregate(train), lookup_from(sizes))
    assert {p.path for p in res.predictions} == {"/s/c/v.0008.bgeo", "/s/c/v.0009.bgeo"}


def test_udim_tile_number_equal_to_a_frame_is_not_a_sequence():
    tile = "/s/tex/diff.1001.tx"
    ts = aggregate(a for f in range(1001, 1005) for a in reads(tile, f, (0, 4096)))
    assert find_sequences(ts, max_delta=2) == []
    res = predict(range(1005, 1010), [], ts, lookup_from({tile: 10_000}))
    assert all(spans_for(res, tile, f) == [(0, 4096)] for f in range(1005, 1010))


def test_headers_and_footers_anchor_to_start_and_end_of_another_size():
    # Each frame's EXR: 300-byte header + offset table, 100-byte footer, the rest unread.
    sizes = {f"/s/r/beauty.{f:04d}.exr": 10_000 + 500 * f for f in range(1, 9)}
    train = [a for f in (1, 2, 3) for a in reads(f"/s/r/beauty.{f:04d}.exr", f, (0, 300),
                                                   (sizes[f"/s/r/beauty.{f:04d}.exr"] - 100, sizes[f"/s/r/beauty.{f:04d}.exr"]))]
    res = predict([7], [], aggregate(train), lookup_from(sizes))
    size7 = sizes["/s/r/beauty.0007.exr"]
    assert spans_for(res, "/s/r/beauty.0007.exr", 7) == [(0, 300), (size7 - 100, size7)]
    assert {p.reason for p in res.predictions} == {Reason.ANCHORED}


def alembic_training(frames, stride=120_000, header=200_000, size=5_000_000):
    footer = (size - 3000, size)
    return [a for f in frames for a in reads("/s/anim.abc", f, (0, header),
                                               (header + (f - 1) * stride, header + f * stride), footer)]


def test_alembic_region_moving_with_the_frame_is_extrapolated():
    stride, header, size = 120_000, 200_000, 5_000_000
    ts = aggregate(alembic_training(range(1, 7)))
    res = predict(range(7, 25), [], ts, lookup_from({"/s/anim.abc": size}))
    for f in (7, 15, 24):
        got = spans_for(res, "/s/anim.abc", f)
        region = (header + (f - 1) * stride, header + f * stride)
        assert normalize(got + [region]) == got, f"frame {f} region not covered"
        assert (0, header) in got and got[-1][1] == size
        # nothing of other frames' regions beyond a small fit slack
        assert sum(e - s for s, e in got) <= header + stride + 3000 + 2 * 16
    assert Reason.PROGRESSION in {p.reason for p in res.predictions}


def test_progression_needs_three_frames_and_a_steady_stride():
    assert fit_progression({1: [(100, 200)], 2: [(200, 300)]}) is None
    assert fit_progression({1: [(100, 200)], 2: [(9000, 9100)], 3: [(300, 400)]}) is None
    p = fit_progression({1: [(100, 200)], 2: [(200, 300)], 3: [(300, 400)]})
    assert p is not None and p.region(10, 10_000)[0][0] <= 1000 < p.region(10, 10_000)[0][1]


def test_regions_moving_at_their_own_strides_are_fitted_one_by_one():
    """A crate file's time sample: a value block 240 KB further per frame, and its 8-byte
    entry in the value table near the end of the file, 8 bytes further per frame."""
    frames = {f: [(240_000 * f, 240_000 * (f + 1)), (9_000_000 + 8 * f, 9_000_008 + 8 * f)] for f in (1, 2, 3, 4)}
    p = fit_progression(frames)
    assert p is not None
    got = p.region(7, 10_000_000)
    assert normalize(got + [(1_680_000, 1_920_000), (9_000_056, 9_000_064)]) == got
    assert sum(e - s for s, e in got) < 240_000 + 2 * 8192 + 16      # not the hull from the block to the table
    uneven = {1: frames[1], 2: frames[2][:1], 3: frames[3]}
    assert fit_progression(uneven) is None


def test_textures_without_structure_borrow_tiles_from_neighbouring_training_frames():
    # a texture whose structure could not be read: each frame reads tiles of two levels, far apart
    tex = "/s/tex/rock.tx"
    tile = {1: (1 * MiB, 1 * MiB + 64 * KiB), 5: (5 * MiB, 5 * MiB + 64 * KiB), 9: (2 * MiB, 2 * MiB + 64 * KiB)}
    coarse = {f: (7 * MiB + f * 64 * KiB, 7 * MiB + (f + 1) * 64 * KiB) for f in tile}
    ts = aggregate(a for f in (1, 5, 9) for a in reads(tex, f, (0, 8 * KiB), tile[f], coarse[f]))
    res = predict([2, 7], [], ts, lookup_from({tex: 8 * MiB}), opts=PredictOptions(spread=0))
    assert spans_for(res, tex, 2) == normalize([(0, 8 * KiB), tile[1], tile[5], coarse[1], coarse[5]])
    assert spans_for(res, tex, 7) == normalize([(0, 8 * KiB), tile[9], tile[5], coarse[5], coarse[9]])
    wide = predict([2], [], ts, lookup_from({tex: 8 * MiB}), opts=PredictOptions(spread=64 * KiB))
    assert spans_for(wide, tex, 2)[1] == (tile[1][0] - 64 * KiB, tile[1][1] + 64 * KiB)


def test_file_read_only_on_some_frames_is_predicted_near_them_and_last_for_the_others():
    """A prop that enters: frames near its readers read it; the others get what it was seen read
    (`occasional`), after everything, so a budget drops it first."""
    tex, tree = "/s/tex/a.tx", "/s/tex/tree.tx"
    train = [a for f in range(1, 40, 4) for a in reads(tex, f, (0, 1000))]
    train += [a for f in (9, 13, 17) for a in reads(tree, f, (0, 500))]
    res = predict(range(1, 40), [], aggregate(train), lookup_from({tex: 5000, tree: 5000}))
    near = sorted({f for p in res.predictions if p.path == tree and not p.last for f in p.frames})
    assert near == list(range(6, 21))
    others = [p for p in res.predictions if p.path == tree and p.last]
    assert [(p.reason, p.spans) for p in others] == [(Reason.OCCASIONAL, [(0, 500)])]
    traced = set(range(1, 40, 4))
    assert sorted(others[0].frames) == [f for f in range(1, 40) if f not in traced and not 6 <= f <= 20]


def test_unseen_inputs_fall_back_to_whole_files_up_to_the_cap_then_head_and_tail():
    small, big = "/s/a.bin", "/s/b.bin"
    sizes = {small: 10 * MiB, big: 400 * MiB}
    res = predict([1, 2], [Candidate(small), Candidate(big)], aggregate([]), lookup_from(sizes),
                  opts=PredictOptions(unseen_cap=256 * MiB, probe=MiB))
    assert spans_for(res, small, 1) == [(0, 10 * MiB)]
    assert spans_for(res, big, 2) == [(0, MiB), (399 * MiB, 400 * MiB)]
    assert {p.reason for p in res.predictions} == {Reason.FALLBACK}


def test_missing_member_of_a_sequence_is_a_finding():
    sizes = {f"/s/m.{f:04d}.png": 100 for f in (1, 2, 3)}
    ts = aggregate(a for f in (1, 2, 3) for a in reads(f"/s/m.{f:04d}.png", f, (0, 100)))
    res = predict([4], [], ts, lookup_from(sizes))
    assert res.missing and res.missing[0][0] == "/s/m.0004.png"


def test_restrict_splits_training_frames():
    ts = aggregate(alembic_training(range(1, 11)))
    sub = restrict(ts, range(1, 4))
    assert sub.frames == frozenset({1, 2, 3}) and set(sub.reads["/s/anim.abc"]) == {1, 2, 3}


def test_restrict_paths_keeps_every_frame_and_what_each_kept_file_was_when_traced():
    """A live re-plan predicts only some files from the whole job's traces: their traced stat sizes
    (which tell a file changed since it was traced) go with them."""
    ts = aggregate([*reads("/s/a.tx", 1, (0, 100)), *reads("/s/b.tx", 2, (0, 50)),
                    Access("/s/a.tx", Op.STAT, length=4096, frame=1), Access("/s/b.tx", Op.STAT, length=512, frame=2)])
    sub = restrict_paths(ts, {"/s/a.tx"})
    assert set(sub.reads) == {"/s/a.tx"} and sub.frames == ts.frames
    assert sub.sizes == {"/s/a.tx": {1: 4096}}


def test_order_puts_first_frames_and_shared_data_first_and_fallbacks_last():
    sizes = {"/s/scene": 4 * MiB, "/s/seq.0001": MiB, "/s/seq.0002": MiB, "/s/unseen": 2 * MiB}
    from prewarm.plan.prediction import Prediction
    preds = [
        Prediction("/s/unseen", (1, 2), [(0, 2 * MiB)], Reason.FALLBACK, last=True),
        Prediction("/s/seq.0002", (2,), [(0, MiB)], Reason.PATTERN),
        Prediction("/s/scene", (1, 2), [(0, 4 * MiB)], Reason.TRACE),
        Prediction("/s/seq.0001", (1,), [(0, MiB)], Reason.PATTERN),
    ]
    out = order_ranges(preds, [1, 2], sizes, granule=MiB)
    assert [r.path for r in out.ranges] == ["/s/scene", "/s/seq.0001", "/s/seq.0002", "/s/unseen"]
    assert out.ranges[0].frames == 2 and out.ranges[0].length == 4 * MiB


def test_budget_keeps_most_frames_per_byte_and_reports_the_rest():
    from prewarm.plan.prediction import Prediction
    sizes = {"/s/shared": 2 * MiB, "/s/one": 2 * MiB}
    preds = [Prediction("/s/one", (1,), [(0, 2 * MiB)], Reason.TRACE),
             Prediction("/s/shared", (1, 2, 3), [(0, 2 * MiB)], Reason.TRACE)]
    out = order_ranges(preds, [1, 2, 3], sizes, granule=MiB, max_bytes=3 * MiB)
    kept = {(r.path, r.offset) for r in out.ranges}
    assert ("/s/shared", 0) in kept and sum(r.length for r in out.ranges) == 3 * MiB
    assert sum(r.length for r in out.dropped) == MiB and out.dropped[0].path == "/s/one"


def test_ranges_are_granule_aligned_and_clipped_to_file_size():
    from prewarm.plan.prediction import Prediction
    out = order_ranges([Prediction("/s/f", (1,), [(10, 20), (3 * MiB + 5, 3 * MiB + 9)], Reason.TRACE)],
                       [1], {"/s/f": 3 * MiB + 100}, granule=MiB)
    assert [(r.offset, r.length) for r in out.ranges] == [(0, MiB), (3 * MiB, 100)]


@given(st.lists(st.tuples(st.sampled_from(["/s/b", "/s/a", "/s/c/d"]), st.integers(0, 2**40), st.booleans(),
                          st.integers(0, 9), st.integers(-3, 2**20), st.integers(1, 10_000)), max_size=30))
def test_ranges_are_ordered_as_their_key_tuples_would_be(rows):
    """The ordering packs each range's key into one int; it must sort exactly as the tuples
    (lateness, rank, tier, most frames first, path, offset) do, ties kept in cut order."""
    from prewarm.plan.ordering import _Pieces
    pieces = _Pieces()
    pieces.paths = ["/s/b", "/s/a", "/s/c/d"]
    for path, offset, last, rank, tier, frames in rows:
        pieces.path.append(pieces.paths.index(path))
        for column, value in ((pieces.offset, offset), (pieces.length, 1), (pieces.frame, rank), (pieces.frames, frames),
                              (pieces.last, last), (pieces.rank, rank), (pieces.tier, tier)):
            column.append(value)
        pieces.reason.append(Reason.TRACE)
    expected = sorted(range(len(rows)), key=lambda i: (rows[i][2], rows[i][3], rows[i][4], -rows[i][5], rows[i][0], rows[i][1], i))
    assert [(r.path, r.offset, r.frames) for r in pieces.ordered()] == [(rows[i][0], rows[i][1], rows[i][5]) for i in expected]


def test_a_file_named_by_its_readers_frame_is_not_occasional_for_every_other_frame():
    """A per-frame file no sequence explains (one traced frame read it): that frame's own, not a
    decal every frame may read."""
    own, decal = "/s/cache/debris.0005.bgeo", "/s/tex/decal.tx"
    train = [a for f in range(1, 40, 4) for a in reads("/s/tex/a.tx", f, (0, 1000))]
    train += reads(own, 5, (0, 500)) + reads(decal, 5, (0, 500))
    res = predict(range(1, 40), [], aggregate(train), lookup_from({"/s/tex/a.tx": 5000, own: 5000, decal: 5000}))
    assert not [p for p in res.predictions if p.path == own and p.reason is Reason.OCCASIONAL]
    assert [p for p in res.predictions if p.path == decal and p.reason is Reason.OCCASIONAL]
