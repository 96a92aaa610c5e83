"""Real textures and EXRs for samples, tests and benches, made with OpenImageIO (extra `textures`).

The sparse tree (`samples.build_tree`) has the right sizes and nothing inside, which
is all the byte model needs. Structure readers need real files: a shot folder's
`textures.json` says how its textures were made, and `build_textures` makes them
again, byte for byte with the pinned openimageio (shot200's sizes and every tile
offset its traces read). `make_exr` writes the OpenEXR layouts the reader must
know (scanline, tiled, MIP-mapped) for tests.

The pattern is smooth bands plus grain from one seeded generator, so compressed
tiles differ in size as real ones do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from prewarm.errors import InputError

STUDIO = "/studio/proj"

DATETIME = "2025:01:01 00:00:00"
"""maketx stamps each level with the time it ran (always 19 characters); a fixed stamp makes builds identical."""


def _oiio() -> Any:
    try:
        import numpy as np
        import OpenImageIO as oiio
    except ImportError as exc:
        raise InputError("--real", "needs openimageio and numpy: pip install -e '.[textures]'") from exc
    return oiio, np


def _pattern(np: Any, n: int, index: int, rng: Any) -> Any:
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / n
    img = np.stack([np.sin(x * 40 + index) * 0.5 + 0.5, np.cos(y * 33 + index) * 0.5 + 0.5, (x * y * 7 % 1)],
                   -1).astype(np.float32)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return img


def make_texture(path: Path, resolution: int, index: int, rng: Any, tile: int = 64, compression: str = "zip",
                 filtername: str = "lanczos3") -> int:
    """A tiled, MIP-mapped `.tx` as `maketx` makes it; returns its size."""
    oiio, np = _oiio()
    img = _pattern(np, resolution, index, rng)
    buf = oiio.ImageBuf(oiio.ImageSpec(resolution, resolution, 3, "half"))
    buf.set_pixels(oiio.ROI(), img.astype(np.float16))
    spec = oiio.ImageSpec()
    spec.attribute("maketx:filtername", filtername)
    spec.tile_width = spec.tile_height = tile
    spec.attribute("compression", compression)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not oiio.ImageBufAlgo.make_texture(oiio.MakeTxTexture, buf, str(path), spec):
        raise InputError(str(path), f"openimageio could not write it: {oiio.geterror()}")
    _stamp(path)
    return os.path.getsize(path)


def _stamp(path: Path) -> None:
    """Overwrite the build time in every directory (DateTime and the XMP packet's CreateDate, fixed
    length) with `DATETIME`: identical builds, whatever the clock."""
    import re

    import tifffile

    stamp = re.compile(rb"\d{4}:\d\d:\d\d \d\d:\d\d:\d\d")
    with tifffile.TiffFile(path) as tf:
        spots = [(tag.valueoffset, tag.valuebytecount) for page in tf.pages
                 if isinstance(page, tifffile.TiffPage) for tag in page.tags.values() if tag.code in (306, 700)]
    with open(path, "r+b") as fh:
        for offset, count in spots:
            fh.seek(offset)
            value = fh.read(count)
            for m in stamp.finditer(value):
                fh.seek(offset + m.start())
                fh.write(DATETIME.encode())


def build_textures(spec_json: Path, root: Path, studio_prefix: str = STUDIO) -> dict[str, int]:
    """Make every texture `spec_json` lists under `root` (standing for `studio_prefix`)."""
    _, np = _oiio()
    try:
        spec = json.loads(spec_json.read_text())
        rng = np.random.default_rng(int(spec["seed"]))
        items = [(str(t["path"]), int(t["resolution"])) for t in spec["textures"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(str(spec_json), f"not a texture description: {exc}") from exc
    sizes = {}
    for index, (studio_path, resolution) in enumerate(items):
        if not studio_path.startswith(studio_prefix + "/"):
            raise InputError(str(spec_json), f"{studio_path!r} is not below {studio_prefix}")
        local = root / os.path.relpath(studio_path, studio_prefix)
        sizes[studio_path] = make_texture(local, resolution, index, rng, int(spec.get("tile", 64)),
                                          str(spec.get("compression", "zip")), str(spec.get("filter", "lanczos3")))
    return sizes


def make_exr(path: Path, width: int, height: int, *, tiled: bool = False, mipmap: bool = False,
             compression: str = "zip", seed: int = 1) -> int:
    """An OpenEXR file: scanline, tiled (64x64) or tiled and MIP-mapped; returns its size."""
    oiio, np = _oiio()
    img = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    spec = oiio.ImageSpec(width, height, 3, "half")
    spec.attribute("compression", compression)
    buf = oiio.ImageBuf(spec)
    buf.set_pixels(oiio.ROI(), img)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mipmap:
        tspec = oiio.ImageSpec(spec)
        tspec.tile_width = tspec.tile_height = 64
        ok = oiio.ImageBufAlgo.make_texture(oiio.MakeTxTexture, buf, str(path), tspec)
    else:
        if tiled:
            buf.set_write_tiles(64, 64)
        ok = buf.write(str(path))
    if not ok:
        raise InputError(str(path), f"openimageio could not write it: {oiio.geterror()}")
    return os.path.getsize(path)
