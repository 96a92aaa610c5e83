"""Frame specs: which frames a job renders, in the order the spec lists them.

Syntax (comma-separated items; spaces around `-`, `x`, `,` are fine, inside numbers not):

    1001            one frame             -5          negative frames are fine
    1001-1100       a range               10-1        descending: 10, 9, ..., 1
    1-100x5         every 5th frame       -10--5      -10 ... -5
    1-100:5         the same (OpenJD)     10-1x3      10, 7, 4, 1
    1-100y5         the complement of 1-100x5 (2, 3, 4, 5, 7, ...)
    1,3,5           a list; items keep their order, repeats are dropped

fileseq expands each item, but every item is checked first with our own grammar,
because fileseq gets in the way in four places: it reads `:` as "stagger"
(1-20:5 -> 1,6,11,16,5,9,...), while Deadline and OpenJD specs use `:` as a step
like `x`; it silently accepts subframes and padding characters (`1-10#`); its
errors are multi-line regex dumps, not one line a user can act on; and it would
happily try to expand `1-999999999`. A negative step is accepted when it points
the way the range goes (`10-1:-2`, as OpenJD writes it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fileseq.frameset import FrameSet

from prewarm.errors import ManifestError
from prewarm.plan.limits import MAX_FRAME_NUMBER, MAX_FRAMES

__all__ = ["MAX_FRAMES", "format_frames", "parse_frames"]

_ITEM = re.compile(r"(-?\d+)(?:\s*-\s*(-?\d+)(?:\s*([x:y])\s*(-?\d+))?)?")
_SYNTAX = "expected e.g. 1001-1100, 1-100x5, 1-100:5, 1-100y5, 1,3,5"


def parse_frames(spec: str | int | list[str | int], where: str, field: str = "frames") -> tuple[int, ...]:
    """The frames of `spec`, in its order, each once.

    `where` (`file:line`) and `field` name the place for the one-line error.
    """
    if isinstance(spec, bool) or not isinstance(spec, (str, int, list)):
        raise ManifestError(where, f"{field}: expected a frame spec such as 1001-1100, got {_kind(spec)}")
    if isinstance(spec, int):
        return (_number(spec, where, field),)
    items: list[str | int] = spec if isinstance(spec, list) else [spec]
    if not items:
        raise ManifestError(where, f"{field}: empty list, expected at least one frame")
    frames: dict[int, None] = {}
    for i, item in enumerate(items):
        label = f"{field}[{i}]" if isinstance(spec, list) else field
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ManifestError(where, f"{label}: expected a frame or a frame spec, got {_kind(item)}")
        for frame in (_number(item, where, label),) if isinstance(item, int) else _parse_text(item, where, label):
            frames[frame] = None
        if len(frames) > MAX_FRAMES:
            raise ManifestError(where, f"{field}: more than {MAX_FRAMES:,} frames")
    if not frames:
        raise ManifestError(where, f"{field}: {spec!r} selects no frames")
    return tuple(frames)


def _parse_text(text: str, where: str, field: str) -> list[int]:
    if not text.strip():
        raise ManifestError(where, f"{field}: empty, expected a frame spec such as 1001-1100")
    frames: list[int] = []
    for item in text.split(","):
        frames.extend(_expand_item(item.strip(), text, where, field))
        if len(frames) > MAX_FRAMES:
            raise ManifestError(where, f"{field}: more than {MAX_FRAMES:,} frames in {text!r}")
    return frames


def _number(value: int | str, where: str, field: str) -> int:
    """A frame number within +-MAX_FRAME_NUMBER; digits are counted before Python converts
    them (a 5,000-digit number would fail inside `int`)."""
    number = (int(value) if len(value.lstrip("-")) <= 10 else None) if isinstance(value, str) else value
    if number is None or abs(number) > MAX_FRAME_NUMBER:
        raise ManifestError(where, f"{field}: frame numbers are at most {MAX_FRAME_NUMBER:,} either side of 0")
    return number


def _expand_item(item: str, text: str, where: str, field: str) -> list[int]:
    m = _ITEM.fullmatch(item[:200]) if len(item) <= 200 else None
    if m is None:
        what = "" if item == text.strip() else " (an empty item)" if not item else f" (at {item[:40]!r})"
        raise ManifestError(where, f"{field}: cannot parse {text[:80]!r}{what}; {_SYNTAX}")
    start = _number(m[1], where, field)
    end = _number(m[2], where, field) if m[2] is not None else None
    if m[4] is not None and len(m[4].lstrip("-")) > 10:
        raise ManifestError(where, f"{field}: step {m[4][:12]}... is too large")
    if end is None:
        return [start]
    kind, step = m[3] or "x", int(m[4]) if m[4] is not None else 1
    if step == 0:
        raise ManifestError(where, f"{field}: cannot parse {text!r}: step 0 in {item!r}")
    if step < 0:
        if kind == "y" or start <= end:
            raise ManifestError(where, f"{field}: cannot parse {text!r}: negative step in {item!r} "
                                       "points away from the end of the range")
        step = -step
    count = abs(end - start) // step + 1
    if count > MAX_FRAMES:
        raise ManifestError(where, f"{field}: {item!r} has {count:,} frames, more than {MAX_FRAMES:,}")
    return [int(f) for f in FrameSet(f"{start}-{end}{'y' if kind == 'y' else 'x'}{step}")]


def format_frames(frames: Iterable[int]) -> str:
    """A compact spec of `frames` for display, in their order (`1-24`, `1-99x2,100`); parses back."""
    return str(FrameSet.framesToFrameRange(list(frames), sort=False, compress=False))


def _kind(value: object) -> str:
    names = {dict: "a mapping", list: "a list", type(None): "nothing", bool: "a boolean", float: "a number"}
    return names.get(type(value), type(value).__name__)
