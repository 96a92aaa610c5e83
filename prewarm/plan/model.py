"""The plan: what to warm, in which order, and what the planner found. A value with a JSON form.

A plan leaves the planner as JSON (contract 3) and reaches workers on other hosts,
so `Plan.from_json` trusts nothing: a corrupt or hostile plan (negative offsets,
relative paths, `..`, absurd sizes, nesting a thousand deep, more ranges, files or
gateways than `prewarm.plan.limits` allows, ranges past a file's planned end) is
refused with a message naming the field. `Plan.from_events` does the same from a
stream of parser events (ijson), so a plan file is never held whole in memory: its
ranges go straight into a columnar `RangeTable`. Whether a path is *allowed*
(inside the configured roots) is for the warm side to decide against its own
settings; here only the shape and the limits are checked (`limit_problem`, which
the warm side's `check_plan` applies to plans made in-process too).

Planned ranges as columns: a `PlannedRange` object costs about 120 bytes, its ints
and its slot in a tuple more; a million-range plan held as objects took several
hundred MB before any work, and 10 million took 4.7 GB. `RangeTable` keeps one typed
array per field (about 40 bytes a range) and each distinct path once, and still reads
as a `Sequence[PlannedRange]`: indexing or iterating builds the objects one at a
time, so callers keep writing `for r in plan.ranges`. Code that only needs
`(path, offset, length)` uses `spans()`, which builds no objects at all.
"""

from __future__ import annotations

import json
import posixpath
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn, overload

from prewarm.errors import PlanFileError
from prewarm.plan import limits
from prewarm.plan.access import Op

FORMAT = "prewarm.plan/1"

DEFAULT_GRANULE = 4096
"""Ranges are widened to whole granules. The one default: the site's `granule` setting starts from it.
4 KiB pages, what a gateway fetches: `rsize=1M` is its largest READ, not a fetch unit; a standalone
37 KB tile read costs about 40 KB of WAN, kept in 4 KiB cache blocks (domain.md), so 1 MiB granules
around sparse tile reads cost about 4x what a perfect plan needs."""

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


NO_FRAME = -(1 << 63)
"""The `frame` column's value for a range no particular frame needs first."""

_REASONS = tuple(Reason)
_REASON_CODE = {r: i for i, r in enumerate(_REASONS)}


