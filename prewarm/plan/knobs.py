"""The predictor's options (`PredictOptions`) and the knobs a manifest's `predict:` and the
command line may set (`KNOBS`, checked by `check_knob`, applied by `with_knobs`).

Configuration, read by the command line and the manifest parser: plain Python, not among the
compiled modules (setup.py's `COMPILED`), as nothing here runs per file or per span. The models
that read these options are described in `plan/predict.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prewarm.plan.texture import TextureOptions

MiB = 1 << 20


@dataclass(frozen=True)
class PredictOptions:
    neighbours: int = 1
    """Training frames on each side whose frame-specific reads an unseen frame borrows."""
    common_share: float = 0.5
    """A span read by this share of the frames reading a file is read by every frame."""
    whole_share: float = 0.9
    """Per-frame files whose members were read to this fraction are predicted whole."""
    unseen_cap: int = 256 * MiB
    """Files no trace read are warmed whole up to this size ..."""
    probe: int = MiB
    """... and beyond it, this many bytes at the head and at the tail."""
    spread: int = 512 << 10
    """Bytes by which scattered spans borrowed from neighbouring frames are widened on each
    side (a texture whose structure could not be read: nearby tiles): coverage for bytes.
    On shot200 by bytes only, every 4th frame traced, 512 KiB gives recall 0.89 at 2.35x
    the needed bytes (`bench/predict.py`, its `bytes only` rows); 0 gave 0.87 at 1.5x."""
    always_share: float = 0.9
    """A shared file read by this share of training frames is read by every job frame."""
    max_delta: int = 2
    """How far a per-frame file's number may be from the frame reading it (motion blur)."""
    texture: TextureOptions = field(default_factory=TextureOptions)
    """The tile-space model of files whose structure was read (`prewarm.plan.texture`)."""
    unseen_coarse: int = 512
    """A never-traced texture's levels up to this resolution (pixels, the larger side) go early in
    the warm with its header and tables, finer levels last. A wide shot samples a 2k texture at
    256-512 pixels (shot200's first frames), so the first frame is ready after a few percent of it."""
    structure: bool = True
    """Read structured files' headers and tables (textures, EXR) and predict them by tile; off: bytes only."""
    compact: float = 0.5
    """A frame's own reads of a shared file are one region (an Alembic frame's samples) when they
    fill this share of their hull; scattered reads (tiles of an unread texture) are not."""


KNOBS: dict[str, tuple[str, int]] = {
    "spread": ("size", 0), "neighbours": ("int", 1), "unseen_cap": ("size", 0),
    "tile_grow": ("int", 0), "finer": ("int", 0), "unseen_coarse": ("int", 1), "structure": ("bool", 0),
}
"""The prediction knobs a manifest (`predict:`) and the command line may set: kind and least value.
`tile_grow` and `finer` are the texture model's `grow` and `finer`."""


def with_knobs(opts: PredictOptions, knobs: Mapping[str, int | bool]) -> PredictOptions:
    """`opts` with `knobs` (checked values, by the names of `KNOBS`) applied."""
    texture: dict[str, Any] = {("grow" if k == "tile_grow" else k): v for k, v in knobs.items()
                               if k in ("tile_grow", "finer")}
    plain: dict[str, Any] = {k: v for k, v in knobs.items() if k not in ("tile_grow", "finer")}
    return replace(opts, **plain, texture=replace(opts.texture, **texture))


def check_knob(name: str, value: object, size: Callable[[object], int] | None = None) -> int | bool:
    """A knob's value checked (ValueError with the reason); `size` parses sizes such as `512KiB`
    (without it a size must already be an integer of bytes)."""
    if name not in KNOBS:
        raise ValueError(f"unknown prediction knob {name!r} (one of {', '.join(KNOBS)})")
    kind, least = KNOBS[name]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false")
        return value
    plain_int = isinstance(value, int) and not isinstance(value, bool)
    got = size(value) if kind == "size" and not plain_int and size is not None else value
    if not isinstance(got, int) or isinstance(got, bool) or got < least:
        raise ValueError(f"{name}: expected an integer >= {least}")
    return got
