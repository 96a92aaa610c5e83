"""Structure readers on real files made with OpenImageIO, and on corrupt, truncated and hostile
ones: a readable file gives every tile's byte range; anything else gives a reason, never a
traceback or an unbounded read."""

from __future__ import annotations

import os
import struct
from contextlib import AbstractContextManager
from itertools import pairwise
from pathlib import Path

import OpenImageIO as oiio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prewarm.formats.reader import StructureReader, guarded_files, read_structure
from prewarm.formats.source import MAX_READ_BYTES, MAX_READ_CALLS, Fetcher
from prewarm.plan.pathmap import PathMap
from prewarm.plan.ranges import normalize, subtract
from prewarm.plan.records import FileInfo
from prewarm.plan.structure import Structure
from prewarm.site.guard import Guard
from prewarm.testkit.textures import make_exr, make_texture


def fetcher(data: bytes, log: list[tuple[int, int]] | None = None) -> Fetcher:
    def fetch(start: int, end: int) -> bytes:
        if log is not None:
            log.append((start, end))
        return data[start:end]
    return fetch


def read_file(path: Path) -> Structure | str | None:
    data = path.read_bytes()
    return read_structure(fetcher(data), len(data), str(path))


def oiio_tiles(path: Path, subimage: int = 0) -> list[tuple[int, int, int, int]]:
    """(level, width, height, tile count) as OpenImageIO sees the file."""
    inp = oiio.ImageInput.open(str(path))
    out = []
    level = 0
    while inp.seek_subimage(subimage, level):
        spec = inp.spec()
        tw, th = spec.tile_width or spec.width, spec.tile_height or spec.height
        out.append((level, spec.width, spec.height, (-(-spec.width // tw)) * (-(-spec.height // th))))
        level += 1
    inp.close()
    return out


@pytest.fixture(scope="module")
def tx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    path = tmp_path_factory.mktemp("tx") / "wall.tx"
    make_texture(path, 300, 0, np.random.default_rng(3))
    return path


def test_tiled_mipmapped_tiff_levels_and_tiles_match_openimageio(tx: Path):
    got = read_file(tx)
    assert isinstance(got, Structure) and got.format == "tiff"
    assert [(i, lv.width, lv.height, len(lv.offsets)) for i, lv in enumerate(got.levels)] == oiio_tiles(tx)
    data = tx.read_bytes()
    tiles = sorted((lv.offsets[i], lv.lengths[i]) for lv in got.levels for i in range(len(lv.offsets)))
    assert all(o + n <= len(data) for o, n in tiles)
    assert all(a[0] + a[1] <= b[0] for a, b in pairwise(tiles)), "tiles do not overlap"
    # header, directories and tables, plus tiles, are the whole file but for the byte that
    # word-aligns a directory: nothing a renderer reads is unknown
    gaps = subtract([(0, len(data))], normalize([*got.meta, *((o, o + n) for o, n in tiles)]))
    assert all(e - s == 1 for s, e in gaps) and len(gaps) < len(got.levels)


@pytest.mark.parametrize("kind", ["scanline", "tiled", "mipmap"])
def test_openexr_chunk_tables(tmp_path: Path, kind: str):
    path = tmp_path / f"{kind}.exr"
    make_exr(path, 300, 200, tiled=kind != "scanline", mipmap=kind == "mipmap")
    got = read_file(path)
    assert isinstance(got, Structure) and got.format == "exr"
    if kind == "scanline":
        (lv,) = got.levels
        assert (lv.tile_width, lv.tile_height, len(lv.offsets)) == (300, 16, 13)  # zip: 16 lines a block
    else:
        assert [(i, lv.width, lv.height, len(lv.offsets)) for i, lv in enumerate(got.levels)] == oiio_tiles(path)
    data = path.read_bytes()
    # every chunk starts with its coordinates and its size: the table's offsets are real chunks
    for lv in got.levels:
        for o, n in zip(lv.offsets, lv.lengths, strict=True):
            head = 20 if kind != "scanline" else 8
            (size,) = struct.unpack_from("<i", data, o + head - 4)
            assert size + head == n


def test_reader_reads_each_file_once_and_counts_the_unreadable(tmp_path: Path, tx: Path):
    sparse = tmp_path / "sparse.tx"
    with open(sparse, "wb") as fh:
        fh.truncate(1 << 20)
    scene = tmp_path / "scene.abc"
    scene.write_bytes(b"Ogawa" + bytes(100))
    opened: list[str] = []
    base = guarded_files(Guard(("/studio",), PathMap.parse([{"studio": "/studio", "local": "/"}], "test")))

    def counting(path: str) -> AbstractContextManager[Fetcher]:
        opened.append(path)
        return base(path)

    reader = StructureReader(counting)
    infos = [FileInfo(f"/studio{p}", os.path.getsize(p), os.path.getmtime(p)) for p in (tx, sparse, scene)]
    for _ in range(3):
        got = [reader.structure(i) for i in infos]
    assert isinstance(got[0], Structure) and got[1] is None and got[2] is None
    assert opened == [f"/studio{p}" for p in (tx, sparse, scene)]
    stats = reader.stats()
    assert stats.structure_unreadable == 1 and "sparse" in str(stats.structure_unreadable_files)
    assert stats.structured_files == {"tiff": 1}


def test_a_file_that_vanished_or_lies_outside_the_roots_is_a_reason_not_an_error(tmp_path: Path, tx: Path):
    guard = Guard((str(tmp_path),), PathMap())
    reader = StructureReader(guarded_files(guard))
    gone = str(tmp_path / "gone.tx")
    assert reader.structure(FileInfo(gone, 100, 0.0)) is None
    assert "cannot open" in reader.unreadable[gone]
    # a link out of the roots is refused by the guard, as any warm read would be
    (tmp_path / "link.tx").symlink_to(tx)
    assert reader.structure(FileInfo(str(tmp_path / "link.tx"), tx.stat().st_size, 0.0)) is None
    assert "outside the allowed roots" in reader.unreadable[str(tmp_path / "link.tx")]


def truncations(data: bytes) -> list[int]:
    return sorted({0, 4, 8, 9, 16, 100, 300, len(data) // 3, len(data) // 2, len(data) - 1})


@pytest.mark.parametrize("maker", ["tx", "exr"])
def test_truncated_files_fall_back(tmp_path: Path, tx: Path, maker: str):
    path = tx if maker == "tx" else tmp_path / "m.exr"
    if maker == "exr":
        make_exr(path, 300, 200, mipmap=True)
    data = path.read_bytes()
    for n in truncations(data):
        cut = data[:n]
        got = read_structure(fetcher(cut), len(cut), str(path))
        if isinstance(got, Structure):  # only if what remains still holds every tile it lists
            assert all(o + c <= n for lv in got.levels for o, c in zip(lv.offsets, lv.lengths, strict=True))
        else:
            assert got is None or isinstance(got, str)


def hostile_tiff(entries: int, count: int, offset: int) -> bytes:
    """A classic TIFF whose one directory claims `count` tiles at `offset`."""
    tags = [(256, 4, 1, 1 << 20), (257, 4, 1, 1 << 20), (322, 3, 1, 16), (323, 3, 1, 16),
            (324, 4, count, offset), (325, 4, count, offset)][:entries]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + ifd + bytes(64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=600), magic=st.sampled_from([b"II*\0", b"MM\0*", b"II+\0",
                                                                        b"\x76\x2f\x31\x01"]))
def test_random_headers_never_raise_and_reads_stay_bounded(data: bytes, magic: bytes):
    blob = magic + data
    log: list[tuple[int, int]] = []
    got = read_structure(fetcher(blob, log), len(blob), "x.tx")
    assert got is None or isinstance(got, str | Structure)
    assert len(log) <= MAX_READ_CALLS + 2 and sum(e - s for s, e in log) <= MAX_READ_BYTES + (1 << 20)


@given(count=st.integers(0, (1 << 32) - 1), offset=st.integers(0, (1 << 32) - 1), entries=st.integers(0, 6))
@settings(max_examples=40, deadline=None)
def test_absurd_tile_tables_fall_back(count: int, offset: int, entries: int):
    blob = hostile_tiff(entries, count, offset)
    log: list[tuple[int, int]] = []
    got = read_structure(fetcher(blob, log), len(blob), "x.tx")
    assert not isinstance(got, Structure) or all(
        o + n <= len(blob) for lv in got.levels for o, n in zip(lv.offsets, lv.lengths, strict=True))
    assert sum(e - s for s, e in log) <= MAX_READ_BYTES + (1 << 20)


def test_an_ifd_chain_that_loops_is_refused():
    ifd = struct.pack("<H", 0) + struct.pack("<I", 8)  # no entries, next IFD: itself
    blob = b"II*\0" + struct.pack("<I", 8) + ifd
    got = read_structure(fetcher(blob), len(blob), "loop.tx")
    assert not isinstance(got, Structure)


def exr_header(attrs: list[tuple[str, str, bytes]], flags: int = 2) -> bytes:
    body = b"".join(n.encode() + b"\0" + t.encode() + b"\0" + struct.pack("<i", len(v)) + v for n, t, v in attrs)
    return b"\x76\x2f\x31\x01" + struct.pack("<I", flags) + body + b"\0"


@pytest.mark.parametrize("attrs,why", [
    ([("dataWindow", "box2i", struct.pack("<iiii", 0, 0, 1 << 30, 1 << 30)), ("compression", "compression", b"\3")],
     "chunks"),
    ([("dataWindow", "box2i", struct.pack("<iiii", 0, 0, 99, 99)), ("compression", "compression", b"\3"),
      ("tiles", "tiledesc", struct.pack("<IIB", 0, 0, 1))], "no size"),
    ([("dataWindow", "box2i", struct.pack("<iiii", 5, 5, 1, 1)), ("compression", "compression", b"\3")], "no size"),
    ([("compression", "compression", b"\3")], "dataWindow"),
    ([("dataWindow", "box2i", struct.pack("<iiii", 0, 0, 99, 99)), ("compression", "compression", b"\x63")],
     "compression"),
])
def test_hostile_exr_headers_give_a_reason(attrs: list[tuple[str, str, bytes]], why: str):
    blob = exr_header(attrs) + bytes(256)
    got = read_structure(fetcher(blob), len(blob), "x.exr")
    assert isinstance(got, str) and why in got


def test_exr_attribute_size_beyond_the_file_and_multipart():
    blob = b"\x76\x2f\x31\x01" + struct.pack("<I", 2) + b"a\0b\0" + struct.pack("<i", 1 << 30)
    assert isinstance(read_structure(fetcher(blob), len(blob), "x.exr"), str)
    multi = exr_header([], flags=2 | 0x1000)
    assert "multi-part" in str(read_structure(fetcher(multi), len(multi), "x.exr"))

