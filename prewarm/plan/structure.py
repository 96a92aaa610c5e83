"""The byte layout of a structured file: levels, tiles and the byte range of each. Pure values.

A renderer reads a tiled, MIP-mapped texture (`.tx`, tiled TIFF, tiled or
multi-resolution OpenEXR) by structure, not by offset: the header and tile tables
first, then only the tiles of the levels it samples. `prewarm.formats` reads that
structure from the file's own header and tables and returns a `Structure`;
`prewarm.plan.texture` maps traced reads to tiles through it and predicts tiles
for frames no trace saw. A scanline EXR or a striped TIFF is the same value with
one column of full-width tiles (its line blocks or strips).

Levels are indexed finest first, as both formats number them (level 0 is the
full resolution). A tile is named by `(level, x, y)`; `x` counts columns.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prewarm.plan.ranges import Span, normalize

Tile = tuple[int, int, int]
"""(level, column, row)."""

Rect = tuple[float, float, float, float]
"""A region of the image in normalised coordinates: (x0, y0, x1, y1), each in [0, 1]."""


@dataclass(frozen=True, slots=True)
class Level:
    """One resolution of the image and where each of its tiles lies in the file (row-major)."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]

    @property
    def columns(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile_height)

    @property
    def resolution(self) -> int:
        """The level's larger side: which level a lookup samples depends on it, not on its index."""
        return max(self.width, self.height)

    def span(self, x: int, y: int) -> Span:
        i = y * self.columns + x
        return self.offsets[i], self.offsets[i] + self.lengths[i]

    def rect(self, x: int, y: int) -> Rect:
        return (x * self.tile_width / self.width, y * self.tile_height / self.height,
                min(1.0, (x + 1) * self.tile_width / self.width), min(1.0, (y + 1) * self.tile_height / self.height))

    def tiles_over(self, rect: Rect) -> Iterator[tuple[int, int]]:
        """The tiles of this level that overlap `rect` (a region of the image)."""
        x0, y0, x1, y1 = rect
        cx = max(0, math.floor(x0 * self.width / self.tile_width + _EPS))
        cy = max(0, math.floor(y0 * self.height / self.tile_height + _EPS))
        ex = min(self.columns, math.ceil(x1 * self.width / self.tile_width - _EPS))
        ey = min(self.rows, math.ceil(y1 * self.height / self.tile_height - _EPS))
        for y in range(cy, ey):
            for x in range(cx, ex):
                yield x, y


_EPS = 1e-9
"""Level sizes that are not powers of two make tile edges inexact in floating point."""

Shape = tuple[tuple[int, int, int, int], ...]
"""Per level, finest first: (width, height, tile width, tile height)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A structured file as it was when a trace of it was filed: its size, mtime and inode, and its
    structure's `digest` and `shape`. A later plan compares: the same digest, the traced offsets hold;
    another digest of the same shape (a re-published texture), the traced tiles map to the new offsets;
    another shape (other levels or tile sizes), they mean nothing there."""

    size: int
    mtime_ns: int
    inode: int
    digest: str
    shape: Shape


@dataclass(frozen=True, slots=True)
class Filed:
    """A frame's reads of a structured file in the file's own coordinates, as filed in the trace store."""

    identity: Identity
    tiles: tuple[Tile, ...]
    """The tiles read, `(level, x, y)`; the header and table reads are the file's `meta` whatever its version."""


@dataclass(frozen=True)
class Structure:
    """What a reader found in a file: header and tables (`meta`) and its levels, finest first."""

    format: str
    """`tiff` or `exr`: for the plan's summary."""
    size: int
    meta: tuple[Span, ...]
    """Header, directories, attribute blocks and tile tables: what any reader reads before a tile."""
    levels: tuple[Level, ...]
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _tiles: tuple[Tile, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        order = sorted((lv.offsets[i], (li, i % lv.columns, i // lv.columns))
                       for li, lv in enumerate(self.levels) for i in range(len(lv.offsets)))
        object.__setattr__(self, "_starts", tuple(o for o, _ in order))
        object.__setattr__(self, "_tiles", tuple(t for _, t in order))

    def shape(self) -> Shape:
        """Per level, (width, height, tile width, tile height): what a tile `(level, x, y)` means."""
        return tuple((lv.width, lv.height, lv.tile_width, lv.tile_height) for lv in self.levels)

    def digest(self) -> str:
        """A hash of the header and tile tables as read (where each level and tile lies): equal
        digests mean every tile is where it was; a re-published file (other compression) differs."""
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.format, self.size, self.meta)).encode())
        for lv in self.levels:
            h.update(repr((lv.width, lv.height, lv.tile_width, lv.tile_height, lv.offsets, lv.lengths)).encode())
        return h.hexdigest()

    def has(self, tile: Tile) -> bool:
        level, x, y = tile
        return 0 <= level < len(self.levels) and 0 <= x < self.levels[level].columns \
            and 0 <= y < self.levels[level].rows

    def span(self, tile: Tile) -> Span:
        level, x, y = tile
        return self.levels[level].span(x, y)

    def tiles_read(self, spans: Iterable[Span]) -> tuple[set[Tile], list[Span]]:
        """The tiles `spans` touch, and what of `spans` lies in no tile (header and table reads)."""
        tiles: set[Tile] = set()
        rest: list[Span] = []
        for s, e in spans:
            i = max(0, bisect_right(self._starts, s) - 1)
            covered_to = s
            while i < len(self._starts) and self._starts[i] < e:
                ts, te = self.span(self._tiles[i])
                if te > s:
                    tiles.add(self._tiles[i])
                    if ts > covered_to:
                        rest.append((covered_to, ts))
                    covered_to = max(covered_to, te)
                i += 1
            if covered_to < e:
                rest.append((covered_to, e))
        return tiles, normalize(rest)

    def inside_tile(self, offset: int) -> bool:
        """Does `offset` fall strictly inside a tile? A texture cache reads whole tiles from their
        start: traced reads starting inside tiles were made against another layout of the file."""
        i = bisect_right(self._starts, offset) - 1
        if i < 0:
            return False
        ts, te = self.span(self._tiles[i])
        return ts < offset < te

    def coarser(self, level: int) -> list[int]:
        """Levels no larger than `level` on either side, other than itself (every coarser MIP level)."""
        lv = self.levels[level]
        return [i for i, o in enumerate(self.levels)
                if i != level and o.width <= lv.width and o.height <= lv.height]

    def finer(self, level: int) -> list[int]:
        """The levels one step finer than `level`: for MIP maps the next level, for rip maps up to three."""
        lv = self.levels[level]
        larger = [i for i, o in enumerate(self.levels)
                  if i != level and o.width >= lv.width and o.height >= lv.height
                  and (o.width, o.height) != (lv.width, lv.height)]
        return [i for i in larger
                if not any(j != i and self.levels[j].width <= self.levels[i].width
                           and self.levels[j].height <= self.levels[i].height for j in larger)]

    def project(self, tiles: Iterable[tuple[int, int]], source: int, target: int) -> set[tuple[int, int]]:
        """The tiles of level `target` covering the region that tiles of level `source` cover."""
        src = self.levels[source]
        dst = self.levels[target]
        return {t for x, y in tiles for t in dst.tiles_over(src.rect(x, y))}
