"""The tile-space texture model on small hand-made structures: mapping reads to tiles, MIP
relations, growth, motion, push-ins, and the coarse-before-fine order."""

from __future__ import annotations

from prewarm.plan.records import Reason
from prewarm.plan.structure import Level, Structure
from prewarm.plan.texture import (
    TextureOptions,
    children,
    coarser,
    converging,
    drift,
    footprints,
    grow,
    predict_tiles,
    push_in,
    tiers,
    unseen_depth,
    whole_by_tier,
    within,
)

TILE = 1000


def mip(sizes: tuple[int, ...] = (256, 128, 64), tile: int = 32) -> Structure:
    """A MIP chain, finest first; each level's tiles laid out after the previous level's, 1000 bytes each."""
    levels = []
    pos = 100
    for n in sizes:
        cells = (-(-n // tile)) ** 2
        levels.append(Level(n, n, tile, tile, tuple(pos + i * TILE for i in range(cells)), (TILE,) * cells))
        pos += cells * TILE
    return Structure("tiff", pos, ((0, 100),), tuple(levels))


def test_reads_map_to_tiles_and_the_rest_is_header():
    st = mip()
    lv1 = st.levels[1]
    tiles, rest = st.tiles_read([(0, 8), lv1.span(2, 3), (lv1.span(0, 0)[0] + 10, lv1.span(0, 0)[0] + 20)])
    assert tiles == {(1, 2, 3), (1, 0, 0)}
    assert rest == [(0, 8)]


def test_children_are_one_level_finer_and_coarser_levels_cover_the_region():
    st = mip()
    assert children(st, {(1, 1, 1)}, 1) == {(0, 2, 2), (0, 3, 2), (0, 2, 3), (0, 3, 3)}
    assert children(st, {(2, 0, 0)}, 2) >= {(0, 0, 0), (0, 3, 3)}
    assert coarser(st, {(0, 5, 6)}) == {(1, 2, 3), (2, 1, 1)}
    assert st.finer(2) == [1] and st.coarser(0) == [1, 2]


def test_rip_map_levels_are_finer_along_each_axis():
    levels = []
    offset = 0
    for w, h in ((64, 64), (32, 64), (64, 32), (32, 32)):
        n = (w // 32) * (h // 32)
        levels.append(Level(w, h, 32, 32, tuple(range(offset, offset + n)), (1,) * n))
        offset += n
    st = Structure("exr", offset, (), tuple(levels))
    assert sorted(st.finer(3)) == [1, 2]
    assert st.finer(1) == [0] and sorted(st.coarser(0)) == [1, 2, 3]


def test_growth_stays_on_the_grid_and_scales_with_distance():
    st = mip()
    assert grow(st, {(2, 0, 0)}, 1) == {(2, 0, 0), (2, 1, 0), (2, 0, 1), (2, 1, 1)}
    assert len(grow(st, {(0, 4, 4)}, 0, (0.25, 0.0))) == 5  # a quarter of 8 columns on each side


def test_drift_sees_a_slow_pan_and_a_wrap_is_not_a_jump():
    st = mip()
    pan = {f: frozenset({(1, f // 2, 1)}) for f in range(1, 9)}  # one column every other frame
    (px, py), _ = drift(st, pan, sorted(pan))
    assert 0.0 < px < 0.25 and py == 0.0
    (back, _), _ = drift(st, pan, sorted(pan, reverse=True))
    assert back == -px, "towards frames before the traced ones, the pan runs the other way"
    wrap = {1: frozenset({(1, 0, 1), (1, 3, 1)}), 2: frozenset({(1, 0, 1), (1, 3, 1)}), 3: frozenset({(1, 0, 1)})}
    assert abs(drift(st, wrap, [1, 2, 3])[0][0]) < 0.1  # the centre of {0, 3} on a wrapping texture is at the seam


def test_a_truck_moves_on_beyond_the_traced_frames_and_widens_with_distance():
    """One column every other frame at one level (a truck): frames beyond the traced ones read
    further along, not back where the truck came from; the further, the wider."""
    st = mip()
    truck = {f: frozenset({(0, f // 2, 3)}) for f in range(1, 7)}  # columns 0..3 of level 0 (8 columns)
    got = predict_tiles(st, truck, 10, (6,), TextureOptions(grow=0, finer=0))
    row = sorted(x for lv, x, y in got if lv == 0 and y == 3)
    assert 5 in row and 0 not in row, row
    near = predict_tiles(st, truck, 7, (6,), TextureOptions(grow=0, finer=0))
    assert len([t for t in near if t[0] == 0]) < len([t for t in got if t[0] == 0])


def test_between_traced_frames_the_union_is_not_grown_and_nothing_finer_is_added():
    """The two footprints bracket the frame's: `grow` applies further beyond the traced frames than
    their spacing, not between them nor next to them."""
    st = mip()
    fps = {1: frozenset({(1, 0, 0)}), 5: frozenset({(1, 3, 0)})}
    got = predict_tiles(st, fps, 3, (1, 5), TextureOptions(grow=1, finer=3))
    assert {t for t, r in got.items() if t[0] == 1} == {(1, 0, 0), (1, 3, 0)}
    still = {1: frozenset({(1, 1, 1)}), 5: frozenset({(1, 1, 1)})}
    assert {t for t in predict_tiles(st, still, 7, (5,), TextureOptions(grow=1, finer=0)) if t[0] == 1} == {(1, 1, 1)}
    far = predict_tiles(st, still, 12, (5,), TextureOptions(grow=1, finer=0))
    assert {(1, 0, 0), (1, 2, 2)} <= set(far), "further out than their spacing, grown by a tile"
    assert Reason.FINER not in got.values()
    assert (2, 0, 0) in got and (2, 1, 0) in got  # coarser levels over the region


def test_a_push_in_over_the_traced_frames_adds_children_beyond_them():
    st = mip()
    fps = {1: frozenset({(2, 1, 1)}), 2: frozenset({(2, 1, 1)}), 3: frozenset({(1, 2, 2)})}
    got = predict_tiles(st, fps, 4, (3,), TextureOptions(grow=0, finer=0))
    finer = {t for t, r in got.items() if r is Reason.FINER}
    assert finer == {(0, 4, 4), (0, 5, 4), (0, 4, 5), (0, 5, 5)}
    steady = {1: frozenset({(1, 2, 2)}), 2: frozenset({(1, 2, 2)}), 3: frozenset({(1, 2, 2)})}
    assert Reason.FINER not in predict_tiles(st, steady, 4, (3,), TextureOptions(grow=0, finer=0)).values()


def test_the_finer_hedge_applies_only_beyond_the_traced_spacing():
    st = mip()
    fps = {1: frozenset({(1, 2, 2)}), 2: frozenset({(1, 2, 2)}), 3: frozenset({(1, 2, 2)})}
    near = predict_tiles(st, fps, 4, (3,), TextureOptions(grow=0, finer=1))
    far = predict_tiles(st, fps, 9, (3,), TextureOptions(grow=0, finer=1))
    assert Reason.FINER not in near.values()
    assert {t for t, r in far.items() if r is Reason.FINER} == {(0, 4, 4), (0, 5, 4), (0, 4, 5), (0, 5, 5)}


def test_tiers_put_header_first_then_coarse_before_fine():
    st = mip()
    order = [tier for tier, _ in whole_by_tier(st)]
    assert order == [0, 64, 128, 256]
    assert [t for t, _ in tiers(st, {(0, 0, 0), (2, 0, 0)})] == [64, 256]


def test_footprints_per_frame():
    st = mip()
    fps = footprints(st, {7: [st.levels[2].span(1, 1)], 8: [(0, 100)]})
    assert fps == {7: frozenset({(2, 1, 1)}), 8: frozenset()}


def test_the_push_in_hedge_on_a_truck_lies_under_where_the_footprint_heads():
    """No traced frame gets finer: the hedge is the children of the footprint moved on, not of
    its widening, which on a truck would be children the frames never read."""
    st = mip()
    truck = {f: frozenset({(1, f // 2, 1)}) for f in range(1, 7)}  # level 1 (4 columns): columns 0..3
    got = predict_tiles(st, truck, 12, (6,), TextureOptions(grow=1, finer=1))
    finer = {t for t, r in got.items() if r is Reason.FINER}
    neighbours = {t for t, r in got.items() if r is Reason.NEIGHBOURS and t[0] == 1}
    assert finer and len(finer) == 4, "one tile's children, not a ring around the widened footprint"
    assert len(neighbours) > 4


def test_the_push_in_hedge_stays_under_the_coarser_level_the_frames_read() -> None:
    """A filtered lookup reads two levels over one region: the coarser one bounds the view, and a
    push-in narrows it, so the grown children of the finest tiles are kept under the coarser tiles
    (shot200, every 4th traced: 2.10x -> 1.85x at recall 1.000)."""
    st = mip()  # level 0: 8x8 tiles, level 1: 4x4, level 2: 2x2
    fps = {1: frozenset({(2, 0, 0)}), 2: frozenset({(2, 0, 0)}), 3: frozenset({(2, 0, 0), (1, 1, 1)})}
    got = predict_tiles(st, fps, 4, (3,), TextureOptions(grow=1, finer=0))
    finer = {t for t, r in got.items() if r is Reason.FINER}
    assert {(0, 2, 2), (0, 3, 3), (0, 1, 1)} <= finer, "the children, grown inside the coarser tile"
    assert all(x <= 3 and y <= 3 for _, x, y in finer), "not past the coarser tile (2, 0, 0)"
    ring = grow(st, {(0, 2, 2)}, 1)
    assert within(st, ring, {(1, 1, 1)}) == ring, "a footprint of one level bounds nothing"
    assert within(st, ring, {(1, 1, 1), (2, 1, 1)}) == set(), "none of it under that coarser tile"


def dolly() -> tuple[Structure, dict[int, frozenset[tuple[int, int, int]]]]:
    """Six levels (2048 to 64 px, 32-px tiles); frames 1-4 read down to 256 px, frames 5-12 to 512:
    a push-in one level in 8 frames, as shot220's first 12 frames show it."""
    st = mip((2048, 1024, 512, 256, 128, 64))
    fps = {f: frozenset({(4, 1, 1), (3, 2, 2)}) for f in range(1, 5)}
    fps.update({f: frozenset({(3, 2, 2), (2, 4, 4)}) for f in range(5, 13)})
    return st, fps


def test_a_push_in_has_a_pace_fitted_over_the_traced_run() -> None:
    st, fps = dolly()
    assert 0.1 < push_in(st, fps, list(range(1, 13))) < 0.125
    assert push_in(st, fps, list(range(9, 13))) == 0.0, "four frames of one level show no push-in"
    assert push_in(st, fps, list(range(12, 0, -1))) == 0.0, "towards frame 0 it pulls out"
    steady = {f: frozenset({(2, 4, 4)}) for f in range(1, 13)}
    assert push_in(st, steady, list(range(1, 13))) == 0.0


def test_a_push_in_shown_is_extrapolated_as_deep_as_its_pace_goes() -> None:
    """Recall 0.679 at 2.15x on shot220's 36 frames after its first 12, 1.000 at 3.18x with this."""
    st, fps = dolly()
    opts = TextureOptions(grow=0, finer=0)
    near = {t for t, r in predict_tiles(st, fps, 14, (12,), opts).items() if r is Reason.FINER}
    far = {t for t, r in predict_tiles(st, fps, 30, (12,), opts).items() if r is Reason.FINER}
    level1 = {(1, x, y) for x in (8, 9) for y in (8, 9)}
    assert near == level1, "two frames out, one level finer"
    assert far == level1 | {(0, x, y) for x in range(16, 20) for y in range(16, 20)}, "18 out, two levels"


def test_in_a_push_in_a_footprint_that_narrows_has_not_moved() -> None:
    st = mip()  # level 1: 4x4 tiles
    narrowing = {1: frozenset({(1, 0, 1), (1, 1, 1), (1, 2, 1)}), 2: frozenset({(1, 1, 1), (1, 2, 1)}),
                 3: frozenset({(1, 2, 1)})}
    assert drift(st, narrowing, [1, 2, 3], narrowing=True) == ((0.0, 0.0), (0.0, 0.0))
    (vx, _), _ = drift(st, narrowing, [1, 2, 3])
    assert vx > 0, "without a push-in, the tiles that fell off read as a move"


def test_the_depth_a_hidden_push_in_may_reach_grows_with_the_log_of_the_distance() -> None:
    """Less than a level over the traced span, at a steady pace: one level up to twice the span
    past them, two up to six times, three up to fourteen."""
    assert [unseen_depth(8, d) for d in (1, 16, 17, 48, 49, 112, 113)] == [1, 1, 2, 2, 3, 3, 4]
    assert unseen_depth(0, 3) == unseen_depth(1, 3) == 2, "one traced frame: a span of one frame"


def test_deeper_levels_converge_on_the_footprints_centre() -> None:
    """The second level finer under the central half of the footprint: four times its tiles,
    not sixteen; the first level is the `finer` hedge's, not repeated."""
    st = mip((512, 256, 128, 64))  # level 2: 4x4 tiles, level 0: 16x16
    footprint = {(2, x, y) for x in (1, 2) for y in (1, 2)}  # the middle of the texture: [0.25, 0.75)
    got = converging(st, footprint, 1, 2)
    assert got == {(0, x, y) for x in range(6, 10) for y in range(6, 10)}, "the central half: [0.375, 0.625)"
    assert converging(st, footprint, 1, 1) == set() and converging(st, footprint, 2, 2) == set()
    assert {t[0] for t in converging(st, footprint, 0, 2)} == {0, 1}
    wrapped = {(2, 0, 1), (2, 3, 1)}  # a lookup wrapping round a repeating texture: centred on its seam
    assert {x for _, x, _ in converging(st, wrapped, 1, 2)} == {14, 15, 0, 1}
    bounded = footprint | {(3, 0, 0)}  # the coarser level read bounds it: only its quarter of the middle
    assert converging(st, bounded, 1, 2) == {(0, x, y) for x in range(6, 8) for y in range(6, 8)}
    deep = mip((1024, 512, 256, 128, 64))  # level 3: 4x4 tiles ... level 0: 32x32
    middle = {(3, x, y) for x in (1, 2) for y in (1, 2)}
    got = converging(deep, middle, 1, 3)
    assert {t for t in got if t[0] == 1} == {(1, x, y) for x in range(6, 10) for y in range(6, 10)}
    assert {t for t in got if t[0] == 0} == {(0, x, y) for x in range(14, 18) for y in range(14, 18)}, \
        "the third level under the central quarter: again four times the footprint's tiles"


def test_far_beyond_a_steady_span_a_second_level_comes_under_its_centre_last() -> None:
    """Frames 1-3 read one level; past twice their span the second level finer is added, reason
    `FINER_FAR`, under the central half of where the footprint is; `finer` 0 turns it off."""
    st = mip((512, 256, 128, 64))
    steady = {f: frozenset({(2, x, y) for x in (1, 2) for y in (1, 2)}) for f in (1, 2, 3)}
    opts = TextureOptions(grow=0, finer=1)
    near = predict_tiles(st, steady, 7, (3,), opts)  # 4 frames out: twice the span (2)
    far = predict_tiles(st, steady, 8, (3,), opts)
    assert Reason.FINER_FAR not in near.values() and Reason.FINER in near.values()
    assert {t for t, r in far.items() if r is Reason.FINER_FAR} == {(0, x, y) for x in range(6, 10)
                                                                     for y in range(6, 10)}
    assert {t for t, r in far.items() if r is Reason.FINER} == {(1, x, y) for x in range(2, 6) for y in range(2, 6)}
    off = predict_tiles(st, steady, 8, (3,), TextureOptions(grow=0, finer=0)).values()
    assert Reason.FINER_FAR not in off and Reason.FINER not in off
    pushing = {1: frozenset({(3, 0, 0)}), 2: frozenset({(3, 0, 0)}), 3: frozenset({(2, 1, 1)})}
    assert Reason.FINER_FAR not in predict_tiles(st, pushing, 30, (3,), opts).values(), \
        "a push-in shown goes as deep as its pace: no prior"
