"""Tiled and MIP-mapped TIFF (`.tx`, `.tex`, tiled `.tif`): levels, tiles and tables, no pixels decoded.

`maketx` writes one directory (IFD) per MIP level, finest first, each with its
tile size and `TileOffsets`/`TileByteCounts` (one entry per tile, row-major).
PyPI `tifffile` reads directories and tag values lazily, through any seekable file
object, so it reads only the header and tables. A striped TIFF becomes one column
of full-width tiles (its strips), so the same model covers it.

Anything that is not a clean chain of successively smaller images with one offset
per tile inside the file raises `StructureError`: the caller falls back to the
byte model for that file.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tifffile

from prewarm.formats.source import Fetcher, open_buffered
from prewarm.plan.ranges import Span, normalize
from prewarm.plan.structure import Level, Structure

MAX_LEVELS = 32
"""MIP levels of a 2^31-pixel image: more is a corrupt or hostile chain."""

MAX_TILES = 1 << 22
"""Tiles in one file (64k x 64k at 32 x 32): beyond it the tables are not believed."""

logging.getLogger("tifffile").addHandler(logging.NullHandler())
"""tifffile logs what it finds wrong with a file; a corrupt texture is counted in the plan instead."""


class StructureError(Exception):
    """The file's structure cannot be believed; the message says why in a few words."""


def _level(page: tifffile.TiffPage, size: int) -> Level:
    width, height = int(page.imagewidth), int(page.imagelength)
    if page.is_tiled:
        tw, th = int(page.tilewidth), int(page.tilelength)
    else:
        tw, th = width, int(page.rowsperstrip) or height
    if min(width, height, tw, th) <= 0:
        raise StructureError("an image or tile of no size")
    offsets = tuple(int(o) for o in page.dataoffsets)
    lengths = tuple(int(c) for c in page.databytecounts)
    cells = (-(-width // tw)) * (-(-height // min(th, height)))
    if len(offsets) != cells or len(lengths) != cells:
        raise StructureError(f"{len(offsets)} tiles listed for a grid of {cells} (separate planes?)")
    if any(o < 0 or n < 0 or o + n > size for o, n in zip(offsets, lengths, strict=True)):
        raise StructureError("a tile lies past the end of the file")
    return Level(width, height, tw, min(th, height), offsets, lengths)


def _meta(page: tifffile.TiffPage, bigtiff: bool) -> list[Span]:
    """The directory itself and every tag value stored outside it (tile tables, descriptions)."""
    entry, head, tail = (20, 8, 8) if bigtiff else (12, 2, 4)
    spans = [(page.offset, page.offset + head + entry * len(page.tags) + tail)]
    inline = 8 if bigtiff else 4
    for tag in page.tags.values():
        if tag.valuebytecount > inline:
            spans.append((tag.valueoffset, tag.valueoffset + tag.valuebytecount))
    return spans


def read_tiff(fetch: Fetcher, size: int) -> Structure:
    # imported at the first TIFF read, not with the planner: tifffile brings numpy, a tenth of a
    # second of every `prewarm` command's start whether a job has textures or not
    import tifffile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_buffered(fetch, size) as fh, tifffile.TiffFile(fh) as tf:
            pages = tf.pages
            pages.useframes = False
            levels: list[Level] = []
            meta: list[Span] = [(0, 16 if tf.is_bigtiff else 8)]
            for i in range(MAX_LEVELS + 1):
                try:
                    page = pages.get(i)
                except IndexError:  # the end of the chain
                    break
                if i == MAX_LEVELS:
                    raise StructureError(f"more than {MAX_LEVELS} levels")
                if not isinstance(page, tifffile.TiffPage):
                    raise StructureError("a directory that is not an image")
                level = _level(page, size)
                if levels and (level.width > levels[-1].width or level.height > levels[-1].height):
                    raise StructureError("images that are not a MIP chain (a later one is larger)")
                levels.append(level)
                meta.extend(_meta(page, tf.is_bigtiff))
                if sum(len(lv.offsets) for lv in levels) > MAX_TILES:
                    raise StructureError(f"more than {MAX_TILES} tiles")
    if not levels:
        raise StructureError("no image directory")
    spans = normalize((max(0, s), min(e, size)) for s, e in meta)
    return Structure("tiff", size, tuple(spans), tuple(levels))
