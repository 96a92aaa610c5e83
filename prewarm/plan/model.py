"""The plan: what to warm, in which order, and what the planner found. A value with a JSON form.

A plan leaves the planner as JSON (contract 3) and reaches workers on other hosts,
so `Plan.from_json` trusts nothing: a corrupt or hostile plan (negative offsets,
relative paths, `..`, absurd sizes) is refused with a message naming the field.
Whether a path is *allowed* (inside the configured roots) is for the warm side to
decide against its own settings; here only the shape is checked.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn

from prewarm.errors import PlanFileError
from prewarm.plan.access import Op

FORMAT = "prewarm.plan/1"

DEFAULT_GRANULE = 4096
"""Ranges are widened to whole granules. The one default: the site's `granule` setting starts from it.
4 KiB pages, what a gateway fetches: `rsize=1M` is its largest READ, not a fetch unit; a standalone
37 KB tile read costs about 40 KB of WAN, kept in 4 KiB cache blocks (domain.md), so 1 MiB granules
around sparse tile reads cost about 4x what a perfect plan needs."""

MAX_OFFSET = 1 << 62
"""No real file is this large; beyond it an offset is a corrupt or hostile plan."""


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
    """Something the studio should know before the render: a missing input, an unreadable file."""

    path: str
    reason: str
    line: int | None = None
    optional: bool = False
    """The manifest said the input may be absent: shown, but the warm is not less for it."""

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason, "line": self.line,
                **({"optional": True} if self.optional else {})}


@dataclass(frozen=True)
class Plan:
    job: str
    frames: tuple[int, ...]
    ranges: tuple[PlannedRange, ...]
    metadata: tuple[MetaOp, ...] = ()
    files: Mapping[str, FileInfo] = field(default_factory=dict)
    missing: tuple[Finding, ...] = ()
    dropped: tuple[PlannedRange, ...] = ()
    granule: int = DEFAULT_GRANULE
    created: float | None = None
    """Epoch seconds when it was planned (the caller's clock); None in hand-written plans."""
    start: float | None = None
    priority: int = 0
    gateways: tuple[str, ...] = ()
    """Gateway nodes whose caches to warm (a queue each); empty: the configured default."""
    stats: Mapping[str, Any] = field(default_factory=dict)
    """Planner statistics (trace records used, frames seen, ...) shown in the summary."""
    origins: Mapping[str, Origin] = field(default_factory=dict)
    """Files a scene input brought in (`prewarm.plan.scenes`), by path; written into their `files` entries."""

    @property
    def bytes(self) -> int:
        return sum(r.length for r in self.ranges)

    @property
    def missing_inputs(self) -> int:
        """Inputs the render needs that are not there (optional ones do not count)."""
        return sum(not m.optional for m in self.missing)

    def summary(self) -> dict[str, Any]:
        by_reason: Counter[str] = Counter()
        for r in self.ranges:
            by_reason[r.reason.value] += r.length
        planned_files = {r.path for r in self.ranges}
        return {
            "bytes": self.bytes,
            "files": len(planned_files),
            "ranges": len(self.ranges),
            "frames": len(self.frames),
            "whole_file_bytes": sum(self.files[p].size for p in planned_files if p in self.files),
            "metadata_ops": len(self.metadata),
            "missing": len(self.missing),
            "dropped_bytes": sum(r.length for r in self.dropped),
            "dropped_ranges": len(self.dropped),
            "bytes_by_reason": dict(sorted(by_reason.items())),
            **dict(self.stats),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "job": self.job,
            "frames": list(self.frames),
            "created": self.created,
            "start": self.start,
            "priority": self.priority,
            "gateways": list(self.gateways),
            "granule": self.granule,
            "ranges": [r.to_json() for r in self.ranges],
            "metadata": [{"op": m.op.value, "path": m.path} for m in self.metadata],
            "files": {p: self._file_json(p, f) for p, f in sorted(self.files.items())},
            "missing": [m.to_json() for m in self.missing],
            "dropped": [r.to_json() for r in self.dropped],
            "summary": self.summary(),
        }

    def _file_json(self, path: str, info: FileInfo) -> dict[str, Any]:
        """`scene` and `layer` only for files a scene brought in: older readers ignore them."""
        origin = self.origins.get(path)
        if origin is None:
            return {"size": info.size, "mtime": info.mtime}
        return {"size": info.size, "mtime": info.mtime, "scene": origin.scene, "layer": origin.layer}

    @classmethod
    def from_json(cls, data: Any, where: str = "plan") -> Plan:
        """Validate and load a plan written by `to_json` (or by hand, or by an attacker)."""
        v = _Validator(where)
        obj = v.mapping(data, "")
        fmt = obj.get("format", FORMAT)
        if fmt != FORMAT:
            v.fail("format", f"unsupported plan format {fmt!r} (expected {FORMAT!r})")
        job = v.string(obj.get("job"), "job")
        frames = tuple(v.integer(f, f"frames[{i}]", lo=-MAX_OFFSET)
                       for i, f in enumerate(v.array(obj.get("frames", []), "frames")))
        ranges = tuple(v.planned_range(r, f"ranges[{i}]") for i, r in enumerate(v.array(obj.get("ranges"), "ranges")))
        dropped = tuple(v.planned_range(r, f"dropped[{i}]")
                        for i, r in enumerate(v.array(obj.get("dropped", []), "dropped")))
        metadata = []
        for i, m in enumerate(v.array(obj.get("metadata", []), "metadata")):
            mm = v.mapping(m, f"metadata[{i}]")
            try:
                op = Op(str(mm.get("op")))
            except ValueError:
                v.fail(f"metadata[{i}].op", f"unknown operation {mm.get('op')!r}")
            metadata.append(MetaOp(op, v.path(mm.get("path"), f"metadata[{i}].path")))
        files = {}
        origins = {}
        for p, info in v.mapping(obj.get("files", {}), "files").items():
            path = v.path(p, f"files[{p!r}]")
            im = v.mapping(info, f"files[{p!r}]")
            files[path] = FileInfo(path, v.integer(im.get("size"), f"files[{p!r}].size"),
                                   v.number(im.get("mtime"), f"files[{p!r}].mtime"))
            if "scene" in im:
                origins[path] = Origin(v.path(im["scene"], f"files[{p!r}].scene"),
                                       v.path(im.get("layer", im["scene"]), f"files[{p!r}].layer"))
        missing = []
        for i, m in enumerate(v.array(obj.get("missing", []), "missing")):
            mm = v.mapping(m, f"missing[{i}]")
            line = mm.get("line")
            missing.append(Finding(v.string(mm.get("path"), f"missing[{i}].path"),
                                   v.string(mm.get("reason"), f"missing[{i}].reason"),
                                   None if line is None else v.integer(line, f"missing[{i}].line"),
                                   v.boolean(mm.get("optional", False), f"missing[{i}].optional")))
        start = obj.get("start")
        gateways = tuple(v.string(g, f"gateways[{i}]")
                         for i, g in enumerate(v.array(obj.get("gateways", []), "gateways")))
        return cls(
            job=job, frames=frames, ranges=ranges, metadata=tuple(metadata), files=files,
            missing=tuple(missing), dropped=dropped,
            granule=v.integer(obj.get("granule", DEFAULT_GRANULE), "granule", lo=1),
            created=None if obj.get("created") is None else v.number(obj["created"], "created"),
            start=None if start is None else v.number(start, "start"),
            priority=v.integer(obj.get("priority", 0), "priority", lo=-MAX_OFFSET),
            gateways=gateways, origins=origins,
        )


class _Validator:
    """Turns shape errors into PlanFileError naming the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, fld: str, message: str) -> NoReturn:
        raise PlanFileError(f"{self.where}: {fld}" if fld else self.where, message)

    def mapping(self, value: Any, fld: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(fld, "expected an object")
        return value

    def array(self, value: Any, fld: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(fld, "expected a list")
        return value

    def string(self, value: Any, fld: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(fld, "expected a non-empty string")
        return value

    def integer(self, value: Any, fld: str, lo: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= MAX_OFFSET:
            self.fail(fld, f"expected an integer >= {lo}" if lo > -MAX_OFFSET else "expected an integer")
        return value

    def boolean(self, value: Any, fld: str) -> bool:
        if not isinstance(value, bool):
            self.fail(fld, "expected true or false")
        return value

    def number(self, value: Any, fld: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(fld, "expected a number")
        return float(value)

    def path(self, value: Any, fld: str) -> str:
        p = self.string(value, fld)
        if not p.startswith("/") or "\0" in p or posixpath.normpath(p) != p.rstrip("/") and p != "/":
            self.fail(fld, f"expected a normalised absolute path, got {p!r}")
        if ".." in p.split("/"):
            self.fail(fld, f"'..' is not allowed in a path: {p!r}")
        return p

    def reason(self, value: Any, fld: str) -> Reason:
        try:
            return Reason(value)
        except ValueError:
            self.fail(fld, f"unknown reason {value!r} (one of {', '.join(r.value for r in Reason)})")

    def planned_range(self, value: Any, fld: str) -> PlannedRange:
        r = self.mapping(value, fld)
        frame = r.get("frame")
        return PlannedRange(
            path=self.path(r.get("path"), f"{fld}.path"),
            offset=self.integer(r.get("offset"), f"{fld}.offset"),
            length=self.integer(r.get("length"), f"{fld}.length", lo=1),
            frame=None if frame is None else self.integer(frame, f"{fld}.frame", lo=-MAX_OFFSET),
            frames=self.integer(r.get("frames", 1), f"{fld}.frames"),
            reason=self.reason(r.get("reason", Reason.TRACE.value), f"{fld}.reason"),
        )


@dataclass(frozen=True, slots=True)
class FileInfo:
    """Identity of a file as the planner saw it: a warm compares against it to detect change."""

    path: str
    size: int
    mtime: float