class RangeTable(Sequence[PlannedRange]):
    """An append-only column store of planned ranges, in plan order."""

    __slots__ = ("_paths", "_ids", "_path", "_offset", "_length", "_frame", "_frames", "_reason")

    def __init__(self, ranges: Iterable[PlannedRange] = ()) -> None:
        self._paths: list[str] = []
        self._ids: dict[str, int] = {}
        self._path = array("I")
        self._offset = array("q")
        self._length = array("q")
        self._frame = array("q")
        self._frames = array("q")
        self._reason = array("B")
        for r in ranges:
            self.add(r.path, r.offset, r.length, r.frame, r.frames, r.reason)

    @classmethod
    def from_columns(cls, paths: list[str], path: array[int], offset: array[int], length: array[int],
                     frame: array[int], frames: array[int], reasons: list[Reason]) -> RangeTable:
        """A table of columns built elsewhere (the ordering, a million ranges at a time): `path`
        holds indexes into `paths`, numbered by first appearance; the arrays are taken, not copied."""
        table = cls()
        table._paths = paths
        table._ids = {p: i for i, p in enumerate(paths)}
        table._path, table._offset, table._length, table._frame, table._frames = path, offset, length, frame, frames
        table._reason = array("B", [_REASON_CODE[r] for r in reasons])
        return table

    @classmethod
    def of(cls, ranges: Iterable[PlannedRange]) -> RangeTable:
        """`ranges` itself when it is a table already, else a table of them."""
        return ranges if isinstance(ranges, RangeTable) else cls(ranges)

    def add(self, path: str, offset: int, length: int, frame: int | None = None, frames: int = 1,
            reason: Reason = Reason.TRACE) -> None:
        pid = self._ids.get(path)
        if pid is None:
            pid = self._ids[path] = len(self._paths)
            self._paths.append(path)
        self._path.append(pid)
        self._offset.append(offset)
        self._length.append(length)
        self._frame.append(NO_FRAME if frame is None else frame)
        self._frames.append(frames)
        self._reason.append(_REASON_CODE[reason])

    def __len__(self) -> int:
        return len(self._path)

    def _row(self, i: int) -> PlannedRange:
        frame = self._frame[i]
        return PlannedRange(self._paths[self._path[i]], self._offset[i], self._length[i],
                            None if frame == NO_FRAME else frame, self._frames[i], _REASONS[self._reason[i]])

    @overload
    def __getitem__(self, i: int) -> PlannedRange: ...

    @overload
    def __getitem__(self, i: slice) -> RangeTable: ...

    def __getitem__(self, i: int | slice) -> PlannedRange | RangeTable:
        if isinstance(i, slice):
            return RangeTable(self._row(j) for j in range(*i.indices(len(self))))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("range index out of range")
        return self._row(i)

    def __iter__(self) -> Iterator[PlannedRange]:
        return (self._row(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable while a plan is loaded

    def __repr__(self) -> str:
        return f"RangeTable({len(self)} ranges of {len(self._paths)} files)"

    def spans(self) -> Iterator[tuple[str, int, int]]:
        """`(path, offset, length)` of each range in order, without building range objects."""
        paths = self._paths
        return ((paths[p], o, n) for p, o, n in zip(self._path, self._offset, self._length, strict=True))

    def json_rows(self) -> Iterator[str]:
        """Each range as the text `json.dumps(range.to_json())` makes, from the columns: each path
        is encoded once rather than once a range (a plan's write was a third of a store plan)."""
        paths = [json.dumps(p) for p in self._paths]
        reasons = [json.dumps(r.value) for r in _REASONS]
        for p, o, n, f, k, c in zip(self._path, self._offset, self._length, self._frame, self._frames,
                                    self._reason, strict=True):
            frame = "null" if f == NO_FRAME else f
            yield (f'{{"path": {paths[p]}, "offset": {o}, "length": {n}, "frame": {frame}, '
                   f'"frames": {k}, "reason": {reasons[c]}}}')

    def paths(self) -> list[str]:
        """The distinct paths, in order of first appearance."""
        return list(self._paths)

    def canonical(self, path: str) -> str:
        """The table's own copy of `path` when it holds it (so a plan keeps each path once)."""
        pid = self._ids.get(path)
        return path if pid is None else self._paths[pid]

    @property
    def bytes(self) -> int:
        return sum(self._length)

    def bytes_by_reason(self) -> dict[str, int]:
        out = [0] * len(_REASONS)
        for code, n in zip(self._reason, self._length, strict=True):
            out[code] += n
        return {r.value: out[i] for i, r in enumerate(_REASONS) if out[i]}

    def nbytes(self) -> int:
        """Memory held by the columns (the paths' strings aside)."""
        return sum(a.itemsize * len(a) for a in (self._path, self._offset, self._length, self._frame,
                                                  self._frames, self._reason))


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


FIELDS_LIMITS = {"ranges": limits.MAX_RANGES, "dropped": limits.MAX_RANGES, "frames": limits.MAX_FRAMES,
                 "files": limits.MAX_FILES, "metadata": limits.MAX_METADATA, "missing": limits.MAX_FINDINGS + 1,
                 "gateways": limits.MAX_GATEWAYS}
"""Most items each top-level field of a plan may hold."""


@dataclass(frozen=True)
class Plan:
    job: str
    frames: tuple[int, ...]
    ranges: Sequence[PlannedRange]
    """In warm order; held as a `RangeTable` whatever sequence was given."""
    metadata: tuple[MetaOp, ...] = ()
    files: Mapping[str, FileInfo] = field(default_factory=dict)
    missing: tuple[Finding, ...] = ()
    dropped: Sequence[PlannedRange] = ()
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranges", RangeTable.of(self.ranges))
        object.__setattr__(self, "dropped", RangeTable.of(self.dropped))

    @property
    def table(self) -> RangeTable:
        """`ranges` as the table it is."""
        assert isinstance(self.ranges, RangeTable)
        return self.ranges

    @property
    def dropped_table(self) -> RangeTable:
        """`dropped` as the table it is."""
        assert isinstance(self.dropped, RangeTable)
        return self.dropped

    @property
    def bytes(self) -> int:
        return self.table.bytes

    @property
    def missing_inputs(self) -> int:
        """Inputs the render needs that are not there (optional ones do not count; a folded finding counts each)."""
        return sum(m.count for m in self.missing if not m.optional)

    def summary(self) -> dict[str, Any]:
        planned_files = self.table.paths()
        dropped = RangeTable.of(self.dropped)
        return {
            "bytes": self.bytes,
            "files": len(planned_files),
            "ranges": len(self.ranges),
            "frames": len(self.frames),
            "whole_file_bytes": sum(self.files[p].size for p in planned_files if p in self.files),
            "metadata_ops": len(self.metadata),
            "missing": sum(m.count for m in self.missing),
            "dropped_bytes": dropped.bytes,
            "dropped_ranges": len(dropped),
            "bytes_by_reason": dict(sorted(self.table.bytes_by_reason().items())),
            **dict(self.stats),
        }

    def to_json(self, ranges: bool = True) -> dict[str, Any]:
        """The plan as JSON data (contract 3); `ranges=False` leaves `ranges` and `dropped` empty."""
        return {
            "format": FORMAT,
            "job": self.job,
            "frames": list(self.frames),
            "created": self.created,
            "start": self.start,
            "priority": self.priority,
            "gateways": list(self.gateways),
            "granule": self.granule,
            "ranges": [r.to_json() for r in self.ranges] if ranges else [],
            "metadata": [{"op": m.op.value, "path": m.path} for m in self.metadata],
            "files": {p: self._file_json(p, f) for p, f in sorted(self.files.items())},
            "missing": [m.to_json() for m in self.missing],
            "dropped": [r.to_json() for r in self.dropped] if ranges else [],
            "summary": self.summary(),
        }

    def json_text(self) -> Iterator[str]:
        """`to_json`'s document as text, a range a line, made piece by piece: a million-range
        plan is written, stored or hashed without a million dicts existing at once."""
        yield "{"
        for i, (key, value) in enumerate(self.to_json(ranges=False).items()):
            yield f'{"," if i else ""}\n{json.dumps(key)}: '
            if key in ("ranges", "dropped"):
                rows = RangeTable.of(self.ranges if key == "ranges" else self.dropped)
                yield "["
                yield from self._rows(rows)
                yield "\n]" if len(rows) else "]"
            else:
                yield json.dumps(value)
        yield "\n}\n"

    @staticmethod
    def _rows(rows: RangeTable) -> Iterator[str]:
        first = True
        for row in rows.json_rows():
            yield f"\n {row}" if first else f",\n {row}"
            first = False

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
        for key, most in FIELDS_LIMITS.items():
            value = obj.get(key)
            if isinstance(value, list | Mapping) and len(value) > most:
                v.fail(key, f"more than {most:,} items (see prewarm.plan.limits)")
        tables = {}
        for key in ("ranges", "dropped"):
            table = tables[key] = RangeTable()
            items = obj.get(key) if key == "ranges" or key in obj else []
            for i, r in enumerate(v.array(items, key)):
                v.add_range(table, r, f"{key}[{i}]")
        return v.plan(obj, tables["ranges"], tables["dropped"])

    @classmethod
    def from_events(cls, events: Iterable[tuple[str, str, Any]], where: str = "plan") -> Plan:
        """Validate and load a plan from `(prefix, event, value)` parser events (`ijson.parse`).

        Ranges are validated and stored one at a time, so memory follows the table, not
        the text; every field is counted while it is read, so an oversized or deeply
        nested plan is refused as soon as it crosses the limit.
        """
        v = _Validator(where)
        return _EventLoader(v).load(iter(events))

    def limit_problem(self) -> tuple[str, str] | None:
        """(field, what is wrong) when this plan asks for more than the limits allow or holds a
        path or range no loaded plan may, else None.

        The one check of a whole plan: `from_json` and `from_events` end with it, and the
        planner's output passes it before it is written, so the planner never writes a plan
        the warm side would refuse (a negative offset from a hostile trace line, a name that
        is not UTF-8).
        """
        counts = {"ranges": len(self.ranges), "dropped": len(self.dropped), "frames": len(self.frames),
                  "files": len(self.files), "metadata": len(self.metadata), "missing": len(self.missing),
                  "gateways": len(self.gateways)}
        for key, n in counts.items():
            if n > FIELDS_LIMITS[key]:
                return key, f"{n:,} items, more than {FIELDS_LIMITS[key]:,} (see prewarm.plan.limits)"
        if self.bytes > limits.MAX_PLAN_BYTES:
            return "ranges", f"asks for {self.bytes:,} bytes, more than {limits.MAX_PLAN_BYTES:,} (16 TiB)"
        problem = limits.granule_problem(self.granule)
        if problem:
            return "granule", problem
        return self._paths_problem() or self._spans_problem()

    def _paths_problem(self) -> tuple[str, str] | None:
        """The first path of the plan `path_problem` refuses, as (field, what is wrong)."""
        for key, table in (("ranges", self.table), ("dropped", self.dropped_table)):
            for path in table.paths():
                problem = path_problem(path)
                if problem:
                    at = next(j for j, r in enumerate(table.spans()) if r[0] == path)
                    return f"{key}[{at}].path", problem
        for path in self.files:
            problem = path_problem(path)
            if problem:
                return f"files[{shown(path)[:200]!r}]", problem
        for i, m in enumerate(self.metadata):
            problem = path_problem(m.path)
            if problem:
                return f"metadata[{i}].path", problem
        return None

    def _spans_problem(self) -> tuple[str, str] | None:
        """The first range outside a file: a negative offset, an empty range, one past the planned size."""
        for key, table in (("ranges", self.table), ("dropped", self.dropped_table)):
            for i, (path, offset, length) in enumerate(table.spans()):
                if offset < 0 or length < 1 or offset + length > MAX_OFFSET:
                    return f"{key}[{i}]", f"offset {offset} and length {length}: not a range of a file"
                info = self.files.get(path)
                if key == "ranges" and info is not None and offset + length > info.size:
                    return f"{key}[{i}]", f"ends at {offset + length}, beyond the file's planned size {info.size}"
        for i, g in enumerate(self.gateways):
            problem = limits.gateway_problem(g)
            if problem:
                return f"gateways[{i}]", problem
        return None


class _EventLoader:
    """Builds a plan from parser events: ranges straight into tables, other fields as small values."""

    def __init__(self, v: _Validator) -> None:
        self.v = v
        self.rest: dict[str, Any] = {}
        self.tables = {"ranges": RangeTable(), "dropped": RangeTable()}

    def load(self, events: Iterator[tuple[str, str, Any]]) -> Plan:
        v = self.v
        first = next(events, None)
        if first is None or first[1] != "start_map":
            v.fail("", "expected an object")
        for prefix, event, value in events:
            if event == "end_map" and prefix == "":
                break
            if event != "map_key":
                v.fail("", "expected an object")
            if value in self.rest or (value in self.tables and len(self.tables[value])):
                v.fail(value, "given twice")
            self.field(events, value)
        for key in ("ranges", "dropped"):
            if (key in self.rest or key == "ranges") and not isinstance(self.rest.get(key), list):
                v.fail(key, "expected a list")
        return v.plan(self.rest, self.tables["ranges"], self.tables["dropped"])

    def field(self, events: Iterator[tuple[str, str, Any]], key: str) -> None:
        """One top-level field: a list of ranges streamed into its table, anything else built whole."""
        _, event, value = next(events)
        most = FIELDS_LIMITS.get(key, 0)
        if key in self.tables and event == "start_array":
            self.rest[key] = []
            for i, item in enumerate(self.items(events, key)):
                if i >= most:
                    self.v.fail(key, f"more than {most:,} items (see prewarm.plan.limits)")
                self.v.add_range(self.tables[key], item, f"{key}[{i}]")
            return
        if key == "files" and event == "start_map":
            self.rest[key] = self.files(events)
            return
        self.rest[key] = self.value(events, key, event, value, most)

    def files(self, events: Iterator[tuple[str, str, Any]]) -> dict[str, FileInfo]:
        """`files` entry by entry into FileInfo values, each path shared with the ranges' table."""
        out: dict[str, FileInfo] = {}
        table = self.tables["ranges"]
        while True:
            _, event, value = next(events)
            if event == "end_map":
                return out
            if len(out) >= limits.MAX_FILES:
                self.v.fail("files", f"more than {limits.MAX_FILES:,} items (see prewarm.plan.limits)")
            path = table.canonical(value)
            _, event, first = next(events)
            out.update(self.v.files({path: self.value(events, "files", event, first, 0)}))

    def items(self, events: Iterator[tuple[str, str, Any]], key: str) -> Iterator[Any]:
        while True:
            _, event, value = next(events)
            if event == "end_array":
                return
            yield self.value(events, key, event, value, 0)

    def value(self, events: Iterator[tuple[str, str, Any]], key: str, event: str, value: Any, most: int) -> Any:
        """A whole value from its first event; containers at most `limits.MAX_NESTING` deep and,
        at the top (`most` > 0), with at most `most` items."""
        if event not in ("start_map", "start_array"):
            return value
        stack: list[Any] = [{} if event == "start_map" else []]
        keys: list[str | None] = [None]
        while True:
            _, event, value = next(events)
            if event in ("end_map", "end_array"):
                done = stack.pop()
                keys.pop()
                if not stack:
                    return done
                self._put(stack, keys, done)
            elif event == "map_key":
                keys[-1] = value
            elif event in ("start_map", "start_array"):
                if len(stack) >= limits.MAX_NESTING:
                    self.v.fail(key, f"nested deeper than {limits.MAX_NESTING} levels")
                stack.append({} if event == "start_map" else [])
                keys.append(None)
            else:
                self._put(stack, keys, value)
            if most and len(stack) == 1 and len(stack[0]) > most:
                self.v.fail(key, f"more than {most:,} items (see prewarm.plan.limits)")

    @staticmethod
    def _put(stack: list[Any], keys: list[str | None], value: Any) -> None:
        top = stack[-1]
        if isinstance(top, list):
            top.append(value)
        else:
            top[keys[-1]] = value


class _Validator:
    """Turns shape errors into PlanFileError naming the field."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.origins: dict[str, Origin] = {}
        """Scene origins of the files validated so far (`files` entries with `scene`)."""

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
        if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
            self.fail(fld, f"expected a non-empty string of at most {MAX_TEXT} characters")
        return value

    def integer(self, value: Any, fld: str, lo: int = 0, hi: int = MAX_OFFSET) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(fld, f"expected an integer from {lo:,} to {hi:,}")
        return value

    def boolean(self, value: Any, fld: str) -> bool:
        if not isinstance(value, bool):
            self.fail(fld, "expected true or false")
        return value

    def number(self, value: Any, fld: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not -MAX_OFFSET <= value <= MAX_OFFSET:
            self.fail(fld, "expected a number")
        return float(value)

    def path(self, value: Any, fld: str) -> str:
        p = self.string(value, fld)
        problem = path_problem(p)
        if problem:
            self.fail(fld, problem)
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
            frame=None if frame is None else self.integer(frame, f"{fld}.frame", lo=-limits.MAX_FRAME_NUMBER,
                                                          hi=limits.MAX_FRAME_NUMBER),
            frames=self.integer(r.get("frames", 1), f"{fld}.frames"),
            reason=self.reason(r.get("reason", Reason.TRACE.value), f"{fld}.reason"),
        )

    def add_range(self, table: RangeTable, value: Any, fld: str) -> None:
        r = self.planned_range(value, fld)
        if r.end > MAX_OFFSET:
            self.fail(fld, f"ends at {r.end}, beyond any file")
        table.add(r.path, r.offset, r.length, r.frame, r.frames, r.reason)

    def plan(self, obj: Mapping[str, Any], ranges: RangeTable, dropped: RangeTable) -> Plan:
        """The plan of a top-level object whose ranges are already in tables."""
        fmt = obj.get("format", FORMAT)
        if fmt != FORMAT:
            self.fail("format", f"unsupported plan format {str(fmt)[:40]!r} (expected {FORMAT!r})")
        job = self.string(obj.get("job"), "job")
        frames = tuple(self.integer(f, f"frames[{i}]", lo=-limits.MAX_FRAME_NUMBER, hi=limits.MAX_FRAME_NUMBER)
                       for i, f in enumerate(self.array(obj.get("frames", []), "frames")))
        start = obj.get("start")
        gateways = tuple(self.string(g, f"gateways[{i}]")
                         for i, g in enumerate(self.array(obj.get("gateways", []), "gateways")))
        plan = Plan(
            job=job, frames=frames, ranges=ranges, metadata=self.metadata(obj.get("metadata", [])),
            files=self.files(obj.get("files", {})), missing=self.missing(obj.get("missing", [])), dropped=dropped,
            granule=self.integer(obj.get("granule", DEFAULT_GRANULE), "granule", lo=1),
            created=None if obj.get("created") is None else self.number(obj["created"], "created"),
            start=None if start is None else self.number(start, "start"),
            priority=self.integer(obj.get("priority", 0), "priority", lo=-limits.MAX_PRIORITY,
                                  hi=limits.MAX_PRIORITY),
            gateways=gateways, origins=dict(self.origins),
        )
        problem = plan.limit_problem()
        if problem:
            self.fail(*problem)
        return plan

    def metadata(self, value: Any) -> tuple[MetaOp, ...]:
        out = []
        for i, m in enumerate(self.array(value, "metadata")):
            mm = self.mapping(m, f"metadata[{i}]")
            try:
                op = Op(str(mm.get("op")))
            except ValueError:
                self.fail(f"metadata[{i}].op", f"unknown operation {str(mm.get('op'))[:20]!r}")
            out.append(MetaOp(op, self.path(mm.get("path"), f"metadata[{i}].path")))
        return tuple(out)

    def files(self, value: Any) -> dict[str, FileInfo]:
        files = {}
        for p, info in self.mapping(value, "files").items():
            if isinstance(info, FileInfo):  # validated as it was streamed
                files[p] = info
                continue
            path = self.path(p, f"files[{p[:200]!r}]")
            im = self.mapping(info, f"files[{p!r}]")
            files[path] = FileInfo(path, self.integer(im.get("size"), f"files[{p!r}].size"),
                                   self.number(im.get("mtime"), f"files[{p!r}].mtime"))
            if "scene" in im:
                self.origins[path] = Origin(self.path(im["scene"], f"files[{p!r}].scene"),
                                            self.path(im.get("layer", im["scene"]), f"files[{p!r}].layer"))
        return files

    def missing(self, value: Any) -> tuple[Finding, ...]:
        out = []
        for i, m in enumerate(self.array(value, "missing")):
            mm = self.mapping(m, f"missing[{i}]")
            line, frames = mm.get("line"), mm.get("frames")
            out.append(Finding(self.string(mm.get("path"), f"missing[{i}].path"),
                               self.string(mm.get("reason"), f"missing[{i}].reason"),
                               None if line is None else self.integer(line, f"missing[{i}].line"),
                               self.integer(mm.get("count", 1), f"missing[{i}].count", lo=1),
                               None if frames is None else self.string(frames, f"missing[{i}].frames"),
                               self.boolean(mm.get("optional", False), f"missing[{i}].optional")))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """Identity of a file as the planner saw it: a warm compares against it to detect change."""

    path: str
    size: int
    mtime: float
