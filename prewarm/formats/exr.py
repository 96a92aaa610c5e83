"""OpenEXR, single part: header, level mode and the chunk offset table, so every tile of every level.

The layout (openexr.com, "The OpenEXR File Layout"): a magic number and a version
field, the header (attributes `name\\0 type\\0 size value`, ended by a null byte),
the offset table (one u64 per chunk), then the chunks. A tiled file's `tiles`
attribute (`tiledesc`) gives the tile size and level mode (one level, MIP map or
rip map) and the rounding of level sizes; its table lists tiles level by level,
each level row-major, rip-map levels with x varying fastest. A scanline file's
chunks are blocks of lines whose height depends on the compression; it becomes one
column of full-width tiles. The table holds offsets, not sizes: a chunk ends where
the next one starts (or at the end of the file).

Multi-part and deep files, and anything inconsistent, raise `StructureError`, and
the caller falls back to the byte model. Every count is bounded before anything
is read or allocated.
"""

from __future__ import annotations

import math
import struct

from prewarm.formats.source import Fetcher, read_exact
from prewarm.formats.tiff import MAX_LEVELS, MAX_TILES, StructureError
from prewarm.plan.structure import Level, Structure

MAGIC = b"\x76\x2f\x31\x01"

MAX_HEADER = 1 << 20
"""Header bytes read: real headers are a few KB; previews and metadata can reach a few hundred."""

MAX_ATTRIBUTES = 1024

_TILED, _LONG_NAMES, _DEEP, _MULTIPART = 0x200, 0x400, 0x800, 0x1000

LINES_PER_BLOCK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}
"""Scanlines per chunk by compression: none, RLE, ZIPS, ZIP, PIZ, PXR24, B44, B44A, DWAA, DWAB."""

_HEAD_STEP = 64 << 10


class _Header:
    """The attributes prewarm needs, read from the file's header."""

    def __init__(self, fetch: Fetcher, size: int, long_names: bool) -> None:
        self.fetch, self.size = fetch, size
        self.buf = b""
        self.max_name = 255 if long_names else 31
        self.attrs: dict[str, tuple[str, bytes]] = {}
        self.end = 0

    def _fill(self, end: int) -> None:
        """Fetch the header up to `end`, or as far as the file and the limit allow."""
        end = min(end, self.size, MAX_HEADER)
        while len(self.buf) < end:
            chunk = self.fetch(len(self.buf), min(end + _HEAD_STEP, self.size, MAX_HEADER))
            if not chunk:
                break
            self.buf += chunk

    def _need(self, end: int) -> None:
        self._fill(end)
        if len(self.buf) < end:
            raise StructureError("the header runs past the end of the file or its limit")

    def _cstring(self, pos: int) -> tuple[str, int]:
        self._fill(pos + self.max_name + 1)
        nul = self.buf.find(b"\0", pos, pos + self.max_name + 1)
        if nul < 0:
            raise StructureError("an attribute name longer than the format allows, or cut off")
        return self.buf[pos:nul].decode("latin-1"), nul + 1

    def parse(self, pos: int) -> None:
        for _ in range(MAX_ATTRIBUTES):
            self._need(pos + 1)
            if self.buf[pos] == 0:
                self.end = pos + 1
                return
            name, pos = self._cstring(pos)
            kind, pos = self._cstring(pos)
            self._need(pos + 4)
            (n,) = struct.unpack_from("<i", self.buf, pos)
            if n < 0:
                raise StructureError(f"attribute {name!r} of negative size")
            pos += 4
            self._need(pos + n)
            self.attrs[name] = (kind, self.buf[pos:pos + n])
            pos += n
        raise StructureError(f"more than {MAX_ATTRIBUTES} header attributes")

    def value(self, name: str, kind: str, fmt: str) -> tuple[int, ...]:
        got = self.attrs.get(name)
        if got is None or got[0] != kind or len(got[1]) < struct.calcsize(fmt):
            raise StructureError(f"no valid {name!r} attribute")
        return struct.unpack_from(fmt, got[1])


def _level_sizes(width: int, height: int, mode: int, rounding: int) -> list[tuple[int, int]]:
    """(width, height) of each level in table order."""
    def count(n: int) -> int:
        f = math.log2(n)
        return (math.ceil(f) if rounding else math.floor(f)) + 1

    def at(n: int, level: int) -> int:
        d = 1 << level
        return max(1, -(-n // d) if rounding else n // d)

    if mode == 0:
        return [(width, height)]
    if mode == 1:
        n = count(max(width, height))
        if n > MAX_LEVELS:
            raise StructureError(f"more than {MAX_LEVELS} levels")
        return [(at(width, i), at(height, i)) for i in range(n)]
    if mode == 2:
        nx, ny = count(width), count(height)
        if nx > MAX_LEVELS or ny > MAX_LEVELS:
            raise StructureError(f"more than {MAX_LEVELS} levels")
        return [(at(width, lx), at(height, ly)) for ly in range(ny) for lx in range(nx)]
    raise StructureError(f"unknown level mode {mode}")


def read_exr(fetch: Fetcher, size: int) -> Structure:
    head = read_exact(fetch, 0, min(size, 8))
    if len(head) < 8 or head[:4] != MAGIC:
        raise StructureError("no OpenEXR magic number")
    (flags,) = struct.unpack_from("<I", head, 4)
    if flags & 0xFF != 2:
        raise StructureError(f"OpenEXR version {flags & 0xFF}")
    if flags & (_DEEP | _MULTIPART):
        raise StructureError("multi-part or deep OpenEXR (read as bytes)")
    hdr = _Header(fetch, size, bool(flags & _LONG_NAMES))
    hdr.parse(8)
    xmin, ymin, xmax, ymax = hdr.value("dataWindow", "box2i", "<iiii")
    width, height = xmax - xmin + 1, ymax - ymin + 1
    if not (0 < width < 1 << 31 and 0 < height < 1 << 31):
        raise StructureError("a data window of no size")
    (compression,) = hdr.value("compression", "compression", "<B")
    if flags & _TILED or "tiles" in hdr.attrs:
        tw, th, mode = hdr.value("tiles", "tiledesc", "<IIB")
        if tw <= 0 or th <= 0:
            raise StructureError("tiles of no size")
        sizes = _level_sizes(width, height, mode & 0xF, mode >> 4)
        grids = [(w, h, tw, th) for w, h in sizes]
    else:
        lines = LINES_PER_BLOCK.get(compression)
        if lines is None:
            raise StructureError(f"unknown compression {compression}")
        grids = [(width, height, width, lines)]
    counts = [(-(-w // a)) * (-(-h // b)) for w, h, a, b in grids]
    total = sum(counts)
    if total > MAX_TILES:
        raise StructureError(f"more than {MAX_TILES} chunks")
    table_end = hdr.end + 8 * total
    if table_end > size:
        raise StructureError("the offset table runs past the end of the file")
    offsets = struct.unpack(f"<{total}Q", read_exact(fetch, hdr.end, table_end))
    ordered = sorted(set(offsets))
    if len(ordered) != total or ordered[0] < table_end or ordered[-1] >= size:
        raise StructureError("chunk offsets outside the file, repeated, or inside the table")
    ends = dict(zip(ordered, [*ordered[1:], size], strict=True))
    levels = []
    i = 0
    for (w, h, a, b), n in zip(grids, counts, strict=True):
        offs = offsets[i:i + n]
        levels.append(Level(w, h, a, b, tuple(offs), tuple(ends[o] - o for o in offs)))
        i += n
    return Structure("exr", size, ((0, table_end),), tuple(levels))
