"""The records a plan holds: ranges to warm and why, metadata operations, findings, file identities,
and the checks of the paths they name. Plain frozen values; the plan (`prewarm.plan.model`) holds them.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prewarm.plan.access import Op

MAX_OFFSET = 1 << 62
"""No real file is this large; beyond it an offset is a corrupt or hostile plan."""

MAX_TEXT = 4096
"""Longest path or name in a plan: PATH_MAX."""


NOT_UTF8 = "the name is not UTF-8 (its bytes shown as \\xNN): not planned, rename it on the filer"
"""The finding for a listed file or folder, or a scene's dependency, whose name is not UTF-8."""


def shown(text: str) -> str:
    """`text` with every byte that is not UTF-8 written as `\\xNN`, the rest unchanged.

    File names are bytes on Linux, and filers written from other systems hold names that
    are not UTF-8 (`bad\\xff\\xfe.tx`); Python carries those bytes as lone surrogates,
    which neither JSON text, nor Redis keys, nor a report can hold. Such a name is never
    planned (`path_problem`), and this is how findings and errors name it.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def path_problem(p: str) -> str | None:
    """Why `p` cannot be a path of a plan, or None: the one check of a planned path's text.

    Used when a plan is loaded and by the planner on every name it lists, so the planner
    never writes a path that a loaded plan (or a Redis key, or a report) could not hold.
    """
    if not p.isascii():
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:
            return f"the name is not UTF-8: {shown(p)} (rename it on the filer)"
    if not p.startswith("/") or "\0" in p or posixpath.normpath(p) != p.rstrip("/") and p != "/":
        return f"expected a normalised absolute path, got {p!r}"
    if ".." in p.split("/"):
        return f"'..' is not allowed in a path: {p!r}"
    return None


class Reason(StrEnum):
    """Why a range is in the plan (reported per range and summed in the summary)."""

    TRACE = "trace"            # seen read by training frames, applies to this frame as is
    PATTERN = "pattern"        # a per-frame file: another frame's file read the same way
    PROGRESSION = "progression"  # a region moving with the frame, extrapolated
    NEIGHBOURS = "neighbours"  # tiles/regions predicted from neighbouring frames
    ANCHORED = "anchored"      # header/footer anchored to the start/end of a file of another size
    FALLBACK = "fallback"      # never seen in any trace: the documented fallback
    WHOLE = "whole"            # the manifest asked for the whole file
    FINER = "finer"            # tiles one MIP level finer than traced frames read: a push-in
    REGION = "region"          # a shared cache's sample data, where a frame's region cannot be placed
    UNREAD_TILE = "unread_tile"  # a tile of a tile set (<UDIM>) no traced frame read while its siblings were
    OCCASIONAL = "occasional"  # what a few traced frames read (a decal every 10th frame), for the other frames
    FINER_FAR = "finer_far"    # levels finer still, for frames far beyond the traced ones: a push-in they could hide


@dataclass(frozen=True, slots=True)
class PlannedRange:
    """A range to warm. `frame` is the first job frame that needs it; `frames` how many do."""

    path: str
    offset: int
    length: int
    frame: int | None = None
    frames: int = 1
    reason: Reason = Reason.TRACE

    @property
    def end(self) -> int:
        return self.offset + self.length

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "offset": self.offset, "length": self.length,
                "frame": self.frame, "frames": self.frames, "reason": self.reason.value}


@dataclass(frozen=True, slots=True)
class MetaOp:
    """A metadata operation to warm the gateway's attribute and dentry caches."""

    op: Op
    path: str


@dataclass(frozen=True, slots=True)
class Origin:
    """Which scene file of the manifest brought a file into the plan, and which of its layers
    (a USD sublayer or reference, a linked .blend library) asked for it."""

    scene: str
    layer: str


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the studio should know before the render: a missing input, an unreadable file.

    `count` > 1: a folded finding, standing for that many files of one input (`path` is
    then the input as the manifest wrote it, `frames` the frames it misses, if any).
    """

    path: str
    reason: str
    line: int | None = None
    count: int = 1
    frames: str | None = None
    optional: bool = False
    """The manifest said the input may be absent: shown, but the warm is not less for it."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "reason": self.reason, "line": self.line}
        if self.count != 1:
            out["count"] = self.count
        if self.frames is not None:
            out["frames"] = self.frames
        if self.optional:
            out["optional"] = True
        return out



@dataclass(frozen=True, slots=True)
class FileInfo:
    """Identity of a file as the planner saw it: a warm compares against it to detect change."""

    path: str
    size: int
    mtime: float
