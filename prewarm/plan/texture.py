"""The texture model: frames' reads of a structured file in tile space, and tiles predicted for unseen frames. Pure.

A texture cache reads a file's header and tile tables, then the tiles of the MIP
levels a frame samples. Byte offsets hide what changes from frame to frame: as the
camera pans, a frame reads the neighbouring tiles of the same level; as it pushes
in, the children of those tiles one level finer. In tile space both are plain:

* a traced read is mapped to `(level, x, y)` through the file's `Structure`;
* an unseen frame between traced frames reads the union of their footprints (they
  bracket it: on shot200, every 4th frame traced, growing that union by a tile bought
  recall 1.000 at 2.41x the needed bytes, the union alone 1.000 at 2.19x); one next
  to them (within their spacing) the nearest footprints as they are (2.10x, recall
  1.000), one further out grown by `grow` tiles at every level. Beyond the
  last traced frame (or before the first) the footprint moves on at the pace and in
  the direction it moved over the last
  traced frames (`drift`, per axis, in image sizes per frame: a truck), widened
  with the distance by `HEDGE` of that move plus the pace's variation (a wobble);
* beyond the traced frames, the children of the finest tiles one level finer are
  added (`finer` levels deep, a hedge for a push-in), and, when the finest level read
  gets finer over the traced frames towards it (`push_in`: its pace, levels a frame,
  fitted over up to `PACE_FRAMES` of them), as many levels as that pace goes over the
  distance, one at least (shot220's dolly-in, 12 frames traced, the 36 after them:
  recall 0.679 at 2.15x with one level, 1.000 at 3.18x as deep as the pace goes); kept under the
  tiles of the next coarser level the frames read (`within`: a filtered lookup reads
  two levels over one region, and a push-in narrows it; on shot200, every 4th traced,
  the hedge grown past them cost 2.10x the needed bytes, kept under them 1.85x, both
  at recall 1.000);
* far beyond the traced frames when they show no push-in, the levels finer still that
  a steady push-in too slow for them to show could reach by then (`unseen_depth`: a
  second level past twice their span), each under the part of the footprint a view
  converging on its centre reads it from (`converging`: the second level finer under
  its central half), reason `finer_far`, after everything the frame is known to read
  (shot200, frames 1-9 traced, 10-36 planned: frame 36 reads two levels finer than
  any of them; recall 0.904 at 2.59x without, 0.952 at 2.78x with; a second level
  under all of the footprint found more, 1.000 at 3.27x, but its truck went to 4.14x);
* every coarser level over any predicted region is added: the tiles are few,
  and a filtered lookup reads the next coarser level too.

Ordering follows the structure: header and tables first (tier 0), then levels
coarse before fine (their tier is their resolution), so that a budget drops the
finest tiles first and the first frame of a wide shot, which reads coarse levels,
is ready early.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

from prewarm.plan.ranges import Span, normalize
from prewarm.plan.records import Reason
from prewarm.plan.structure import Structure, Tile

META_TIER = 0
"""Tier of headers and tile tables: before any tile."""


@dataclass(frozen=True)
class TextureOptions:
    grow: int = 1
    """Tiles by which a footprint borrowed further beyond the traced frames than their spacing
    grows on each side, at every level (between them and next to them, it is not grown)."""
    finer: int = 1
    """Levels of children added under the finest tiles of frames beyond the traced ones, as a
    hedge for a push-in the traced frames cannot show (between traced frames, the neighbours
    bracket the level). A push-in they do show adds one level without it."""
    max_drift: float = 0.25
    """The most a footprint is assumed to move per frame, in image widths: a faster jump between
    traced frames is a lookup wrapping round the texture, not camera motion."""


Footprints = Mapping[int, frozenset[Tile]]
"""Per traced frame, the tiles it read."""


def footprints(st: Structure, per: Mapping[int, list[Span]]) -> dict[int, frozenset[Tile]]:
    return {t: frozenset(st.tiles_read(spans)[0]) for t, spans in per.items()}


def _by_level(tiles: Iterable[Tile]) -> dict[int, set[tuple[int, int]]]:
    out: dict[int, set[tuple[int, int]]] = defaultdict(set)
    for level, x, y in tiles:
        out[level].add((x, y))
    return out


def _finest(st: Structure, tiles: Iterable[Tile]) -> int | None:
    """Index of the finest level among `tiles` (largest resolution)."""
    levels = {t[0] for t in tiles}
    return max(levels, key=lambda i: st.levels[i].resolution) if levels else None


def _centre(st: Structure, level: int, cells: set[tuple[int, int]]) -> tuple[float, float]:
    """Where a footprint is, per axis, as a circular mean: a lookup near s = 0 of a texture that
    repeats reads the last column too, and a plain mean or bounding box would put it mid-image."""
    lv = st.levels[level]

    def mean(values: list[float]) -> float:
        c = sum(math.cos(2 * math.pi * v) for v in values)
        s = sum(math.sin(2 * math.pi * v) for v in values)
        return (math.atan2(s, c) / (2 * math.pi)) % 1.0

    return (mean([(x + 0.5) / lv.columns for x, _ in cells]), mean([(y + 0.5) / lv.rows for _, y in cells]))


def _towards(a: float, b: float) -> float:
    """From `a` to `b` on the circle of texture coordinates, the short way round: in (-0.5, 0.5]."""
    return -((a - b + 0.5) % 1.0 - 0.5)


Motion = tuple[tuple[float, float], tuple[float, float]]
"""Per axis, how fast footprints move (image widths, heights per frame, signed: along the frames
towards the unseen one), and how much the pace varies about that (the mean deviation)."""


def drift(st: Structure, fps: Footprints, side: list[int], max_drift: float = 0.25, narrowing: bool = False) -> Motion:
    """How footprints move near `side` (traced frames, nearest last): over its consecutive frames,
    how far the centre of what both read at a level moved, per frame.

    Footprints move in whole tiles, so most pairs of frames show no move and a few a
    jump: the mean, not the median, sees a slow pan. Only the frames towards the
    unseen frame count: a pan that stopped earlier in the shot does not move it. A
    truck moves one way (the mean says where to); a wobble moves both ways (the
    deviation says how far either side). In a push-in (`narrowing`), a footprint that
    reads a part of the tiles the frame before read did not move: the view narrowed, and
    the centre of what is left shifts by the tiles that fell off (shot220's dolly, 12
    frames traced: taken for motion, a drift of -0.04 image widths a frame and a wobble
    of 0.06 moved and widened the footprint past the texture's edges 36 frames out).
    """
    mx: list[float] = []
    my: list[float] = []
    for a, b in pairwise(side):
        la, lb = _by_level(fps[a]), _by_level(fps[b])
        shared = set(la) & set(lb)
        if not shared:
            continue
        level = min(shared, key=lambda i: st.levels[i].resolution)
        if narrowing and lb[level] <= la[level]:
            mx.append(0.0)
            my.append(0.0)
            continue
        (ax, ay), (bx, by) = _centre(st, level, la[level]), _centre(st, level, lb[level])
        gap = abs(b - a)
        mx.append(max(-max_drift, min(max_drift, _towards(ax, bx) / gap)))
        my.append(max(-max_drift, min(max_drift, _towards(ay, by) / gap)))
    if not mx:
        return (0.0, 0.0), (0.0, 0.0)
    vx, vy = sum(mx) / len(mx), sum(my) / len(my)
    return (vx, vy), (sum(abs(v - vx) for v in mx) / len(mx), sum(abs(v - vy) for v in my) / len(my))


def shift(st: Structure, tiles: Iterable[Tile], by: tuple[float, float]) -> set[Tile]:
    """`tiles` moved by `by` (image widths, heights), level by level; what would leave the image
    stops at its edge (a truck running past the texture's edge still reads the edge)."""
    out: set[Tile] = set()
    for level, xy in _by_level(tiles).items():
        lv = st.levels[level]
        dx = math.floor(by[0] * lv.columns + 0.5)
        dy = math.floor(by[1] * lv.rows + 0.5)
        out.update((level, min(lv.columns - 1, max(0, x + dx)), min(lv.rows - 1, max(0, y + dy))) for x, y in xy)
    return out


HEDGE = 0.5
"""Beyond the traced frames, a moving footprint is widened by this share of the distance it was
moved, on each side, plus the pace's own variation: the further out, the less sure the pace."""


def grow(st: Structure, tiles: Iterable[Tile], cells: int, by: tuple[float, float] = (0.0, 0.0)) -> set[Tile]:
    """`tiles` widened by `cells` tiles plus `by` (image widths, heights) on each side, level by level."""
    out: set[Tile] = set()
    for level, xy in _by_level(tiles).items():
        lv = st.levels[level]
        rx = cells + math.floor(by[0] * lv.columns + 0.5)
        ry = cells + math.floor(by[1] * lv.rows + 0.5)
        rows: dict[int, set[int]] = defaultdict(set)
        for x, y in xy:
            rows[y].update(range(max(0, x - rx), min(lv.columns, x + rx + 1)))
        for y, xs in rows.items():
            for yy in range(max(0, y - ry), min(lv.rows, y + ry + 1)):
                out.update((level, x, yy) for x in xs)
    return out


def children(st: Structure, tiles: Iterable[Tile], depth: int) -> set[Tile]:
    """The tiles `depth` levels finer under the finest level of `tiles` (a push-in reads them next)."""
    tiles = list(tiles)
    finest = _finest(st, tiles)
    if finest is None or depth <= 0:
        return set()
    out: set[Tile] = set()
    frontier: list[tuple[int, set[tuple[int, int]]]] = [(finest, {(x, y) for lv, x, y in tiles if lv == finest})]
    for _ in range(depth):
        nxt: list[tuple[int, set[tuple[int, int]]]] = []
        for level, cells in frontier:
            for child in st.finer(level):
                got = st.project(cells, level, child)
                out.update((child, x, y) for x, y in got)
                nxt.append((child, got))
        frontier = nxt
    return out


def within(st: Structure, tiles: Iterable[Tile], footprint: Iterable[Tile]) -> set[Tile]:
    """`tiles` (finer than `footprint`) kept where they lie under the tiles `footprint` read at its
    second finest level. A filtered lookup reads two levels over one region, so the coarser level a
    frame read bounds its view: a push-in narrows it, and the finer tiles it reaches next lie under
    that level's tiles, not under their neighbours. A footprint of one level bounds nothing."""
    footprint = list(footprint)
    levels = _by_level(footprint)
    finest = _finest(st, footprint)
    below = [lv for lv in levels if lv != finest]
    if finest is None or not below:
        return set(tiles)
    bound = max(below, key=lambda i: st.levels[i].resolution)
    return {t for t in tiles if st.project({(t[1], t[2])}, t[0], bound) & levels[bound]}


def coarser(st: Structure, tiles: Iterable[Tile]) -> set[Tile]:
    """Every coarser level's tiles over the region `tiles` cover."""
    out: set[Tile] = set()
    for level, cells in _by_level(tiles).items():
        for c in st.coarser(level):
            out.update((c, x, y) for x, y in st.project(cells, level, c))
    return out


def push_in(st: Structure, fps: Footprints, run: list[int]) -> float:
    """How many levels finer per frame the finest level read gets along `run` (traced frames ordered
    towards the unseen frame): the slope of its log2 resolution over the frames, a least-squares
    fit, when the last frame reads finer than an earlier one; else 0 (no push-in shown).

    A push-in moves one level in a step every few frames, so a few frames near the end show none
    (shot220's dolly, 12 frames traced: 256 to 512 at frame 5, then 512 to frame 12); the fit
    over the run sees the pace, 0.11 levels a frame there (the camera's: 0.125)."""
    way = 1 if run[-1:] >= run[:1] else -1  # along the run: frames before the first traced one count down
    pts = [(way * t, math.log2(st.levels[f].resolution)) for t in run if (f := _finest(st, fps[t])) is not None]
    if len(pts) < 2 or pts[-1][1] <= min(y for _, y in pts[:-1]):
        return 0.0
    mx = sum(t for t, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((t - mx) ** 2 for t, _ in pts)
    return sum((t - mx) * (y - my) for t, y in pts) / sxx if sxx else 0.0


TREND_FRAMES = 3
"""Traced frames nearest an unseen frame beyond them over which motion is measured."""

PACE_FRAMES = 12
"""Traced frames nearest an unseen frame beyond them over which a push-in's pace is measured."""


def unseen_depth(span: int, distance: int) -> int:
    """How many levels finer a frame `distance` past the traced frames may read when they, over
    `span` frames, read no finer: `ceil(log2(1 + distance / (2 * span)))`.

    The prior is a steady push-in (the image scale growing by the same amount each frame)
    too slow for the traced frames to show: less than one level (the scale less than
    doubled) over their span, so at most `1 / span` of the first traced frame's scale a
    frame. From the last traced frame (scale up to 2) the scale grows by at most
    `(2 + distance / span) / 2` by `distance` frames later, and the finest level read
    moves by at most the ceiling of its log2. One level up to twice the span past them,
    two up to six times, three up to fourteen: on a check render of the first quarter of
    a job (shot200: frames 1-9 traced, 10-36 planned, a push-in from frame 32 two levels
    deep at frame 36) the second level comes for the last third of the job. A dolly
    towards the subject accelerates (its scale grows as 1 / remaining distance) and can
    outrun it: a hedge, not a bound. One traced frame shows no span: taken as one frame."""
    return max(1, math.ceil(math.log2(1 + distance / (2 * max(1, span)))))


EPS = 1e-9
"""Below any tile's share of a texture (2 ** -30 is a billion-pixel level's pixel): float rounding."""


def converging(st: Structure, footprint: Iterable[Tile], first: int, depth: int) -> set[Tile]:
    """The children `first + 1` to `depth` levels finer under `footprint`'s finest tiles, each
    level where a push-in converging on the footprint's centre reads it: the `k`-th level finer
    under the central `2 ** (1 - k)` of the footprint's extent, per axis, and under the tiles of
    its next coarser level (`within`).

    A push-in converges on the image centre, which maps to the footprint's centre on the
    texture. A filtered lookup reads the `k`-th level finer once the view is `k - 1` levels
    in: its scale at least `2 ** (k - 1)` times the footprint's, its extent at most
    `2 ** (1 - k)` of it, about its centre. So the first level finer lies under all of the
    footprint (the `finer` hedge), the second under its central half, the third under its
    central quarter: each level costs about four times the footprint's finest tiles (four
    times the tiles per tile, a quarter of the area), not four times the level before."""
    footprint = list(footprint)
    finest = _finest(st, footprint)
    if finest is None or depth <= first:
        return set()
    lv = st.levels[finest]
    cells = _by_level(footprint)[finest]
    (mx, my) = _centre(st, finest, cells)
    # the footprint's extent per axis, unwrapped about its circular mean (a footprint may wrap)
    xs = [_towards(mx, (x + 0.5) / lv.columns) for x, _ in cells]
    ys = [_towards(my, (y + 0.5) / lv.rows) for _, y in cells]
    cx, hx = mx + (min(xs) + max(xs)) / 2, (max(xs) - min(xs)) / 2 + 0.5 / lv.columns
    cy, hy = my + (min(ys) + max(ys)) / 2, (max(ys) - min(ys)) / 2 + 0.5 / lv.rows

    def inside(level: int, x: int, y: int, share: float) -> bool:
        """The tile overlaps the central share (by more than rounding: only touching its edge does not)."""
        c = st.levels[level]
        return abs(_towards(cx, (x + 0.5) / c.columns)) < share * hx + 0.5 / c.columns - EPS \
            and abs(_towards(cy, (y + 0.5) / c.rows)) < share * hy + 0.5 / c.rows - EPS

    # level by level, only under the tiles kept a level up: each share lies inside the one before,
    # so the work is about four times the footprint's tiles a level, not the whole subtree
    out: set[Tile] = set()
    frontier: list[tuple[int, set[tuple[int, int]]]] = [(finest, cells)]
    for k in range(1, depth + 1):
        nxt: list[tuple[int, set[tuple[int, int]]]] = []
        for level, at in frontier:
            for child in st.finer(level):
                got = {(x, y) for x, y in st.project(at, level, child) if inside(child, x, y, 2.0 ** (1 - k))}
                if k > first:
                    out.update((child, x, y) for x, y in got)
                nxt.append((child, got))
        frontier = nxt
    return within(st, out, footprint)


def spacing(frames: list[int]) -> int:
    """The usual gap between traced frames: a stepped check render's step."""
    gaps = sorted(b - a for a, b in pairwise(frames))
    return gaps[len(gaps) // 2] if gaps else 1


def predict_tiles(st: Structure, fps: Footprints, frame: int, nearest: tuple[int, ...],
                  opts: TextureOptions) -> dict[Tile, Reason]:
    """The tiles an unseen `frame` will read and why, from its nearest traced frames reading the file.

    Between traced frames, their footprints bracket the frame's: their union, not grown
    (nor, next to them within their spacing, the moved footprint).
    Beyond them, the footprint first moves on (`drift`: a truck's pace and direction
    times the distance, widened with it), then grows. A push-in
    reads the children of the tiles it read, over a smaller region. When the last
    traced frames get finer, the children of the moved footprint's finest tiles, grown
    at their own level, as many levels deep as the push-in's pace goes over the distance
    (one at least), under its next coarser level's tiles; a footprint narrowing inside the
    one before has not moved (`drift`'s `narrowing`).
    Otherwise, when the frame is further from them than their spacing, the hedge for a
    push-in no traced frame shows: `finer` levels of children of the tiles where the
    footprint is headed, not of its widening (on a truck that widening would buy
    children the frames never read), under them too; and further levels as the distance
    allows one their span hid (`unseen_depth`), converging on the footprint's centre
    (`converging`), reason `FINER_FAR` (planned last). `finer` 0 turns both off.
    """
    base: set[Tile] = set().union(*(fps[t] for t in nearest))
    before = [t for t in nearest if t < frame]
    after = [t for t in nearest if t > frame]
    out: dict[Tile, Reason] = {}
    moved = base
    hedge: set[Tile] = set()
    close = True  # between traced frames, or beside them within their spacing: not grown
    if not (before and after):
        distance = min(abs(frame - t) for t in nearest)
        traced = sorted(t for t in fps if fps[t])
        side = traced[-(TREND_FRAMES + 1):] if before else traced[:TREND_FRAMES + 1][::-1]
        run = traced[-PACE_FRAMES:] if before else traced[:PACE_FRAMES][::-1]
        pace = push_in(st, fps, run)
        (vx, vy), (wx, wy) = drift(st, fps, side, opts.max_drift, narrowing=pace > 0)
        ahead = shift(st, base, (vx * distance, vy * distance))
        moved = grow(st, ahead, 0, ((HEDGE * abs(vx) + wx) * distance, (HEDGE * abs(vy) + wy) * distance))
        far = opts.finer if distance > spacing(traced) else 0
        close = distance <= spacing(traced)
        if pace > 0:  # a push-in the traced frames show: children of all it may reach, as deep as its pace goes
            depth = min(len(st.levels), max(1, far, math.ceil(pace * distance)))
            hedge = within(st, grow(st, children(st, moved, depth), opts.grow), moved)
        else:  # one they do not show: children of where the footprint is headed, not of its widening
            hedge = within(st, children(st, ahead, far), ahead)
            if far:  # and far out, the levels past those, converging on its centre: last
                deep = min(len(st.levels), unseen_depth(abs(run[-1] - run[0]), distance))
                for t in converging(st, ahead, far, deep) - hedge:
                    out[t] = Reason.FINER_FAR
    for t in hedge:
        out[t] = Reason.FINER
    grown = grow(st, moved, 0 if close else opts.grow)
    for t in grown:
        out[t] = Reason.NEIGHBOURS
    for t in coarser(st, set(out)):
        out.setdefault(t, Reason.NEIGHBOURS)
    return out


def tiers(st: Structure, tiles: Iterable[Tile]) -> list[tuple[int, list[Span]]]:
    """Spans of `tiles` by tier, coarse before fine: the tier of a level is its resolution."""
    by_tier: dict[int, list[Span]] = defaultdict(list)
    for t in tiles:
        by_tier[st.levels[t[0]].resolution].append(st.span(t))
    return [(tier, normalize(spans)) for tier, spans in sorted(by_tier.items())]


def whole_by_tier(st: Structure) -> list[tuple[int, list[Span]]]:
    """The whole file, header and tables first, then levels coarse before fine (a never-traced texture)."""
    every = [(lv, x, y) for lv, level in enumerate(st.levels)
             for y in range(level.rows) for x in range(level.columns)]
    return [(META_TIER, list(st.meta)), *tiers(st, every)]
